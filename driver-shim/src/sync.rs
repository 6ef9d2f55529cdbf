//! Mirroring mounted files into Kubernetes Secrets (`spec.secretObjects`).
//!
//! After every successful mount the Secrets of the SecretProviderClass are made
//! to match the files: created with their owners already set (the pod's own
//! owners, such as its ReplicaSet, or the SecretProviderClassPodStatus of a bare
//! pod), owners added when more pods share a Secret so a rollout never leaves it
//! ownerless, and data updated only when it changed, with optimistic concurrency.
//! Nothing here deletes a Secret: Kubernetes garbage collection does, once every
//! owner is gone.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use sha2::{Digest as _, Sha256};

use crate::atomic_writer;
use crate::cluster::{Cluster, EventType, GROUP, PodRef, SecretProviderClass};
use crate::csi::AfterMount;
use crate::target::{Scope, Target};
use crate::tls;

/// Label on every Secret the shim manages.
pub const MANAGED_LABEL: &str = "secrets-store.csi.k8s.io/managed";
/// Attempts of a write that meets a newer resourceVersion.
const CONFLICT_RETRIES: usize = 5;
/// The TLS Secret type, whose keys are fixed.
const TLS_TYPE: &str = "kubernetes.io/tls";

/// One `secretObjects` entry.
#[derive(Debug, Clone)]
struct SecretObject {
    index: usize,
    name: String,
    kind: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    data: Vec<(String, String)>,
}

fn string_map(value: Option<&serde_json::Value>) -> BTreeMap<String, String> {
    value
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

fn parse(index: usize, raw: &serde_json::Value) -> Result<SecretObject, String> {
    let text = |k: &str| {
        raw.get(k)
            .and_then(serde_json::Value::as_str)
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let name = text("secretName");
    let kind = text("type");
    if name.is_empty() {
        return Err(format!("secretObjects[{index}].secretName is empty"));
    }
    if kind.is_empty() {
        return Err(format!(
            "secretObjects[{index}] ({name}): type is empty; set it, e.g. Opaque"
        ));
    }
    let data: Vec<(String, String)> = raw
        .get("data")
        .and_then(serde_json::Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    let field = |k: &str| {
                        e.get(k)
                            .and_then(serde_json::Value::as_str)
                            .map(str::trim)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    (field("objectName"), field("key"))
                })
                .collect()
        })
        .unwrap_or_default();
    if data.is_empty() {
        return Err(format!("secretObjects[{index}] ({name}): data is empty"));
    }
    for (j, (object, key)) in data.iter().enumerate() {
        if object.is_empty() || key.is_empty() {
            return Err(format!(
                "secretObjects[{index}].data[{j}] ({name}): objectName and key are both required"
            ));
        }
        if kind == TLS_TYPE && key != "tls.key" && key != "tls.crt" {
            return Err(format!(
                "secretObjects[{index}].data[{j}] ({name}): a kubernetes.io/tls Secret takes only the keys tls.key and tls.crt, not {key:?}"
            ));
        }
    }
    Ok(SecretObject {
        index,
        name,
        kind,
        labels: string_map(raw.get("labels")),
        annotations: string_map(raw.get("annotations")),
        data,
    })
}

/// Hash of a Secret's data, to skip writes that change nothing.
fn data_hash(data: &BTreeMap<String, ByteString>) -> [u8; 32] {
    let mut h = Sha256::new();
    for (k, v) in data {
        h.update((k.len() as u64).to_be_bytes());
        h.update(k.as_bytes());
        h.update((v.0.len() as u64).to_be_bytes());
        h.update(&v.0);
    }
    h.finalize().into()
}

/// Mirrors files into Secrets.
#[derive(Debug, Clone)]
pub struct SecretSync {
    cluster: Arc<Cluster>,
}

