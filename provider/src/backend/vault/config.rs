//! Vault/OpenBao configuration of a mount, as the dialects produce it.

use std::path::PathBuf;

/// Which server family: they share the API, and differ in defaults and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// HashiCorp Vault.
    Vault,
    /// OpenBao.
    OpenBao,
}

impl Flavor {
    /// Name used in messages and logs.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Vault => "vault",
            Self::OpenBao => "openbao",
        }
    }

    /// Token audience used when the SecretProviderClass sets none.
    #[must_use]
    pub fn default_audience(self) -> &'static str {
        self.name()
    }
}

/// Whether the server's certificate is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsVerify {
    /// Verify the chain and the name (the default).
    Enabled,
    /// Accept any certificate: `vaultSkipTLSVerify: "true"`. Logged as a warning.
    DangerousDisabled,
}

/// TLS settings of a mount; part of the HTTP client cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    /// PEM file of CA certificates (replaces the system roots).
    pub ca_cert: Option<PathBuf>,
    /// Directory of PEM CA certificates (replaces the system roots).
    pub ca_dir: Option<PathBuf>,
    /// Name to verify the server certificate against (and send as SNI).
    pub server_name: Option<String>,
    /// Client certificate (PEM) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub client_key: Option<PathBuf>,
    /// Verification on or off.
    pub verify: TlsVerify,
}

/// How a SecretProviderClass wants its dynamic secrets kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct LeasePolicy {
    /// `shareLeases`: pods of the same identity may share one lease.
    pub share: bool,
    /// `revokeOnUnmount`: revoke leases no mount has used for the grace period.
    pub revoke_on_unmount: bool,
}

/// Where and how a mount logs in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VaultConfig {
    /// Server family.
    pub flavor: Flavor,
    /// Base address, e.g. `https://vault.vault:8200` (no trailing `/`).
    pub address: String,
    /// Enterprise/OpenBao namespace, sent as `X-Vault-Namespace`.
    pub namespace: Option<String>,
    /// Auth mount path (`kubernetes`, `jwt`, ...), without `auth/`.
    pub auth_mount: String,
    /// Role to log in as.
    pub role: String,
    /// Audience of the service-account token to log in with.
    pub audience: String,
    /// TLS settings.
    pub tls: TlsSettings,
    /// Dynamic-secret policy.
    pub leases: LeasePolicy,
    /// Whether whole responses and repeated requests follow the anchor provider exactly.
    pub fidelity: Fidelity,
}

/// How closely a mount follows the provider whose socket it arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fidelity {
    /// The `vault` and `openbao` sockets, as those providers behave: a whole-response
    /// file holds the response as their client library writes it, `request_id`
    /// included; objects with the same `secretPath` and `method` share one request
    /// (the first listed object's `secretArgs` are sent).
    Anchor,
    /// Courier's native socket: a whole-response file leaves out `request_id`
    /// (new on every read, so an unchanged secret keeps its version); objects
    /// with different `secretArgs` are separate requests, and an object without
    /// `secretArgs` shares the request of one with the same path and method.
    Native,
}

/// HTTP method of an object's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Read.
    Get,
    /// Write (`secretArgs` as the JSON body), e.g. `pki/issue/<role>`.
    Put,
    /// Same as PUT for Vault.
    Post,
}

impl Method {
    /// The HTTP method name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Put => "PUT",
            Self::Post => "POST",
        }
    }
}

/// One request to Vault.
#[derive(Clone, PartialEq, Eq)]
pub struct VaultObject {
    /// API path without `v1/` and without the query, e.g. `secret/data/app`.
    pub path: String,
    /// Query string without `?`, e.g. `version=2`.
    pub query: Option<String>,
    /// HTTP method.
    pub method: Method,
    /// JSON body for PUT/POST.
    pub args: Option<serde_json::Map<String, serde_json::Value>>,
    /// Key to select from the response's data; `None` writes the whole response.
    pub secret_key: Option<String>,
    /// `expandKeys`: select the data map (KV v2 `data.data`) rather than the whole response.
    pub expand: bool,
}

/// `secretArgs` may carry data to encrypt or sign: Debug shows their names only.
impl std::fmt::Debug for VaultObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultObject")
            .field("path", &self.path)
            .field("query", &self.query)
            .field("method", &self.method)
            .field("args", &self.args.as_ref().map(|a| a.keys().collect::<Vec<_>>()))
            .field("secret_key", &self.secret_key)
            .field("expand", &self.expand)
            .finish()
    }
}

impl VaultObject {
    /// Identity of the HTTP request: objects with equal keys share one request per mount.
    #[must_use]
    pub fn request_key(&self) -> String {
        let args = self.args.as_ref().map(|a| serde_json::Value::Object(a.clone()).to_string());
        format!(
            "{} {}?{} {}",
            self.method.as_str(),
            self.path,
            self.query.as_deref().unwrap_or(""),
            args.as_deref().unwrap_or("")
        )
    }
}
