//! Reading one object: a kept dynamic secret if still fresh (renewed when its
//! policy allows), else from Vault, with static reads shared within an identity.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::errors::{capability, optional_errors, vault_errors};
use super::lease::{self, LeaseKey, Lookup, Revoker, lease_facts};
use super::session::{Session, TokenKey, aborted, bounded};
use super::transport::Replay;
use super::{Error, ErrorKind, Method, VaultObject};
use crate::identity::unix_now;
use crate::singleflight::Role;

/// Cache and singleflight key of a read: the identity plus the exact request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ReadKey {
    pub(super) identity: TokenKey,
    pub(super) request: String,
}

/// Whether a response carries a lease (dynamic secret): it belongs to one pod.
fn has_lease(response: &Value) -> bool {
    lease_facts(response, unix_now()).is_some_and(|f| f.lease_id.is_some())
}

impl Session {
    /// Reads one object: a kept dynamic secret if one is still fresh, else from the
    /// backend (static reads shared within the identity).
    pub(super) async fn read_object(self: &Arc<Self>, obj: &VaultObject) -> Result<Arc<Value>, Error> {
        let key = LeaseKey {
            identity: self.key.clone(),
            pod_uid: if self.cfg.leases.share { None } else { Some(self.pod_uid.clone()) },
            request: obj.request_key(),
        };
        let leases = &self.state.leases;
        match leases.lookup(&key, Instant::now()) {
            Lookup::Reuse(response) => {
                self.lease_event(lease::Event::Reused, obj);
                return Ok(response);
            }
            Lookup::Renew { lease_id, increment, response } => match self.renew(&lease_id, increment).await {
                Ok(granted) if leases.renewed(&key, granted, Instant::now()) => {
                    self.lease_event(lease::Event::Renewed, obj);
                    return Ok(response);
                }
                Ok(_) => self.lease_event(lease::Event::RenewFailed, obj),
                Err(e) => {
                    leases.forget(&key);
                    self.lease_event(lease::Event::RenewFailed, obj);
                    tracing::debug!(backend = self.name(), path = %obj.path, error = %e, "lease renewal failed; issuing a fresh one");
                }
            },
            Lookup::Miss => {}
        }
        let response = self.fetch_object(obj).await?;
        if let Some(facts) = lease_facts(&response, unix_now()) {
            let parent = self.token().await.ok();
            let revoke = if self.cfg.leases.revoke_on_unmount && facts.lease_id.is_some() {
                parent.as_ref().map(|token| Revoker {
                    endpoint: self.endpoint.clone(),
                    cfg: Arc::clone(&self.cfg),
                    token: token.secret.clone(),
                })
            } else {
                None
            };
            // A lease cannot outlive the token that issued it; a certificate without a lease can.
            let issuer = match (&facts.lease_id, &parent) {
                (Some(_), Some(token)) => Some((token.tag(), token.expires)),
                _ => None,
            };
            leases.store(key, Arc::clone(&response), facts, revoke, issuer, Instant::now());
            self.lease_event(lease::Event::Issued, obj);
        }
        Ok(response)
    }

    fn lease_event(&self, event: lease::Event, obj: &VaultObject) {
        self.state.metrics.lease(event.label());
        self.state.metrics.leases_held.set(i64::try_from(self.state.leases.len()).unwrap_or(i64::MAX));
        tracing::debug!(backend = self.name(), path = %obj.path, lease.event = event.label(), "dynamic secret");
    }

    /// Renews a lease; returns the duration granted.
    async fn renew(self: &Arc<Self>, lease_id: &str, increment: Duration) -> Result<Duration, Error> {
        let token = self.token().await?;
        let body = serde_json::json!({"lease_id": lease_id, "increment": increment.as_secs()});
        let (status, response) =
            self.send("renew", reqwest::Method::PUT, "sys/leases/renew", None, Some(&body), Some(&token.secret), Replay::Always)
                .await?;
        let granted = response.get("lease_duration").and_then(Value::as_u64).unwrap_or(0);
        if !status.is_success() || granted == 0 {
            return Err(self.error(
                ErrorKind::Denied,
                format!("lease renewal refused (HTTP {}): {}", status.as_u16(), vault_errors(&response)),
            ));
        }
        Ok(Duration::from_secs(granted))
    }

