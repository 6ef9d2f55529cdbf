//! A mount's fetch: check the pod's token, open a session, send each distinct
//! request once, and select each object's value from its response.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use futures::StreamExt as _;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use super::select::{Document, SelectError, data_kind, select};
use super::session::{Session, TokenKey};
use super::{Error, ErrorKind, Fidelity, Flavor, Plan, VaultBackend, VaultConfig, VaultObject};
use crate::backend::token::{self, TokenAdvice};
use crate::identity::{PodIdentity, TokenProblem};
use crate::plan::{Fetched, ObjectSpec};
use crate::secret::SecretBytes;

/// Distinct requests of one mount in flight at once.
const MAX_CONCURRENT_REQUESTS: usize = 16;

impl VaultBackend {
    /// Fetches `plan`'s objects as `identity`; `specs[i]` is where
    /// `plan.objects[i]` goes. The result is in the order of `specs`.
    pub(super) async fn fetch_plan(&self, plan: &Plan, identity: &PodIdentity, specs: &[ObjectSpec]) -> Result<Vec<Fetched>, Error> {
        let cfg = &plan.config;
        let session = self.open_session(cfg, identity).await?;
        let objects: Vec<(&ObjectSpec, &VaultObject)> = specs.iter().zip(&plan.objects).collect();
        let (unique, slot_of) = requests(&objects, cfg.fidelity);
        session.token().await?;
        let bodies = read_all(&session, &unique).await?;
        let document = Document {
            request_id: cfg.fidelity == Fidelity::Anchor,
            mount_type: cfg.flavor == Flavor::Vault,
        };
        objects
            .into_iter()
            .zip(slot_of)
            .map(|((spec, obj), slot)| select_value(&bodies[slot], obj, document, cfg.flavor.name()).map_err(|e| e.for_object(spec)))
            .collect()
    }

    /// Checks the pod's token for the configured audience and opens the mount's
    /// session with it (not logged in yet).
    async fn open_session(&self, cfg: &VaultConfig, identity: &PodIdentity) -> Result<Arc<Session>, Error> {
        let checked =
            self.state.verifier.check(identity, &cfg.audience).await.map_err(|problem| token_error(problem, cfg, identity))?;
        let limit = {
            let mut limits = self.state.limits.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(
                limits
                    .entry(cfg.address.clone())
                    .or_insert_with(|| Arc::new(Semaphore::new(self.state.settings.backend_concurrency.max(1)))),
            )
        };
        Ok(Arc::new(Session {
            state: Arc::clone(&self.state),
            cfg: Arc::new(cfg.clone()),
            jwt: checked.token.clone(),
            service_account: format!("{}/{}", identity.namespace(), identity.service_account()),
            pod_uid: identity.pod_uid().to_owned(),
            identity_label: identity.log_label().to_owned(),
            endpoint: self.state.clients.endpoint(cfg).await?,
            key: TokenKey {
                address: cfg.address.clone(),
                namespace: cfg.namespace.clone(),
                mount: cfg.auth_mount.clone(),
                role: cfg.role.clone(),
                audience: cfg.audience.clone(),
                sa_namespace: identity.namespace().to_owned(),
                sa_name: identity.service_account().to_owned(),
                scope: checked.scope,
            },
            limit,
            current: Mutex::new(None),
            received: AtomicUsize::new(0),
        }))
    }
}

/// Why the pod's token cannot be used for `cfg`, and what to check.
fn token_error(problem: TokenProblem, cfg: &VaultConfig, identity: &PodIdentity) -> Error {
    let advice = TokenAdvice {
        missing_also: ", or set the SecretProviderClass 'audience' parameter to one of the passed audiences",
        pod: format!("pod {}/{}", identity.namespace(), identity.pod_name()),
    };
    token::token_error(problem, cfg.flavor.name(), &cfg.audience, identity, advice)
}

/// Sends the distinct requests, at most [`MAX_CONCURRENT_REQUESTS`] at once; the
/// first failure fails the mount, naming its object.
async fn read_all(session: &Arc<Session>, unique: &[(&ObjectSpec, &VaultObject)]) -> Result<Vec<Arc<Value>>, Error> {
    // The futures are built first so the stream's type holds no closure over
    // borrowed items (which trips the Send check of the gRPC handler).
    let reads: Vec<_> = unique
        .iter()
        .map(|&(spec, obj)| {
            let session = Arc::clone(session);
            async move { session.read_object(obj).await.map_err(|e| e.for_object(spec)) }
        })
        .collect();
    let responses: Vec<Result<Arc<Value>, Error>> =
        futures::stream::iter(reads).buffered(MAX_CONCURRENT_REQUESTS).collect().await;
    responses.into_iter().collect()
}

/// The object's value out of its request's response (`body`).
fn select_value(body: &Value, obj: &VaultObject, document: Document, backend: &'static str) -> Result<Fetched, Error> {
    let bytes = select(body, obj.secret_key.as_deref(), obj.expand, document).map_err(|e| {
        let message = match e {
            SelectError::NoData => format!(
                "secretKey {:?}: the response of {} has no 'data' object (data is {})",
                obj.secret_key.as_deref().unwrap_or_default(),
                obj.path,
                data_kind(body)
            ),
            SelectError::MissingKey { key, available } => format!(
                "secretKey {key:?} does not exist at {}; keys there: {}",
                obj.path,
                if available.is_empty() { "none".to_owned() } else { available.join(", ") }
            ),
        };
        Error::new(ErrorKind::NotFound, backend, message)
    })?;
    Ok(Fetched::value(SecretBytes::new(bytes), None))
}

