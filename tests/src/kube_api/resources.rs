//! The resource types the fake serves, and the discovery documents that describe them.

use serde_json::{Value, json};

/// The API group of the Secrets Store CSI driver's custom resources.
pub const SECRETS_STORE_GROUP: &str = "secrets-store.csi.x-k8s.io";
/// Courier's own API group (the `SecretSync` custom resource).
pub const COURIER_GROUP: &str = "courier.dev";
/// The group of `Lease`s (leader election).
pub const COORDINATION_GROUP: &str = "coordination.k8s.io";

/// A resource type: where it lives in the API and what its objects are called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KubeResource {
    /// API group, `""` for the core group.
    pub group: &'static str,
    /// Version (the one requested, for groups serving several).
    pub version: &'static str,
    /// Plural resource name, as in URLs.
    pub plural: &'static str,
    /// Object kind.
    pub kind: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
}

impl KubeResource {
    /// Core `pods`.
    pub const PODS: Self = Self::core("pods", "Pod", true);
    /// Core `secrets`.
    pub const SECRETS: Self = Self::core("secrets", "Secret", true);
    /// Core `serviceaccounts`.
    pub const SERVICE_ACCOUNTS: Self = Self::core("serviceaccounts", "ServiceAccount", true);
    /// Core `configmaps`.
    pub const CONFIG_MAPS: Self = Self::core("configmaps", "ConfigMap", true);
    /// Core `events` (`v1` Events, the kind kubectl describe shows).
    pub const EVENTS: Self = Self::core("events", "Event", true);
    /// Core `nodes` (cluster-scoped).
    pub const NODES: Self = Self::core("nodes", "Node", false);
    /// Core `namespaces` (cluster-scoped).
    pub const NAMESPACES: Self = Self::core("namespaces", "Namespace", false);
    /// `secretproviderclasses.secrets-store.csi.x-k8s.io/v1`.
    pub const SECRET_PROVIDER_CLASSES: Self =
        Self::secrets_store("secretproviderclasses", "SecretProviderClass");
    /// `secretproviderclasspodstatuses.secrets-store.csi.x-k8s.io/v1`.
    pub const SECRET_PROVIDER_CLASS_POD_STATUSES: Self = Self::secrets_store(
        "secretproviderclasspodstatuses",
        "SecretProviderClassPodStatus",
    );

    /// `leases.coordination.k8s.io/v1`.
    pub const LEASES: Self = Self {
        group: COORDINATION_GROUP,
        version: "v1",
        plural: "leases",
        kind: "Lease",
        namespaced: true,
    };
    /// `secretsyncs.courier.dev/v1alpha1`, served with a status subresource.
    pub const SECRET_SYNCS: Self = Self {
        group: COURIER_GROUP,
        version: "v1alpha1",
        plural: "secretsyncs",
        kind: "SecretSync",
        namespaced: true,
    };

    const fn core(plural: &'static str, kind: &'static str, namespaced: bool) -> Self {
        Self {
            group: "",
            version: "v1",
            plural,
            kind,
            namespaced,
        }
    }

    const fn secrets_store(plural: &'static str, kind: &'static str) -> Self {
        Self {
            group: SECRETS_STORE_GROUP,
            version: "v1",
            plural,
            kind,
            namespaced: true,
        }
    }

    /// `v1` or `group/version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `secrets`, or `plural.group` for other groups, as API server messages name resources.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Whether this is a custom resource (stored as unstructured JSON, with `generation`).
    pub fn is_custom(&self) -> bool {
        self.group == SECRETS_STORE_GROUP || self.group == COURIER_GROUP
    }

    /// Whether the resource serves a `status` subresource, so a write to the main resource leaves `status`
    /// alone (and a create drops it), as the API server does for such a CRD. The Secrets Store CRDs declare
    /// none, so their `status` is written with the object.
    pub fn has_status_subresource(&self) -> bool {
        self.group == COURIER_GROUP
    }

    /// The storage key: the same for every version of a resource.
    pub(crate) fn store_key(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}/{}", self.group, self.plural)
        }
    }

    /// The stored (canonical) version of this resource.
    pub(crate) fn stored(&self) -> Self {
        find(self.group, canonical_version(self.group), self.plural).unwrap_or(*self)
    }

    /// The URL of the collection: in `namespace`, or across all namespaces (or cluster-scoped) with `None`.
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => format!("{base}/namespaces/{ns}/{}", self.plural),
            _ => format!("{base}/{}", self.plural),
        }
    }

    /// The URL of one object.
    pub fn object_path(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection_path(Some(namespace)))
    }
}

/// Every resource the fake serves, in their stored versions.
pub(crate) const RESOURCES: &[KubeResource] = &[
    KubeResource::PODS,
    KubeResource::SECRETS,
    KubeResource::SERVICE_ACCOUNTS,
    KubeResource::CONFIG_MAPS,
    KubeResource::EVENTS,
    KubeResource::NODES,
    KubeResource::NAMESPACES,
    KubeResource::SECRET_PROVIDER_CLASSES,
    KubeResource::SECRET_PROVIDER_CLASS_POD_STATUSES,
    KubeResource::LEASES,
    KubeResource::SECRET_SYNCS,
];

/// The API groups besides the core group, in the order `/apis` lists them.
const GROUPS: &[&str] = &[SECRETS_STORE_GROUP, COORDINATION_GROUP, COURIER_GROUP];

/// Versions a group serves; the first is stored, the others are converted on the way out (as a CRD with
/// several served versions and no conversion webhook).
fn group_versions(group: &str) -> &'static [&'static str] {
    match group {
        "" => &["v1"],
        SECRETS_STORE_GROUP => &["v1", "v1alpha1"],
        COORDINATION_GROUP => &["v1"],
        COURIER_GROUP => &["v1alpha1"],
        _ => &[],
    }
}

fn canonical_version(group: &str) -> &'static str {
    group_versions(group).first().copied().unwrap_or("v1")
}

/// The resource `plural` in `group/version`, if the fake serves it.
pub(crate) fn find(group: &str, version: &str, plural: &str) -> Option<KubeResource> {
    let version = group_versions(group)
        .iter()
        .copied()
        .find(|v| *v == version)?;
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.plural == plural)
        .map(|r| KubeResource { version, ..*r })
}

/// `/api`.
pub(crate) fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}],
    })
}

/// `/apis`.
pub(crate) fn api_groups() -> Value {
    let groups: Vec<Value> = GROUPS
        .iter()
        .map(|group| {
            let versions: Vec<Value> = group_versions(group)
                .iter()
                .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
                .collect();
            json!({
                "name": group,
                "versions": versions,
                "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/api/v1` or `/apis/<group>/<version>`; `None` when the fake does not serve that group version.
pub(crate) fn api_resources(group: &str, version: &str) -> Option<Value> {
    if !group_versions(group).contains(&version) {
        return None;
    }
    let verbs = [
        "create", "delete", "get", "list", "patch", "update", "watch",
    ];
    let mut resources: Vec<Value> = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        resources.push(json!({
            "name": r.plural,
            "singularName": r.kind.to_lowercase(),
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs,
        }));
        if r.has_status_subresource() {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        if *r == KubeResource::SERVICE_ACCOUNTS {
            resources.push(json!({
                "name": "serviceaccounts/token",
                "singularName": "",
                "namespaced": true,
                "group": "authentication.k8s.io",
                "version": "v1",
                "kind": "TokenRequest",
                "verbs": ["create"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
    )
}
