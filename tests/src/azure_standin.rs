//! A stand-in for Microsoft Entra ID's token endpoint and Azure Key Vault, over HTTPS with a CA of its own.
//!
//! No Key Vault emulator exists, so this one is written from Microsoft's published REST reference and kept honest:
//!
//! - `POST /{tenant}/oauth2/v2.0/token` takes the client-credentials grant with a Kubernetes service-account token
//!   as `client_assertion` (workload identity federation). It checks the tenant, the client (an app registration
//!   made by [`AzureStandIn::federate`]), the scope (`https://vault.azure.net/.default`), and the assertion as Entra
//!   checks it against the app's federated identity credentials: issuer, signature by the cluster's key, lifetime,
//!   audience [`AZURE_TOKEN_AUDIENCE`] and subject `system:serviceaccount:NS:NAME`. Errors carry Entra's body
//!   (`error`, `error_description` starting `AADSTSnnnn:`, `error_codes`, `trace_id`, `correlation_id`, `timestamp`).
//!   Access tokens are JWTs the stand-in signs and remembers with their tenant and client.
//! - `/vaults/{vault}/...` is Key Vault's data plane for every vault (the provider gets the endpoint template
//!   [`AzureStandIn::keyvault_endpoint`]): secrets, keys and certificates with their versions, `api-version`
//!   checks, the `401` bearer challenge, access policies (`403`), disabled versions and throttling. Object ids use
//!   the stand-in's own base (`https://127.0.0.1:PORT/vaults/{vault}/secrets/{name}/{version}`).
//!
//! Every call is recorded ([`AzureCall`]) with the tenant and client it ran as; query strings never are.
//!
//! Where the published reference leaves a detail open, the stand-in picks one and keeps to it: `invalid_client`
//! refusals (bad signature `AADSTS700027`, assertion out of its time range `AADSTS700024`, no assertion
//! `AADSTS7000218`) answer `401` and every other refusal `400`; a federated-credential mismatch names the part that
//! failed (issuer `AADSTS700211`, audience `AADSTS700212`, subject `AADSTS700213`; an app with no credential at all
//! gets `AADSTS70021`); a vault nobody was granted is one no client may read (`403`); and a disabled certificate
//! version stays readable through `/certificates` (its key and secret do not).

mod der;
mod entra;
mod keyvault;
mod material;
mod router;
mod store;
mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use jsonwebtoken::DecodingKey;
use rand::Rng;

pub use material::{CertFormat, TestCertificate, TestKey};

use crate::TokenIssuer;
use router::{Reply, handle};
use store::{Kind, Object, Vault, Version};
use tls::{Pki, TlsServer};

/// The audience Entra requires in a federated assertion.
pub const AZURE_TOKEN_AUDIENCE: &str = "api://AzureADTokenExchange";
/// Key Vault's resource identifier, the `resource` of its bearer challenge.
pub const KEYVAULT_RESOURCE: &str = "https://vault.azure.net";
/// The scope a client-credentials request for Key Vault names.
pub const KEYVAULT_SCOPE: &str = "https://vault.azure.net/.default";
/// Requests larger than this are refused before they are read (a token request is a few kilobytes).
const BODY_LIMIT: usize = 64 * 1024;

/// Which API a call was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AzureApi {
    /// Entra's token endpoint.
    Token,
    /// Key Vault's data plane.
    KeyVault,
}

/// One call the stand-in answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureCall {
    /// The API.
    pub api: AzureApi,
    /// The HTTP method.
    pub method: String,
    /// The request path, without the query.
    pub path: String,
    /// The tenant the call named (token endpoint) or whose token it carried (Key Vault).
    pub tenant: Option<String>,
    /// The client the call named (token endpoint) or whose token it carried (Key Vault).
    pub client_id: Option<String>,
    /// The status answered.
    pub status: u16,
}

/// The running stand-in; stops on drop.
#[derive(Debug)]
pub struct AzureStandIn {
    server: TlsServer,
    pki: Pki,
    state: Arc<Shared>,
}

struct Shared {
    tenant: String,
    /// `https://127.0.0.1:PORT`.
    base: String,
    /// The cluster issuer's public key and key id: what federated credentials trust.
    assertion_key: DecodingKey,
    assertion_kid: String,
    /// Signs the access tokens handed out.
    token_secret: Vec<u8>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("tenant", &self.tenant).field("base", &self.base).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    /// Registered applications by client id.
    clients: BTreeMap<String, Client>,
    /// Handed-out access token -> whose it is.
    tokens: BTreeMap<String, AccessToken>,
    /// (vault, client id) pairs with get and list on everything in the vault.
    grants: BTreeSet<(String, String)>,
    /// Vaults by lowercase name.
    vaults: BTreeMap<String, Vault>,
    token_fault: Option<Fault>,
    keyvault_fault: Option<Fault>,
    calls: Vec<AzureCall>,
}

