//! The Kubernetes side of the shim: SecretProviderClasses from a watched cache
//! (never fetched per mount), SecretProviderClassPodStatus records, and Events.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};

/// API group of the Secrets Store CRDs.
pub const GROUP: &str = "secrets-store.csi.x-k8s.io";
/// Label naming the node that wrote a SecretProviderClassPodStatus.
pub const NODE_LABEL: &str = "internal.secrets-store.csi.k8s.io/node-name";
/// How long a publish waits for the SecretProviderClass cache's first list.
const CACHE_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts of an update that meets a newer resourceVersion.
const CONFLICT_RETRIES: usize = 5;
/// The API server refuses Event messages over this many bytes.
const MAX_EVENT_MESSAGE_BYTES: usize = 1024;
/// Name in Events' source.
const COMPONENT: &str = "courier-driver-shim";

/// Why a SecretProviderClass could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A `spec.parameters` value that is a list or an object.
    #[error("spec.parameters.{0} must be a string")]
    Parameter(String),
    /// The watch has not listed SecretProviderClasses yet.
    #[error("the SecretProviderClass cache is not synced yet (check the API server and RBAC)")]
    CacheNotSynced,
}

/// A SecretProviderClass as the shim uses it.
#[derive(Debug, Clone, Default)]
pub struct SecretProviderClass {
    /// Name.
    pub name: String,
    /// `spec.provider`.
    pub provider: String,
    /// `spec.parameters`.
    pub parameters: BTreeMap<String, String>,
    /// `spec.secretObjects`, raw.
    pub secret_objects: Vec<serde_json::Value>,
}

impl SecretProviderClass {
    /// Reads `spec` of a SecretProviderClass object (or manifest).
    pub fn from_spec(name: &str, spec: &serde_json::Value) -> Result<Self, Error> {
        let provider = spec
            .get("provider")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut parameters = BTreeMap::new();
        if let Some(map) = spec
            .get("parameters")
            .and_then(serde_json::Value::as_object)
        {
            for (k, v) in map {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(_) | serde_json::Value::Bool(_) => v.to_string(),
                    _ => return Err(Error::Parameter(k.clone())),
                };
                parameters.insert(k.clone(), text);
            }
        }
        let secret_objects = spec
            .get("secretObjects")
            .and_then(serde_json::Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(Self {
            name: name.to_owned(),
            provider,
            parameters,
            secret_objects,
        })
    }
}

/// The pod a volume belongs to.
#[derive(Debug, Clone, Default)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
}

/// Event severity.
#[derive(Debug, Clone, Copy)]
pub enum EventType {
    /// Normal.
    Normal,
    /// Warning.
    Warning,
}

fn gvk(kind: &str) -> GroupVersionKind {
    GroupVersionKind::gvk(GROUP, "v1", kind)
}

