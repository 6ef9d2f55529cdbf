//! The pod a mount is for: its namespace, name, uid and service account, as kubelet reports them.

use rand::Rng;

/// A pod and its service account. Names and uids not given are generated, so tests never collide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFixture {
    namespace: String,
    name: String,
    uid: String,
    service_account: String,
    service_account_uid: String,
}

impl PodFixture {
    /// A pod in `namespace` running as `service_account`, with a generated pod name and uids.
    pub fn new(namespace: impl Into<String>, service_account: impl Into<String>) -> Self {
        let service_account = service_account.into();
        let name = format!("{service_account}-{}", random_suffix());
        Self {
            namespace: namespace.into(),
            name,
            uid: random_uid(),
            service_account,
            service_account_uid: random_uid(),
        }
    }

    /// Sets the pod name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the pod uid.
    #[must_use]
    pub fn with_uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = uid.into();
        self
    }

    /// Sets the service account's uid.
    #[must_use]
    pub fn with_service_account_uid(mut self, uid: impl Into<String>) -> Self {
        self.service_account_uid = uid.into();
        self
    }

    /// The pod's namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The pod's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The pod's uid.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The service account's name.
    pub fn service_account(&self) -> &str {
        &self.service_account
    }

    /// The service account's uid.
    pub fn service_account_uid(&self) -> &str {
        &self.service_account_uid
    }

    /// The Kubernetes user name of the service account: `system:serviceaccount:<namespace>:<name>`.
    pub fn subject(&self) -> String {
        format!(
            "system:serviceaccount:{}:{}",
            self.namespace, self.service_account
        )
    }

    /// The directory kubelet asks the driver to mount, which the driver passes on as `target_path`.
    pub fn target_path(&self) -> String {
        format!(
            "/var/lib/kubelet/pods/{}/volumes/kubernetes.io~csi/secrets-store/mount",
            self.uid
        )
    }
}

/// A random version-4 UUID in its usual text form, the shape of every Kubernetes uid.
pub(crate) fn random_uid() -> String {
    let bits: u128 = rand::rng().random();
    // Set the version (4) and variant (10xx) bits.
    let bits = (bits & !(0xF << 76) & !(0x3 << 62)) | (0x4 << 76) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Five lowercase alphanumerics, like the suffix a ReplicaSet gives its pods.
pub(crate) fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_look_like_version_4_uuids() {
        let uid = random_uid();
        assert_eq!(uid.len(), 36, "{uid}");
        assert_eq!(uid.as_bytes()[14], b'4', "{uid}");
        assert!(
            matches!(uid.as_bytes()[19], b'8' | b'9' | b'a' | b'b'),
            "{uid}"
        );
        assert_ne!(uid, random_uid());
    }

    #[test]
    fn target_path_names_the_pod_uid() {
        let pod = PodFixture::new("team-a", "app").with_uid("u-1");
        assert_eq!(
            pod.target_path(),
            "/var/lib/kubelet/pods/u-1/volumes/kubernetes.io~csi/secrets-store/mount"
        );
        assert_eq!(pod.subject(), "system:serviceaccount:team-a:app");
    }
}