/// The distinct requests of a mount, and for each object the index of the request
/// whose response it reads.
///
/// As the anchor providers, a mount sends one request per (path, query, method):
/// a second object with the same `secretPath` and `method` reads the first one's
/// response (the usual `tls.key` next to `tls.crt` from one `pki/issue` call),
/// whatever its own `secretArgs`. On the native socket, objects whose `secretArgs`
/// differ are separate requests, and an object without `secretArgs` reads the
/// response of an object with the same path and method if there is one.
fn requests<'a>(
    objects: &[(&'a ObjectSpec, &'a VaultObject)],
    fidelity: Fidelity,
) -> (Vec<(&'a ObjectSpec, &'a VaultObject)>, Vec<usize>) {
    let target = |obj: &VaultObject| (obj.method, obj.path.clone(), obj.query.clone());
    let mut unique: Vec<(&ObjectSpec, &VaultObject)> = Vec::new();
    let mut slot_of = vec![usize::MAX; objects.len()];
    let mut join = |i: usize, matches: &dyn Fn(&VaultObject) -> bool, unique: &mut Vec<(&'a ObjectSpec, &'a VaultObject)>| {
        let slot = match unique.iter().position(|(_, u)| matches(u)) {
            Some(slot) => slot,
            None => {
                unique.push(objects[i]);
                unique.len() - 1
            }
        };
        slot_of[i] = slot;
    };
    match fidelity {
        Fidelity::Anchor => {
            for (i, (_, obj)) in objects.iter().enumerate() {
                let t = target(obj);
                join(i, &|u| target(u) == t, &mut unique);
            }
        }
        Fidelity::Native => {
            // Objects that send arguments first, so one without arguments can read
            // the response of one listed after it.
            for (i, (_, obj)) in objects.iter().enumerate().filter(|(_, (_, o))| o.args.is_some()) {
                let key = obj.request_key();
                join(i, &|u| u.request_key() == key, &mut unique);
            }
            for (i, (_, obj)) in objects.iter().enumerate().filter(|(_, (_, o))| o.args.is_none()) {
                let t = target(obj);
                join(i, &|u| target(u) == t, &mut unique);
            }
        }
    }
    (unique, slot_of)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::vault::Method;

    fn spec_of(obj: VaultObject, index: usize) -> (ObjectSpec, VaultObject) {
        let spec = ObjectSpec {
            index,
            name: format!("o{index}"),
            path: crate::object_path::ObjectPath::parse(&format!("o{index}")).expect("path"),
            write: true,
            expand: None,
            mode: None,
            encoding: crate::plan::Encoding::Utf8,
            descriptor: String::new(),
            derived: Vec::new(),
        };
        (spec, obj)
    }

    #[test]
    fn one_request_per_path_and_method() {
        let issue = |args: Option<Value>, key: &str| VaultObject {
            path: "pki/issue/web".into(),
            query: None,
            method: Method::Put,
            args: args.and_then(|a| a.as_object().cloned()),
            secret_key: Some(key.into()),
            expand: false,
        };
        let specs = [
            spec_of(issue(None, "private_key"), 0),
            spec_of(issue(Some(serde_json::json!({"common_name": "a"})), "certificate"), 1),
            spec_of(issue(Some(serde_json::json!({"common_name": "b"})), "certificate"), 2),
            spec_of(VaultObject { method: Method::Post, ..issue(None, "ca_chain") }, 3),
        ];
        let objects: Vec<(&ObjectSpec, &VaultObject)> = specs.iter().map(|(s, o)| (s, o)).collect();
        // The anchors: the first listed object of each (path, method) sends, whatever its arguments.
        let (unique, slots) = requests(&objects, Fidelity::Anchor);
        assert_eq!((unique.len(), slots), (2, vec![0, 0, 0, 1]));
        assert!(unique[0].1.args.is_none());
        // Native: distinct arguments are distinct requests; no arguments joins the first with arguments.
        let (unique, slots) = requests(&objects, Fidelity::Native);
        assert_eq!((unique.len(), slots), (3, vec![0, 0, 1, 2]));
        assert_eq!(unique[0].0.index, 1);
    }

    #[test]
    fn identical_requests_share_a_key() {
        let a = VaultObject {
            path: "pki/issue/web".into(),
            query: None,
            method: Method::Put,
            args: serde_json::json!({"common_name": "a"}).as_object().cloned(),
            secret_key: Some("certificate".into()),
            expand: false,
        };
        let mut b = a.clone();
        b.secret_key = Some("private_key".into());
        assert_eq!(a.request_key(), b.request_key());
        b.args = serde_json::json!({"common_name": "b"}).as_object().cloned();
        assert_ne!(a.request_key(), b.request_key());
    }
}
