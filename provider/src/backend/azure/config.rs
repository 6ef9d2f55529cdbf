//! What a mount asks of Azure Key Vault: which vault in which cloud, whose
//! identity, and which objects and versions, in Key Vault's own terms.

use std::fmt;

/// Longest Key Vault object name (Key Vault's own limit).
pub(crate) const MAX_NAME_LEN: usize = 127;
/// Longest version id accepted (Key Vault's are 32 hex characters).
pub(crate) const MAX_VERSION_LEN: usize = 64;
/// Most versions one object may ask for with `objectVersionHistory`.
pub(crate) const MAX_HISTORY: u32 = 100;

/// The three kinds of Key Vault object, spelled as the Azure provider spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ObjectType {
    /// `secret`: a secret's value (also the secret backing a certificate).
    Secret,
    /// `key`: a key's public half, written as a `PUBLIC KEY` PEM.
    Key,
    /// `cert`: a certificate's leaf, written as a `CERTIFICATE` PEM.
    Cert,
}

impl ObjectType {
    /// Parses the exact spelling the Azure provider accepts.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "secret" => Some(Self::Secret),
            "key" => Some(Self::Key),
            "cert" => Some(Self::Cert),
            _ => None,
        }
    }

    /// The SecretProviderClass spelling.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::Key => "key",
            Self::Cert => "cert",
        }
    }

    /// The Key Vault collection (`/secrets`, `/keys`, `/certificates`).
    pub(crate) fn collection(self) -> &'static str {
        match self {
            Self::Secret => "secrets",
            Self::Key => "keys",
            Self::Cert => "certificates",
        }
    }
}

/// The Azure cloud whose endpoints a mount uses (`cloudName`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Cloud {
    /// `AzurePublicCloud` (also `AzureCloud`, and the default).
    Public,
    /// `AzureUSGovernmentCloud` (also `AzureUSGovernment`).
    UsGovernment,
    /// `AzureChinaCloud`.
    China,
    /// `AzureStackCloud`: endpoints read from `cloudEnvFileName`, a file below
    /// the directory the operator allowed.
    Stack {
        /// The file as the SecretProviderClass names it.
        file: String,
    },
}

/// Whose identity reads the vault.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum AzureAuth {
    /// Entra workload identity: the pod's token for `api://AzureADTokenExchange`
    /// as a client assertion for `client_id`; `None` takes the service account's
    /// `azure.workload.identity/client-id` annotation, or, where the operator
    /// allows it, the service principal of the volume's `nodePublishSecretRef`.
    Pod {
        /// `clientID` of the SecretProviderClass.
        client_id: Option<String>,
    },
}

/// The mount-wide part of an Azure plan.
#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// `keyvaultName`: 3-24 characters of `[-A-Za-z0-9]`.
    pub(crate) vault: String,
    /// `tenantID` (or `tenantId`); `None` takes the service account's annotation.
    pub(crate) tenant: Option<String>,
    /// Whose identity reads.
    pub(crate) auth: AzureAuth,
    /// Which cloud's endpoints.
    pub(crate) cloud: Cloud,
}

impl AzureConfig {
    /// The `clientID` the SecretProviderClass names, if any.
    pub(crate) fn auth_client_id(&self) -> Option<&str> {
        let AzureAuth::Pod { client_id } = &self.auth;
        client_id.as_deref()
    }
}

/// Where one object comes from.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AzureObject {
    /// The Key Vault object's name.
    pub(crate) name: String,
    /// Secret, key or certificate.
    pub(crate) kind: ObjectType,
    /// `objectVersion`; `None` for the current version.
    pub(crate) version: Option<String>,
    /// `objectVersionHistory` above 1: that many versions, newest first, as files
    /// `0..N-1` below the object's path; `None` writes one file.
    pub(crate) history: Option<u32>,
    /// `objectFormat: pfx` on a secret: a certificate's PKCS#12 is written as Key
    /// Vault holds it (base64) instead of converted to PEM.
    pub(crate) pfx: bool,
}

impl fmt::Debug for AzureObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)?;
        if let Some(version) = &self.version {
            write!(f, "/{version}")?;
        }
        Ok(())
    }
}

impl AzureObject {
    /// How messages name the object, as the Azure provider does
    /// (`objectType:secret, objectName:db, objectVersion:`).
    pub(crate) fn describe(&self) -> String {
        format!(
            "objectType:{}, objectName:{}, objectVersion:{}",
            self.kind.as_str(),
            self.name,
            self.version.as_deref().unwrap_or_default()
        )
    }
}

/// Whether `name` is a Key Vault object name: 1-127 of `[0-9A-Za-z-]`.
pub(crate) fn valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Whether `version` can be a Key Vault version id (32 hex characters in
/// practice; any short alphanumeric id is sent, so Key Vault names a wrong one).
pub(crate) fn valid_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= MAX_VERSION_LEN
        && version.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Whether `name` is a vault name as the Azure provider checks it.
pub(crate) fn vault_name_problem(name: &str) -> Option<String> {
    if name.len() < 3 || name.len() > 24 {
        return Some(format!(
            "Invalid vault name: {name:?}, must be between 3 and 24 chars"
        ));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Some(format!(
            "Invalid vault name: {name:?}, must match [-a-zA-Z0-9]{{3,24}}"
        ));
    }
    None
}

/// Whether `tenant` is a tenant id (a GUID) or a tenant domain name.
pub(crate) fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 253
        && !tenant.starts_with(['.', '-'])
        && tenant
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Whether `client_id` is an application (client) id: a GUID in practice.
pub(crate) fn valid_client_id(client_id: &str) -> bool {
    !client_id.is_empty()
        && client_id.len() <= 64
        && client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_versions_vaults_tenants() {
        assert!(valid_object_name("db-password-1"));
        for bad in ["", "a/b", "a b", "..", "a?x", "é", &"a".repeat(128)] {
            assert!(!valid_object_name(bad), "{bad:?}");
        }
        assert!(valid_version("0123456789abcdef0123456789abcdef"));
        assert!(!valid_version("../x") && !valid_version(""));
        assert_eq!(vault_name_problem("kv-1"), None);
        assert!(vault_name_problem("kv").is_some_and(|p| p.contains("between 3 and 24")));
        assert!(vault_name_problem("kv.evil.com").is_some_and(|p| p.contains("[-a-zA-Z0-9]")));
        assert!(
            valid_tenant("72f988bf-86f1-41af-91ab-2d7cd011db47")
                && valid_tenant("contoso.onmicrosoft.com")
        );
        for bad in ["", "a/b", "x?y", ".x", "a@b"] {
            assert!(!valid_tenant(bad), "{bad:?}");
        }
        assert!(valid_client_id("00000000-0000-0000-0000-000000000001"));
        assert!(!valid_client_id("a b") && !valid_client_id(&"a".repeat(65)));
    }
}