/// An app registration: its service principal's object id and the subjects of its federated credentials.
struct Client {
    object_id: String,
    subjects: BTreeSet<String>,
    /// Client secrets (service-principal credentials) the app accepts.
    secrets: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct AccessToken {
    tenant: String,
    client_id: String,
    object_id: String,
    expires_at: i64,
}

/// The next `remaining` requests to one API get `status` (with `Retry-After` when set).
#[derive(Debug, Clone, Copy)]
struct Fault {
    remaining: u32,
    status: StatusCode,
    retry_after: Option<u32>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one injected failure for `api`, if any is left.
    fn take_fault(&self, api: AzureApi) -> Option<Fault> {
        let mut inner = self.lock();
        let slot = match api {
            AzureApi::Token => &mut inner.token_fault,
            AzureApi::KeyVault => &mut inner.keyvault_fault,
        };
        let fault = (*slot)?;
        if fault.remaining <= 1 {
            *slot = None;
        } else {
            *slot = Some(Fault { remaining: fault.remaining - 1, ..fault });
        }
        Some(fault)
    }

    /// `https://127.0.0.1:PORT/vaults/{vault}`: the base of a vault's object ids.
    fn vault_base(&self, vault: &str) -> String {
        format!("{}/vaults/{vault}", self.base)
    }
}

impl AzureStandIn {
    /// One HTTPS server on 127.0.0.1 (fresh CA) serving the token endpoint and every vault; `issuer` is the
    /// cluster's service-account issuer whose tokens federated credentials trust; `tenant` the one tenant it knows.
    pub fn start(issuer: &TokenIssuer, tenant: &str) -> anyhow::Result<Self> {
        let pki = Pki::generate()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
        let addr = listener.local_addr().context("bound socket has no address")?;
        let assertion_key = DecodingKey::from_rsa_pem(issuer.public_key_pem().as_bytes())
            .context("the issuer's public key is not RSA")?;
        let mut token_secret = vec![0u8; 32];
        rand::rng().fill(&mut token_secret[..]);
        let state = Arc::new(Shared {
            tenant: tenant.to_owned(),
            base: format!("https://{addr}"),
            assertion_key,
            assertion_kid: issuer.key_id().to_owned(),
            token_secret,
            inner: Mutex::new(Inner::default()),
        });
        let app =
            Router::new().fallback(handle).layer(DefaultBodyLimit::max(BODY_LIMIT)).with_state(Arc::clone(&state));
        let server = TlsServer::start("azure-stand-in", listener, &pki, app)?;
        Ok(Self { server, pki, state })
    }

    /// `https://127.0.0.1:PORT/`: what `AZURE_AUTHORITY_HOST` names.
    pub fn authority_host(&self) -> String {
        format!("{}/", self.state.base)
    }

    /// `https://127.0.0.1:PORT/{tenant}/oauth2/v2.0/token`.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.state.base, self.state.tenant)
    }

    /// The tenant the stand-in knows.
    pub fn tenant(&self) -> &str {
        &self.state.tenant
    }

    /// `https://127.0.0.1:PORT/vaults/{vault}`: the template of vault URLs, `{vault}` literally.
    pub fn keyvault_endpoint(&self) -> String {
        format!("{}/vaults/{{vault}}", self.state.base)
    }

    /// The URL of `vault`: [`Self::keyvault_endpoint`] with the name filled in.
    pub fn vault_url(&self, vault: &str) -> String {
        self.state.vault_base(vault)
    }

    /// The stand-in's CA certificate, PEM, in a file that lives as long as the stand-in.
    pub fn ca_file(&self) -> &std::path::Path {
        &self.pki.ca_file
    }

    /// The stand-in's CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// Registers the app `client_id` (if new) and adds a federated credential trusting the cluster issuer's tokens
    /// for `system:serviceaccount:{namespace}:{service_account}` with audience [`AZURE_TOKEN_AUDIENCE`].
    pub fn federate(&self, client_id: &str, namespace: &str, service_account: &str) {
        self.register_client(client_id);
        if let Some(client) = self.state.lock().clients.get_mut(client_id) {
            client.subjects.insert(format!("system:serviceaccount:{namespace}:{service_account}"));
        }
    }

    /// Registers the app `client_id` with no federated credential (Entra then answers `AADSTS70021`).
    pub fn register_client(&self, client_id: &str) {
        self.state
            .lock()
            .clients
            .entry(client_id.to_owned())
            .or_insert_with(|| Client {
                object_id: crate::pod::random_uid(),
                subjects: BTreeSet::new(),
                secrets: BTreeSet::new(),
            });
    }

    /// Registers the app `client_id` (if new) and a client secret it accepts, as a service principal's credential.
    pub fn add_client_secret(&self, client_id: &str, secret: &str) {
        self.register_client(client_id);
        if let Some(client) = self.state.lock().clients.get_mut(client_id) {
            client.secrets.insert(secret.to_owned());
        }
    }

    /// An access policy for `client_id` on `vault`: get and list on secrets, keys and certificates.
    pub fn grant(&self, vault: &str, client_id: &str) {
        let mut inner = self.state.lock();
        inner.vaults.entry(vault.to_ascii_lowercase()).or_default();
        inner.grants.insert((vault.to_ascii_lowercase(), client_id.to_owned()));
    }