impl SecretSync {
    /// Uses `cluster`'s client.
    #[must_use]
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Self { cluster }
    }

    fn client(&self) -> kube::Client {
        self.cluster.client().clone()
    }

    /// The owners a Secret of `pod` gets: the pod's own owners, or its
    /// SecretProviderClassPodStatus for a bare pod.
    async fn owners(&self, pod: &PodRef, spc: &str) -> Result<Vec<OwnerReference>, String> {
        let pods: Api<Pod> = Api::namespaced(self.client(), &pod.namespace);
        let found = pods
            .get_opt(&pod.name)
            .await
            .map_err(|e| format!("cannot read pod {}/{}: {e}", pod.namespace, pod.name))?;
        let owners: Vec<OwnerReference> = found
            .and_then(|p| p.metadata.owner_references)
            .unwrap_or_default()
            .into_iter()
            .map(|o| OwnerReference {
                controller: None,
                block_owner_deletion: None,
                ..o
            })
            .collect();
        if !owners.is_empty() {
            return Ok(owners);
        }
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(GROUP, "v1", "SecretProviderClassPodStatus"),
            "secretproviderclasspodstatuses",
        );
        let statuses: Api<DynamicObject> =
            Api::namespaced_with(self.client(), &pod.namespace, &resource);
        let name = format!("{}-{}-{spc}", pod.name, pod.namespace);
        let status = statuses
            .get_opt(&name)
            .await
            .map_err(|e| format!("cannot read secretproviderclasspodstatus {name}: {e}"))?
            .ok_or_else(|| format!("secretproviderclasspodstatus {name} does not exist, so a bare pod's Secret has no owner"))?;
        Ok(vec![OwnerReference {
            api_version: format!("{GROUP}/v1"),
            kind: "SecretProviderClassPodStatus".to_owned(),
            name,
            uid: status.metadata.uid.unwrap_or_default(),
            ..OwnerReference::default()
        }])
    }

    /// Builds one Secret's data from the mounted files.
    fn data(
        object: &SecretObject,
        files: &BTreeMap<String, Vec<u8>>,
    ) -> Result<BTreeMap<String, ByteString>, String> {
        let mut data = BTreeMap::new();
        for (j, (object_name, key)) in object.data.iter().enumerate() {
            let Some(content) = files.get(object_name) else {
                let existing: Vec<&str> = files.keys().map(String::as_str).collect();
                return Err(format!(
                    "secretObjects[{}].data[{j}] ({}): file matching objectName {object_name:?} not found in the pod; files: {}",
                    object.index,
                    object.name,
                    if existing.is_empty() {
                        "none".to_owned()
                    } else {
                        existing.join(", ")
                    }
                ));
            };
            let value = if object.kind == TLS_TYPE {
                let pair = tls::split(content).map_err(|e| {
                    format!(
                        "secretObjects[{}].data[{j}] ({}): objectName {object_name:?}: {e}",
                        object.index, object.name
                    )
                })?;
                if key == "tls.key" {
                    pair.key.to_vec()
                } else {
                    pair.certs
                }
            } else {
                content.clone()
            };
            data.insert(key.clone(), ByteString(value));
        }
        Ok(data)
    }

    /// Creates or updates one Secret. Returns whether its data changed.
    async fn upsert(
        &self,
        namespace: &str,
        object: &SecretObject,
        data: BTreeMap<String, ByteString>,
        owners: &[OwnerReference],
    ) -> Result<bool, String> {
        let api: Api<Secret> = Api::namespaced(self.client(), namespace);
        let mut labels = object.labels.clone();
        labels.insert(MANAGED_LABEL.to_owned(), "true".to_owned());
        for _ in 0..CONFLICT_RETRIES {
            let existing = api
                .get_opt(&object.name)
                .await
                .map_err(|e| format!("cannot read secret {namespace}/{}: {e}", object.name))?;
            match existing {
                None => {
                    let secret = Secret {
                        metadata: ObjectMeta {
                            name: Some(object.name.clone()),
                            namespace: Some(namespace.to_owned()),
                            labels: Some(labels.clone()),
                            annotations: (!object.annotations.is_empty())
                                .then(|| object.annotations.clone()),
                            owner_references: Some(owners.to_vec()),
                            ..ObjectMeta::default()
                        },
                        type_: Some(object.kind.clone()),
                        data: Some(data.clone()),
                        ..Secret::default()
                    };
                    match api.create(&PostParams::default(), &secret).await {
                        Ok(_) => return Ok(true),
                        Err(kube::Error::Api(e)) if e.code == 409 => continue,
                        Err(e) => {
                            return Err(format!(
                                "cannot create secret {namespace}/{}: {e}",
                                object.name
                            ));
                        }
                    }
                }
                Some(mut secret) => {
                    let old_hash = data_hash(secret.data.as_ref().unwrap_or(&BTreeMap::new()));
                    let data_changed = old_hash != data_hash(&data);
                    let mut current_owners =
                        secret.metadata.owner_references.clone().unwrap_or_default();
                    let mut owners_changed = false;
                    for owner in owners {
                        if !current_owners.iter().any(|o| o.uid == owner.uid) {
                            current_owners.push(owner.clone());
                            owners_changed = true;
                        }
                    }
                    let current_labels = secret.metadata.labels.get_or_insert_with(BTreeMap::new);
                    let labels_changed =
                        labels.iter().any(|(k, v)| current_labels.get(k) != Some(v));
                    current_labels.extend(labels.clone());
                    let current_annotations = secret
                        .metadata
                        .annotations
                        .get_or_insert_with(BTreeMap::new);
                    let annotations_changed = object
                        .annotations
                        .iter()
                        .any(|(k, v)| current_annotations.get(k) != Some(v));
                    current_annotations.extend(object.annotations.clone());
                    if !(data_changed || owners_changed || labels_changed || annotations_changed) {
                        return Ok(false);
                    }
                    secret.metadata.owner_references = Some(current_owners);
                    secret.data = Some(data.clone());
                    secret.string_data = None;
                    match api
                        .replace(&object.name, &PostParams::default(), &secret)
                        .await
                    {
                        Ok(_) => return Ok(data_changed),
                        Err(kube::Error::Api(e)) if e.code == 409 => continue,
                        Err(e) => {
                            return Err(format!(
                                "cannot update secret {namespace}/{}: {e}",
                                object.name
                            ));
                        }
                    }
                }
            }
        }
        Err(format!(
            "secret {namespace}/{}: still conflicting after {CONFLICT_RETRIES} attempts",
            object.name
        ))
    }
}

