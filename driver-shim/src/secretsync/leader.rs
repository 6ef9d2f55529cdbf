//! Leader election on a `coordination.k8s.io/v1` Lease, so one replica syncs at a time.
//!
//! A replica holds the Lease while it renews it within `leaseDurationSeconds`; another takes it over only
//! after a holder missed renewing for that long (or released it on shutdown), always with the Lease's
//! resourceVersion, so two replicas racing for it cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a holder's last renewal keeps others out.
    pub lease_duration: Duration,
    /// How often the holder renews, and others try.
    pub retry_period: Duration,
}

/// The Lease of one election.
#[derive(Debug, Clone)]
pub struct Elector {
    api: Api<Lease>,
    settings: Settings,
}

/// What one attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// This replica holds the Lease (acquired or renewed).
    Leading,
    /// Another replica holds it.
    Following {
        /// The holder.
        holder: String,
    },
}

impl Elector {
    /// An election on `settings.namespace/settings.name`.
    #[must_use]
    pub fn new(client: kube::Client, settings: Settings) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        Self { api, settings }
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn spec(&self, now: Timestamp, acquired: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            ..LeaseSpec::default()
        }
    }

    /// Acquires or renews the Lease once. A conflict (another replica wrote first) is following.
    pub async fn try_lead(&self) -> Result<Outcome, kube::Error> {
        let now = Timestamp::now();
        let name = &self.settings.name;
        let Some(mut lease) = self.api.get_opt(name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Outcome::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Outcome::Following {
                    holder: String::new(),
                }),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.settings.identity;
        if !ours && !holder.is_empty() && !expired(&spec, now) {
            return Ok(Outcome::Following { holder });
        }
        let acquired = if ours { spec.acquire_time.clone() } else { None };
        let mut next = self.spec(now, acquired);
        let transitions = spec.lease_transitions.unwrap_or(0);
        next.lease_transitions = Some(if ours { transitions } else { transitions + 1 });
        lease.spec = Some(next);
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(Outcome::Leading),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Outcome::Following { holder }),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up (on shutdown) if this replica holds it, so another takes over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.settings.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        self.api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

/// Whether the holder's last renewal is older than the lease duration (a Lease without a renewal time has
/// no live holder).
fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref() else {
        return true;
    };
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    renewed
        .0
        .checked_add(duration)
        .map_or(true, |until| until < now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(renewed_secs_ago: i64, duration: i32) -> (LeaseSpec, Timestamp) {
        let now = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let renewed = now
            .checked_sub(SignedDuration::from_secs(renewed_secs_ago))
            .unwrap_or(now);
        (
            LeaseSpec {
                holder_identity: Some("a".to_owned()),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(renewed)),
                ..LeaseSpec::default()
            },
            now,
        )
    }

    #[test]
    fn a_lease_expires_only_after_its_duration() {
        let (s, now) = spec(5, 15);
        assert!(!expired(&s, now));
        let (s, now) = spec(16, 15);
        assert!(expired(&s, now));
        let (mut s, now) = spec(0, 15);
        s.renew_time = None;
        assert!(expired(&s, now), "never renewed: nobody holds it");
    }
}