/// The cluster connection.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    spcs: Store<DynamicObject>,
    spc_resource: ApiResource,
    spcps_resource: ApiResource,
    node_id: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects (in-cluster config or KUBECONFIG) and starts watching SecretProviderClasses.
    pub async fn connect(node_id: String) -> Result<Self, kube::Error> {
        let client = kube::Client::try_default().await?;
        Ok(Self::with_client(client, node_id))
    }

    /// Starts the SecretProviderClass watch on `client`.
    pub fn with_client(client: kube::Client, node_id: String) -> Self {
        let spc_resource =
            ApiResource::from_gvk_with_plural(&gvk("SecretProviderClass"), "secretproviderclasses");
        let spcps_resource = ApiResource::from_gvk_with_plural(
            &gvk("SecretProviderClassPodStatus"),
            "secretproviderclasspodstatuses",
        );
        let writer = reflector::store::Writer::<DynamicObject>::new(spc_resource.clone());
        let spcs = writer.as_reader();
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &spc_resource);
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default()).default_backoff(),
        );
        tokio::spawn(async move {
            stream
                .for_each(|event| async move {
                    if let Err(e) = event {
                        tracing::warn!(error = %e, "SecretProviderClass watch failed; retrying");
                    }
                })
                .await;
        });
        Self {
            client,
            spcs,
            spc_resource,
            spcps_resource,
            node_id,
        }
    }

    /// The SecretProviderClass `namespace/name` from the watched cache.
    pub async fn secret_provider_class(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<SecretProviderClass>, Error> {
        if tokio::time::timeout(CACHE_READY_TIMEOUT, self.spcs.wait_until_ready())
            .await
            .is_err()
        {
            return Err(Error::CacheNotSynced);
        }
        let key = ObjectRef::new_with(name, self.spc_resource.clone()).within(namespace);
        match self.spcs.get(&key) {
            None => Ok(None),
            Some(object) => {
                let spec = object
                    .data
                    .get("spec")
                    .cloned()
                    .unwrap_or(serde_json::Value::Null);
                SecretProviderClass::from_spec(name, &spec).map(Some)
            }
        }
    }

    /// Creates or updates the SecretProviderClassPodStatus of a successful mount,
    /// named and labelled as the upstream driver does and owned by the pod.
    pub async fn record_status(
        &self,
        pod: &PodRef,
        spc: &str,
        target_path: &str,
        versions: &[(String, String)],
    ) -> Result<(), kube::Error> {
        let name = format!("{}-{}-{}", pod.name, pod.namespace, spc);
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &pod.namespace, &self.spcps_resource);
        let mut objects: Vec<serde_json::Value> = versions
            .iter()
            .map(|(id, version)| serde_json::json!({"id": id, "version": version}))
            .collect();
        objects.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let status = serde_json::json!({
            "podName": pod.name,
            "secretProviderClassName": spc,
            "mounted": true,
            "targetPath": target_path,
            "objects": objects,
        });
        let owner = OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Pod".to_owned(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            ..OwnerReference::default()
        };
        for _ in 0..CONFLICT_RETRIES {
            match api.get_opt(&name).await? {
                None => {
                    let mut object =
                        DynamicObject::new(&name, &self.spcps_resource).within(&pod.namespace);
                    object.metadata.labels = Some(BTreeMap::from([(
                        NODE_LABEL.to_owned(),
                        self.node_id.clone(),
                    )]));
                    object.metadata.owner_references = Some(vec![owner.clone()]);
                    object.data = serde_json::json!({"status": status});
                    match api.create(&PostParams::default(), &object).await {
                        Ok(_) => return Ok(()),
                        Err(kube::Error::Api(e)) if e.code == 409 => continue,
                        Err(e) => return Err(e),
                    }
                }
                Some(mut object) => {
                    let labelled = object
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(NODE_LABEL))
                        == Some(&self.node_id);
                    let owned = object.metadata.owner_references.as_deref()
                        == Some(std::slice::from_ref(&owner));
                    if labelled && owned && object.data.get("status") == Some(&status) {
                        return Ok(());
                    }
                    object
                        .metadata
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert(NODE_LABEL.to_owned(), self.node_id.clone());
                    object.metadata.owner_references = Some(vec![owner.clone()]);
                    object.data["status"] = status.clone();
                    match api.replace(&name, &PostParams::default(), &object).await {
                        Ok(_) => return Ok(()),
                        Err(kube::Error::Api(e)) if e.code == 409 => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(kube::Error::Api(Box::new(kube::core::Status::failure(
            &format!("secretproviderclasspodstatus {name}: still conflicting after {CONFLICT_RETRIES} attempts"),
            "Conflict",
        ).with_code(409))))
    }

    /// Records an Event on the pod. Failures are logged, never fatal.
    pub async fn event(&self, pod: &PodRef, kind: EventType, reason: &str, message: &str) {
        let now = k8s_openapi::jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", pod.name)),
                namespace: Some(pod.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(pod.name.clone()),
                namespace: Some(pod.namespace.clone()),
                uid: Some(pod.uid.clone()),
                ..ObjectReference::default()
            },
            reason: Some(reason.to_owned()),
            message: Some(truncate_bytes(message, MAX_EVENT_MESSAGE_BYTES)),
            type_: Some(match kind {
                EventType::Normal => "Normal".to_owned(),
                EventType::Warning => "Warning".to_owned(),
            }),
            source: Some(EventSource {
                component: Some(COMPONENT.to_owned()),
                host: Some(self.node_id.clone()),
            }),
            first_timestamp: Some(Time(now)),
            last_timestamp: Some(Time(now)),
            event_time: Some(MicroTime(now)),
            reporting_component: Some(COMPONENT.to_owned()),
            reporting_instance: Some(self.node_id.clone()),
            action: Some(reason.to_owned()),
            count: Some(1),
            ..Event::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &pod.namespace);
        if let Err(e) = api.create(&PostParams::default(), &event).await {
            tracing::warn!(pod.namespace = %pod.namespace, pod.name = %pod.name, reason, error = %e, "cannot record an event");
        }
    }

    /// The client, for the Secret mirror.
    #[must_use]
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// This node's id.
    #[must_use]
    pub fn node_id(&self) -> &str {
        &self.node_id
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