impl SecretSync {
    /// Mirrors `files` (path to contents, as a mount holds them) into the Secrets `secret_objects` describe
    /// (entries shaped as a SecretProviderClass's `secretObjects`), in `namespace`, by the same rules as after
    /// a mount: `labels` and the managed label set, `owners` added, TLS split, data written only when its hash
    /// changed, retried on conflicts. Every Secret's data is built before any is written, so a missing file
    /// leaves all of them as they were. Returns the names of the Secrets whose data changed.
    pub async fn mirror(
        &self,
        namespace: &str,
        secret_objects: &[serde_json::Value],
        files: &BTreeMap<String, Vec<u8>>,
        owners: &[OwnerReference],
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<String>, String> {
        let mut objects = secret_objects
            .iter()
            .enumerate()
            .map(|(i, raw)| parse(i, raw))
            .collect::<Result<Vec<_>, _>>()?;
        let mut built = Vec::with_capacity(objects.len());
        for object in &mut objects {
            object.labels.extend(labels.clone());
            built.push(Self::data(object, files)?);
        }
        let mut changed = Vec::new();
        for (object, data) in objects.iter().zip(built) {
            if self.upsert(namespace, object, data, owners).await? {
                changed.push(object.name.clone());
            }
        }
        Ok(changed)
    }
}

#[tonic::async_trait]
impl AfterMount for SecretSync {
    async fn mounted(
        &self,
        pod: &PodRef,
        spc: &SecretProviderClass,
        target: &Path,
        rotated: bool,
    ) -> Result<(), String> {
        if spc.secret_objects.is_empty() {
            return Ok(());
        }
        let objects = spc
            .secret_objects
            .iter()
            .enumerate()
            .map(|(i, raw)| parse(i, raw))
            .collect::<Result<Vec<_>, _>>()?;
        let target = target.to_owned();
        let files =
            tokio::task::spawn_blocking(move || -> Result<BTreeMap<String, Vec<u8>>, String> {
                // The publish just checked this path; read it without following links.
                let dir = Target::resolve(&target, &Scope::Anywhere)
                    .and_then(|t| t.open())
                    .map_err(|e| e.to_string())?;
                let mut files = BTreeMap::new();
                for file in dir
                    .map(|d| atomic_writer::current_files(&d))
                    .transpose()
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default()
                {
                    files.insert(file.path, file.contents.to_vec());
                }
                Ok(files)
            })
            .await
            .map_err(|e| e.to_string())??;
        let owners = self.owners(pod, &spc.name).await?;
        let mut updated = Vec::new();
        for object in &objects {
            let data = Self::data(object, &files)?;
            let data_changed = self.upsert(&pod.namespace, object, data, &owners).await?;
            if data_changed && rotated {
                updated.push(object.name.clone());
            }
        }
        if !updated.is_empty() {
            let ids: Vec<&str> = objects
                .iter()
                .flat_map(|o| o.data.iter().map(|(name, _)| name.as_str()))
                .collect();
            self.cluster
                .event(
                    pod,
                    EventType::Normal,
                    "SecretRotationComplete",
                    &format!(
                        "updated secrets {} from objects {}",
                        updated.join(", "),
                        ids.join(", ")
                    ),
                )
                .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn entries_are_checked() {
        assert!(parse(0, &json!({"secretName": "s", "type": "Opaque", "data": [{"objectName": "a", "key": "k"}]})).is_ok());
        for (raw, words) in [
            (
                json!({"type": "Opaque", "data": [{"objectName": "a", "key": "k"}]}),
                "secretName",
            ),
            (
                json!({"secretName": "s", "data": [{"objectName": "a", "key": "k"}]}),
                "type is empty",
            ),
            (
                json!({"secretName": "s", "type": "Opaque"}),
                "data is empty",
            ),
            (
                json!({"secretName": "s", "type": "Opaque", "data": [{"key": "k"}]}),
                "objectName and key",
            ),
            (
                json!({"secretName": "s", "type": TLS_TYPE, "data": [{"objectName": "a", "key": "ca.crt"}]}),
                "tls.key and tls.crt",
            ),
        ] {
            let err = parse(0, &raw).expect_err("invalid");
            assert!(err.contains(words), "{err}");
        }
    }

    #[test]
    fn missing_files_are_named_with_the_files_that_exist() {
        let object = parse(1, &json!({"secretName": "s", "type": "Opaque", "data": [{"objectName": "nope", "key": "k"}]})).expect("ok");
        let files = BTreeMap::from([
            ("a".to_owned(), b"secret-value".to_vec()),
            ("b".to_owned(), b"x".to_vec()),
        ]);
        let err = SecretSync::data(&object, &files).expect_err("missing");
        assert!(
            err.contains("\"nope\"")
                && err.contains("files: a, b")
                && !err.contains("secret-value"),
            "{err}"
        );
    }

    #[test]
    fn data_hash_sees_changes() {
        let a = BTreeMap::from([("k".to_owned(), ByteString(b"1".to_vec()))]);
        let b = BTreeMap::from([("k".to_owned(), ByteString(b"2".to_vec()))]);
        assert_ne!(data_hash(&a), data_hash(&b));
        assert_eq!(data_hash(&a), data_hash(&a.clone()));
    }
}