    /// Adds a version of the secret `name` in `vault` (created as needed); returns its version id.
    pub fn set_secret(&self, vault: &str, name: &str, value: &str, content_type: Option<&str>) -> String {
        let body =
            store::Secret { value: value.to_owned(), content_type: content_type.map(str::to_owned), managed: false };
        self.add(vault, name, new_version_id(), |v| &mut v.secrets, body)
    }

    /// Adds a version of the key `name` in `vault` holding `key`'s public half; returns its version id.
    pub fn set_key(&self, vault: &str, name: &str, key: &TestKey) -> String {
        let body = store::Key { jwk: key.jwk().clone(), managed: false };
        self.add(vault, name, new_version_id(), |v| &mut v.keys, body)
    }

    /// Imports `cert` as Key Vault does: a certificate version, its backing secret (`contentType`
    /// `application/x-pem-file` with the private key then the chain, or `application/x-pkcs12` with the PFX in
    /// base64) and its key (the public JWK), all under one version id, which it returns.
    pub fn import_certificate(&self, vault: &str, name: &str, cert: &TestCertificate, format: CertFormat) -> String {
        let value = cert.secret_value(format);
        let version = new_version_id();
        let secret = store::Secret { value, content_type: Some(format.content_type().to_owned()), managed: true };
        self.add(vault, name, version.clone(), |v| &mut v.secrets, secret);
        let key = store::Key { jwk: cert.key().jwk().clone(), managed: true };
        self.add(vault, name, version.clone(), |v| &mut v.keys, key);
        let certificate = store::Certificate::of(cert, format);
        self.add(vault, name, version, |v| &mut v.certificates, certificate)
    }

    fn add<T>(
        &self,
        vault: &str,
        name: &str,
        id: String,
        kind: impl FnOnce(&mut Vault) -> &mut Kind<T>,
        body: T,
    ) -> String {
        let now = now();
        let mut inner = self.state.lock();
        let vault = inner.vaults.entry(vault.to_ascii_lowercase()).or_default();
        let object = kind(vault)
            .entry(name.to_ascii_lowercase())
            .or_insert_with(|| Object { name: name.to_owned(), versions: Vec::new() });
        object.versions.push(Version { id: id.clone(), enabled: true, created: now, updated: now, body });
        id
    }

    /// Disables version `version` of every object named `name` in `vault` (secret, key and certificate alike).
    pub fn disable(&self, vault: &str, name: &str, version: &str) {
        let now = now();
        let mut inner = self.state.lock();
        if let Some(vault) = inner.vaults.get_mut(&vault.to_ascii_lowercase()) {
            vault.disable(&name.to_ascii_lowercase(), version, now);
        }
    }

    /// The next `requests` Key Vault requests get `429 Throttled` with `Retry-After: retry_after_secs`.
    pub fn throttle_keyvault(&self, requests: u32, retry_after_secs: u32) {
        let fault =
            Fault { remaining: requests, status: StatusCode::TOO_MANY_REQUESTS, retry_after: Some(retry_after_secs) };
        self.state.lock().keyvault_fault = (requests > 0).then_some(fault);
    }

    /// The next `requests` token requests get `429` with `Retry-After: retry_after_secs`.
    pub fn throttle_token(&self, requests: u32, retry_after_secs: u32) {
        let fault =
            Fault { remaining: requests, status: StatusCode::TOO_MANY_REQUESTS, retry_after: Some(retry_after_secs) };
        self.state.lock().token_fault = (requests > 0).then_some(fault);
    }

    /// The next `requests` token requests get `503` (no `Retry-After`), as during an Entra outage.
    pub fn unavailable_token(&self, requests: u32) {
        let fault = Fault { remaining: requests, status: StatusCode::SERVICE_UNAVAILABLE, retry_after: None };
        self.state.lock().token_fault = (requests > 0).then_some(fault);
    }

    /// The next `requests` Key Vault requests get `503 ServiceUnavailable` (no `Retry-After`).
    pub fn unavailable_keyvault(&self, requests: u32) {
        let fault = Fault { remaining: requests, status: StatusCode::SERVICE_UNAVAILABLE, retry_after: None };
        self.state.lock().keyvault_fault = (requests > 0).then_some(fault);
    }

    /// Every access token handed out so far expires now: Key Vault answers them with `401`.
    pub fn expire_tokens(&self) {
        let now = now();
        for token in self.state.lock().tokens.values_mut() {
            token.expires_at = token.expires_at.min(now);
        }
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<AzureCall> {
        self.state.lock().calls.clone()
    }

    /// Calls to `api` so far.
    pub fn calls_to(&self, api: AzureApi) -> Vec<AzureCall> {
        self.calls().into_iter().filter(|c| c.api == api).collect()
    }

    /// Every access token handed out, for leak searches.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.lock().tokens.keys().cloned().collect()
    }

    /// Connections whose TLS handshake failed (a client that does not trust [`Self::ca_pem`], say).
    pub fn failed_handshakes(&self) -> u64 {
        self.server.failed_handshakes()
    }
}

/// Seconds since the Unix epoch.
fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A Key Vault version id: 32 lowercase hex digits.
fn new_version_id() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

#[cfg(test)]
mod tests;
