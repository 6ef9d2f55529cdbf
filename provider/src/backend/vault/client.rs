//! HTTP clients for Vault addresses, one per (address, TLS settings), reused across
//! mounts so connections and TLS sessions are kept alive.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Url;

use super::config::{TlsSettings, TlsVerify, VaultConfig};
use crate::backend::{Error, ErrorKind};

/// Time allowed to open a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for one HTTP exchange; the mount deadline bounds the total.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Idle keep-alive connections are closed after this long.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Distinct (address, TLS) pairs kept; past this the cache starts over.
const MAX_CLIENTS: usize = 64;

/// A ready client and the base URL requests are built from.
#[derive(Clone, Debug)]
pub(super) struct Endpoint {
    /// The HTTP client.
    pub(super) http: reqwest::Client,
    /// `<address>/v1/`, with the TLS server name as host when one is set.
    pub(super) base: Url,
}

/// Cache of clients.
#[derive(Debug, Default)]
pub(super) struct Clients {
    cache: Mutex<HashMap<(String, TlsSettings), Endpoint>>,
}

impl Clients {
    /// The client for `cfg`'s address and TLS settings.
    pub(super) async fn endpoint(&self, cfg: &VaultConfig) -> Result<Endpoint, Error> {
        let key = (cfg.address.clone(), cfg.tls.clone());
        if let Some(found) = self.lock().get(&key) {
            return Ok(found.clone());
        }
        let built = build(cfg).await?;
        let mut cache = self.lock();
        if cache.len() >= MAX_CLIENTS {
            cache.clear();
        }
        cache.insert(key, built.clone());
        Ok(built)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, TlsSettings), Endpoint>> {
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn build(cfg: &VaultConfig) -> Result<Endpoint, Error> {
    let backend = cfg.flavor.name();
    let invalid = |msg: String| Error::new(ErrorKind::Invalid, backend, msg);
    let mut base = Url::parse(&cfg.address)
        .map_err(|e| invalid(format!("address {:?} is not a URL: {e}", cfg.address)))?;
    if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
        return Err(invalid(format!("address {:?} must be an http:// or https:// URL", cfg.address)));
    }

    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("courier-provider/", env!("CARGO_PKG_VERSION")));

    let tls = &cfg.tls;
    let mut roots = Vec::new();
    if let Some(path) = &tls.ca_cert {
        roots.extend(read_certs(path, backend, "CA certificate file")?);
    }
    if let Some(dir) = &tls.ca_dir {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| invalid(format!("CA directory {}: {e}", dir.display())))?;
        let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        paths.sort();
        for path in paths.into_iter().filter(|p| p.is_file()) {
            roots.extend(read_certs(&path, backend, "CA certificate in directory")?);
        }
        if roots.is_empty() {
            return Err(invalid(format!("CA directory {} holds no PEM certificates", dir.display())));
        }
    }
    if !roots.is_empty() {
        builder = builder.tls_certs_only(roots);
    }
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let mut pem = read_file(cert, backend, "client certificate")?;
            pem.push(b'\n');
            pem.extend(read_file(key, backend, "client key")?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                invalid(format!(
                    "client certificate {} / key {}: not a usable PEM pair: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => {
            return Err(invalid(
                "a client certificate and a client key must be given together".to_owned(),
            ));
        }
    }
    if tls.verify == TlsVerify::DangerousDisabled {
        tracing::warn!(
            backend,
            address = %cfg.address,
            "TLS verification is disabled for this address (SkipTLSVerify); secrets can be intercepted"
        );
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some(server_name) = &tls.server_name {
        // Verify the certificate against `server_name` while connecting to the
        // configured address: the URL carries the name, the resolver the address.
        let host = base.host_str().unwrap_or_default().to_owned();
        let port = base.port_or_known_default().unwrap_or(8200);
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| {
                Error::new(ErrorKind::Unavailable, backend, format!("cannot resolve {host}: {e}"))
            })?
            .collect();
        builder = builder.resolve_to_addrs(server_name, &addrs);
        base.set_host(Some(server_name))
            .map_err(|e| invalid(format!("TLS server name {server_name:?}: {e}")))?;
    }
    let http = builder
        .build()
        .map_err(|e| invalid(format!("cannot build an HTTP client for {}: {e}", cfg.address)))?;
    let path = base.path().trim_end_matches('/').to_owned();
    base.set_path(&format!("{path}/v1/"));
    base.set_query(None);
    Ok(Endpoint { http, base })
}

fn read_file(path: &Path, backend: &'static str, what: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|e| {
        Error::new(ErrorKind::Invalid, backend, format!("{what} {}: {e}", path.display()))
    })
}

fn read_certs(
    path: &Path,
    backend: &'static str,
    what: &str,
) -> Result<Vec<reqwest::Certificate>, Error> {
    let pem = read_file(path, backend, what)?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        Error::new(ErrorKind::Invalid, backend, format!("{what} {}: not PEM: {e}", path.display()))
    })?;
    if certs.is_empty() {
        return Err(Error::new(
            ErrorKind::Invalid,
            backend,
            format!("{what} {}: holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}