    /// Reads from the backend, sharing static reads within the identity.
    async fn fetch_object(self: &Arc<Self>, obj: &VaultObject) -> Result<Arc<Value>, Error> {
        if obj.method != Method::Get {
            // Writes issue something new (a certificate, a credential): never shared.
            return self.read(obj).await.map(Arc::new);
        }
        let key = ReadKey { identity: self.key.clone(), request: obj.request_key() };
        let reuse = self.state.settings.static_reuse;
        if !reuse.is_zero()
            && let Some(found) = self.state.reads.get(&key)
        {
            self.state.metrics.cache("read", "hit");
            return Ok(found);
        }
        let bound = self.state.settings.shared_work_timeout;
        let (result, role) = loop {
            let me = Arc::clone(self);
            let owned = obj.clone();
            let (result, role) = self
                .state
                .reads_inflight
                .run(
                    key.clone(),
                    || async move { bounded(bound, me.name(), async { me.read(&owned).await.map(Arc::new) }).await },
                    aborted(self.name()),
                )
                .await;
            self.state.metrics.cache("read", if role == Role::Leader { "miss" } else { "shared" });
            if role == Role::Follower && result.as_ref().is_err_and(|e| e.kind == ErrorKind::Timeout) {
                continue;
            }
            break (result, role);
        };
        let response = result?;
        if has_lease(&response) {
            if role == Role::Follower && !self.cfg.leases.share {
                // A dynamic secret another pod's request issued: get our own.
                return self.read(obj).await.map(Arc::new);
            }
        } else if !reuse.is_zero() && role == Role::Leader {
            self.state.reads.insert(key, Arc::clone(&response), reuse);
        }
        Ok(response)
    }

    /// Reads one object's path, logging in again once if the token is refused.
    async fn read(self: &Arc<Self>, obj: &VaultObject) -> Result<Value, Error> {
        let (method, operation, replay) = match obj.method {
            Method::Get => (reqwest::Method::GET, "read", Replay::Always),
            Method::Put => (reqwest::Method::PUT, "write", Replay::UnsentOnly),
            Method::Post => (reqwest::Method::POST, "write", Replay::UnsentOnly),
        };
        let body = match obj.method {
            Method::Get => None,
            Method::Put | Method::Post => Some(Value::Object(obj.args.clone().unwrap_or_default())),
        };
        let mut token = self.token().await?;
        let mut relogged = false;
        loop {
            let (status, response) = self
                .send(operation, method.clone(), &obj.path, obj.query.as_deref(), body.as_ref(), Some(&token.secret), replay)
                .await?;
            let code = status.as_u16();
            match code {
                200..=299 if response.is_null() => {
                    return Err(self.error(
                        ErrorKind::NotFound,
                        format!("{} {} returned no data (HTTP {code})", obj.method.as_str(), obj.path),
                    ));
                }
                200..=299 => return Ok(response),
                403 if !relogged => {
                    relogged = true;
                    token = self.relogin(&token.secret).await?;
                }
                403 => {
                    return Err(self.error(
                        ErrorKind::Denied,
                        format!(
                            "{} {} refused (HTTP 403) for role {:?}: {}. Check that the role's token policies \
                             grant {} on this path",
                            obj.method.as_str(),
                            obj.path,
                            self.cfg.role,
                            vault_errors(&response),
                            capability(obj.method),
                        ),
                    ));
                }
                404 => {
                    return Err(self.error(
                        ErrorKind::NotFound,
                        format!(
                            "{} not found (HTTP 404){}. Check secretPath (a KV v2 path reads <mount>/data/<name>) \
                             and vaultNamespace",
                            obj.path,
                            optional_errors(&response)
                        ),
                    ));
                }
                _ => {
                    return Err(self.error(
                        ErrorKind::Invalid,
                        format!(
                            "{} {} was rejected (HTTP {code}): {}",
                            obj.method.as_str(),
                            obj.path,
                            vault_errors(&response)
                        ),
                    ));
                }
            }
        }
    }
}
