//! Local mode: publish a SecretProviderClass file into a directory, without a
//! cluster, exactly as kubelet would have the shim do it (tmpfs, atomic writes,
//! optional republishing). For trying Courier out and for demos.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

use crate::atomic_writer;
use crate::cluster::SecretProviderClass;
use crate::publish::{Publish, Published, Shim};
use crate::request::TOKENS_KEY;
use crate::target::{Scope, Target};

/// Why local mode stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The SecretProviderClass file could not be read.
    #[error("reading {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The token file could not be read.
    #[error("reading the token file {}", .path.display())]
    Token {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The SecretProviderClass file is not YAML.
    #[error("{}: not a YAML manifest", .path.display())]
    NotYaml {
        /// The file.
        path: PathBuf,
        /// The parser's complaint (boxed: it is large and rare).
        #[source]
        source: Box<serde_saphyr::Error>,
    },
    /// The manifest is another kind.
    #[error("{}: kind is {kind:?}, expected SecretProviderClass", .path.display())]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// Its `kind`.
        kind: String,
    },
    /// The manifest's spec is unusable.
    #[error("{}", .path.display())]
    Spec {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: crate::cluster::Error,
    },
    /// The termination signal could not be watched.
    #[error("cannot watch SIGTERM")]
    Signal(#[source] std::io::Error),
    /// The publish failed.
    #[error("publish failed: {0}")]
    Publish(String),
}

/// What local mode needs.
#[derive(Debug, Clone)]
pub struct Local {
    /// SecretProviderClass manifest (YAML).
    pub spc_file: PathBuf,
    /// Pod namespace.
    pub namespace: String,
    /// Service account.
    pub service_account: String,
    /// Pod name.
    pub pod_name: String,
    /// Pod UID.
    pub pod_uid: String,
    /// File holding the service-account token (re-read on every republish).
    pub token_file: PathBuf,
    /// Audiences the token is passed for.
    pub audiences: Vec<String>,
    /// Where the files go.
    pub target: PathBuf,
    /// Republish this often; `None` publishes once.
    pub republish_every: Option<Duration>,
    /// Stop after this many republishes.
    pub republish_count: Option<u64>,
    /// Unpublish (unmount, remove) before exiting.
    pub unpublish_on_exit: bool,
}

fn load_spc(path: &Path) -> Result<SecretProviderClass, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let manifest: serde_json::Value =
        serde_saphyr::from_str(&text).map_err(|source| Error::NotYaml {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
    let kind = manifest
        .get("kind")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    if kind != "SecretProviderClass" {
        return Err(Error::WrongKind {
            path: path.to_owned(),
            kind: kind.to_owned(),
        });
    }
    let name = manifest
        .pointer("/metadata/name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("local");
    let spec = manifest
        .get("spec")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    SecretProviderClass::from_spec(name, &spec).map_err(|source| Error::Spec {
        path: path.to_owned(),
        source,
    })
}

/// The token's `exp` claim as RFC 3339, as kubelet passes it.
fn expiration(jwt: &str) -> String {
    let exp = jwt
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p.trim_end_matches('='))
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|c| c.get("exp").and_then(serde_json::Value::as_u64));
    let when = exp.map_or_else(
        || std::time::SystemTime::now() + Duration::from_secs(3600),
        |e| std::time::UNIX_EPOCH + Duration::from_secs(e),
    );
    humantime::format_rfc3339_seconds(when).to_string()
}

impl Local {
    fn volume_context(&self, spc: &SecretProviderClass) -> Result<HashMap<String, String>, Error> {
        let token = std::fs::read_to_string(&self.token_file).map_err(|source| Error::Token {
            path: self.token_file.clone(),
            source,
        })?;
        let token = token.trim();
        let expires = expiration(token);
        let tokens: serde_json::Map<String, serde_json::Value> = self
            .audiences
            .iter()
            .map(|a| {
                (
                    a.clone(),
                    serde_json::json!({"token": token, "expirationTimestamp": expires}),
                )
            })
            .collect();
        Ok(HashMap::from([
            ("secretProviderClass".to_owned(), spc.name.clone()),
            (
                "csi.storage.k8s.io/pod.name".to_owned(),
                self.pod_name.clone(),
            ),
            (
                "csi.storage.k8s.io/pod.namespace".to_owned(),
                self.namespace.clone(),
            ),
            (
                "csi.storage.k8s.io/pod.uid".to_owned(),
                self.pod_uid.clone(),
            ),
            (
                "csi.storage.k8s.io/serviceAccount.name".to_owned(),
                self.service_account.clone(),
            ),
            ("csi.storage.k8s.io/ephemeral".to_owned(), "true".to_owned()),
            (
                TOKENS_KEY.to_owned(),
                serde_json::Value::Object(tokens).to_string(),
            ),
        ]))
    }

    /// Publishes, republishes as asked, and unpublishes on exit or signal.
    pub async fn run(&self, shim: &Shim) -> Result<(), Error> {
        let spc = load_spc(&self.spc_file)?;
        let secrets = HashMap::new();
        let mut round = 0u64;
        let mut signals = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(Error::Signal)?;
        let result = loop {
            let context = self.volume_context(&spc)?;
            let published = shim
                .publish(Publish {
                    target: &self.target,
                    spc: &spc,
                    volume_context: &context,
                    secrets: &secrets,
                })
                .await;
            match published {
                Ok(p) => report(&self.target, &p),
                Err(e) => break Err(Error::Publish(e.message)),
            }
            let Some(every) = self.republish_every else {
                break Ok(());
            };
            if self.republish_count.is_some_and(|n| round >= n) {
                break Ok(());
            }
            round += 1;
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = tokio::signal::ctrl_c() => break Ok(()),
                _ = signals.recv() => break Ok(()),
            }
        };
        if self.unpublish_on_exit {
            let _ = shim
                .unpublish(&self.target)
                .map_err(|e| eprintln!("unpublish: {}", e.message));
            println!("unpublished {}", self.target.display());
        }
        result
    }
}

fn report(target: &Path, published: &Published) {
    let what = match published {
        Published::Written { first: true, .. } => "published",
        Published::Written { first: false, .. } => "rotated: new content swapped in",
        Published::Unchanged { .. } => "unchanged: nothing written",
        Published::Skipped => "skipped",
        Published::ProviderWrote { .. } => "the provider returned no files",
        Published::Reported { .. } => "republish failed; previous files kept",
    };
    println!("{what} at {}", target.display());
    if let Published::Reported { error } = published {
        println!("  error: {error}");
    }
    if matches!(published, Published::Written { .. }) {
        let dir = Target::resolve(target, &Scope::Anywhere)
            .ok()
            .and_then(|t| t.open().ok().flatten());
        let tmpfs = dir
            .as_ref()
            .is_some_and(|d| crate::mount::state(d).is_ok_and(|s| s == crate::mount::State::Tmpfs));
        let data_dir = dir
            .as_ref()
            .and_then(|d| atomic_writer::current_dir_name(d).ok().flatten())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        println!("  tmpfs mounted: {tmpfs}; data dir: {data_dir}");
        let files = dir
            .as_ref()
            .and_then(|d| atomic_writer::current_files(d).ok())
            .unwrap_or_default();
        for file in files {
            println!(
                "  {}  mode {:04o}  {} bytes",
                file.path,
                file.mode,
                file.contents.len()
            );
        }
    }
    if let Published::Written { versions, .. } | Published::Unchanged { versions } = published {
        for (id, version) in versions {
            println!("  version {id} = {version}");
        }
    }
}
