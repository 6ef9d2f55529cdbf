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

mod error;
mod spec;

pub use error::{Error, ReadError, SecretAction};
use spec::{SecretObject, parse};

/// Label on every Secret the shim manages.
pub const MANAGED_LABEL: &str = "secrets-store.csi.k8s.io/managed";
/// Attempts of a write that meets a newer resourceVersion.
pub(crate) const CONFLICT_RETRIES: usize = 5;

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
    async fn owners(&self, pod: &PodRef, spc: &str) -> Result<Vec<OwnerReference>, Error> {
        let pods: Api<Pod> = Api::namespaced(self.client(), &pod.namespace);
        let found = pods
            .get_opt(&pod.name)
            .await
            .map_err(|source| Error::ReadPod {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                source,
            })?;
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
        let status = match statuses.get_opt(&name).await {
            Ok(Some(status)) => status,
            Ok(None) => return Err(Error::NoPodStatus { name }),
            Err(source) => return Err(Error::ReadPodStatus { name, source }),
        };
        Ok(vec![OwnerReference {
            api_version: format!("{GROUP}/v1"),
            kind: "SecretProviderClassPodStatus".to_owned(),
            name,
            uid: status.metadata.uid.unwrap_or_default(),
            ..OwnerReference::default()
        }])
    }

    /// Creates or updates one Secret. Returns whether its data changed.
    async fn upsert(
        &self,
        namespace: &str,
        object: &SecretObject,
        data: BTreeMap<String, ByteString>,
        owners: &[OwnerReference],
    ) -> Result<bool, Error> {
        let api: Api<Secret> = Api::namespaced(self.client(), namespace);
        let failed = |action, source| Error::Secret {
            action,
            namespace: namespace.to_owned(),
            name: object.name.clone(),
            source,
        };
        let mut labels = object.labels.clone();
        labels.insert(MANAGED_LABEL.to_owned(), "true".to_owned());
        for _ in 0..CONFLICT_RETRIES {
            let existing = api
                .get_opt(&object.name)
                .await
                .map_err(|e| failed(SecretAction::Read, e))?;
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
                        Err(e) => return Err(failed(SecretAction::Create, e)),
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
                        Err(e) => return Err(failed(SecretAction::Update, e)),
                    }
                }
            }
        }
        Err(Error::Conflict {
            namespace: namespace.to_owned(),
            name: object.name.clone(),
        })
    }
}

/// The files mounted at `target`, by name. The publish just checked this path;
/// it is read again without following links.
fn read_files(target: &Path) -> Result<BTreeMap<String, Vec<u8>>, ReadError> {
    let Some(dir) = Target::resolve(target, &Scope::Anywhere)?.open()? else {
        return Ok(BTreeMap::new());
    };
    Ok(atomic_writer::current_files(&dir)?
        .into_iter()
        .map(|file| (file.path, file.contents.to_vec()))
        .collect())
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
    ) -> Result<Vec<String>, Error> {
        let mut objects = secret_objects
            .iter()
            .enumerate()
            .map(|(i, raw)| parse(i, raw))
            .collect::<Result<Vec<_>, _>>()?;
        let mut built = Vec::with_capacity(objects.len());
        for object in &mut objects {
            object.labels.extend(labels.clone());
            built.push(object.data(files)?);
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
    ) -> Result<(), Error> {
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
        let files = tokio::task::spawn_blocking(move || read_files(&target))
            .await
            .map_err(ReadError::from)
            .and_then(|files| files)
            .map_err(Error::ReadTarget)?;
        let owners = self.owners(pod, &spc.name).await?;
        let mut updated = Vec::new();
        for object in &objects {
            let data = object.data(&files)?;
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

    #[test]
    fn data_hash_sees_changes() {
        let a = BTreeMap::from([("k".to_owned(), ByteString(b"1".to_vec()))]);
        let b = BTreeMap::from([("k".to_owned(), ByteString(b"2".to_vec()))]);
        assert_ne!(data_hash(&a), data_hash(&b));
        assert_eq!(data_hash(&a), data_hash(&a.clone()));
    }
}
