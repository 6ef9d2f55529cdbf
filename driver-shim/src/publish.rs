//! The publish path shared by kubelet's NodePublishVolume and the local mode:
//! mount the tmpfs, ask the provider, swap the files in atomically.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tonic::Code;
use zeroize::Zeroizing;

use crate::atomic_writer::{self, Outcome, Payload};
use crate::cluster::SecretProviderClass;
use crate::metrics::Metrics;
use crate::mount;
use crate::provider_client::Providers;
use crate::request::mount_request;
use crate::target::{self, Scope, Target};

mod unpublish;

/// What kubelet sees when a republish fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RepublishErrors {
    /// Keep the old files, record a Warning Event and a metric, answer success:
    /// kubelet before 1.37 deletes the mount when a republish fails.
    Report,
    /// Also fail the call.
    Fail,
}

/// Shim settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Whether republishes call the provider at all.
    pub rotation: bool,
    /// Content younger than this is not refreshed on republish.
    pub rotation_poll_interval: Duration,
    /// What a failed republish returns.
    pub republish_errors: RepublishErrors,
    /// tmpfs size limit.
    pub tmpfs_size: Option<u64>,
    /// Mount a tmpfs (off in local mode without root).
    pub use_tmpfs: bool,
    /// Which target paths are accepted: below kubelet's pods directory in node
    /// mode, anywhere in local mode.
    pub scope: Scope,
}

/// One publish.
#[derive(Debug)]
pub struct Publish<'a> {
    /// Where kubelet wants the volume.
    pub target: &'a Path,
    /// The SecretProviderClass.
    pub spc: &'a SecretProviderClass,
    /// The pod's volume context (attributes, pod info, tokens).
    pub volume_context: &'a HashMap<String, String>,
    /// The CSI secrets (node-publish secret, tokens with serviceAccountTokenInSecrets).
    pub secrets: &'a HashMap<String, String>,
}

/// What a publish did.
#[derive(Debug)]
pub enum Published {
    /// Files were written (first mount, or new content on republish).
    Written {
        versions: Vec<(String, String)>,
        first: bool,
    },
    /// The provider returned the same content.
    Unchanged { versions: Vec<(String, String)> },
    /// Nothing was asked: rotation off, or content younger than the poll interval.
    Skipped,
    /// The provider returned no files (it wrote them itself, as legacy providers do).
    ProviderWrote { versions: Vec<(String, String)> },
    /// A republish failed and, by `--republish-errors report`, was reported only.
    Reported { error: String },
}

/// A failed publish.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    /// The gRPC code for kubelet.
    pub code: Code,
    /// What happened.
    pub message: String,
    /// Whether this was a republish of a mounted volume.
    pub republish: bool,
}

/// A failure of the publish path, for callers that check before calling [`Shim::publish`].
pub fn fail(code: Code, message: impl Into<String>) -> Error {
    Error {
        code,
        message: message.into(),
        republish: false,
    }
}

fn target_error(e: target::Error) -> Error {
    let code = if e.is_invalid() {
        Code::InvalidArgument
    } else {
        Code::Internal
    };
    fail(code, e.to_string())
}

/// The publish machinery.
#[derive(Debug)]
pub struct Shim {
    settings: Settings,
    providers: Providers,
    metrics: Arc<Metrics>,
    busy: Mutex<HashSet<PathBuf>>,
}

/// Releases a target's lock on drop.
struct Busy<'a> {
    set: &'a Mutex<HashSet<PathBuf>>,
    target: PathBuf,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.target);
    }
}

impl Shim {
    /// A shim calling `providers`.
    #[must_use]
    pub fn new(settings: Settings, providers: Providers, metrics: Arc<Metrics>) -> Self {
        Self {
            settings,
            providers,
            metrics,
            busy: Mutex::new(HashSet::new()),
        }
    }

    /// The metrics.
    #[must_use]
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    fn claim(&self, target: &Path) -> Result<Busy<'_>, Error> {
        let mut set = self
            .busy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !set.insert(target.to_owned()) {
            return Err(fail(
                Code::Aborted,
                format!(
                    "an operation on {} is already in progress",
                    target.display()
                ),
            ));
        }
        Ok(Busy {
            set: &self.busy,
            target: target.to_owned(),
        })
    }

    /// Resolves a target path by the shim's rules (see [`target`]).
    pub fn resolve(&self, path: &Path) -> Result<Target, Error> {
        Target::resolve(path, &self.settings.scope).map_err(target_error)
    }

    /// Publishes (or republishes) a volume.
    pub async fn publish(&self, p: Publish<'_>) -> Result<Published, Error> {
        let target = self.resolve(p.target)?;
        let _busy = self.claim(target.resolved())?;
        let mounted = self.mounted(&target)?;
        if mounted {
            if !self.settings.rotation {
                return Ok(Published::Skipped);
            }
            if self.fresh(&target) {
                return Ok(Published::Skipped);
            }
        }
        let result = self.fill(&p, &target, mounted).await;
        match result {
            Ok(published) => Ok(published),
            Err(e) if mounted => self.republish_failed(e),
            Err(e) => {
                // First publish failed: leave nothing behind, so kubelet retries cleanly.
                self.clean(&target);
                Err(e)
            }
        }
    }

    /// Whether `target` holds a published volume already.
    pub fn is_mounted(&self, target: &Path) -> Result<bool, Error> {
        self.mounted(&self.resolve(target)?)
    }

    /// Whether the resolved `target` holds a published volume: in tmpfs mode, the
    /// directory is the root of a tmpfs (by identity, not by path); without
    /// tmpfs, it holds the writer's `..data`.
    fn mounted(&self, target: &Target) -> Result<bool, Error> {
        let Some(dir) = target.open().map_err(target_error)? else {
            return Ok(false);
        };
        if !self.settings.use_tmpfs {
            return atomic_writer::has_content(&dir)
                .map_err(|e| fail(Code::Internal, e.to_string()));
        }
        match mount::state(&dir) {
            Ok(mount::State::NotMounted) => Ok(false),
            Ok(mount::State::Tmpfs) => Ok(true),
            Ok(mount::State::Other { magic }) => Err(fail(
                Code::FailedPrecondition,
                format!(
                    "{} is the root of a mount of file system type {magic:#x}, not a tmpfs the \
                     shim mounted; it is left alone",
                    target.requested().display()
                ),
            )),
            Err(e) => Err(fail(
                Code::Internal,
                format!(
                    "cannot tell whether {} is mounted: {e}",
                    target.requested().display()
                ),
            )),
        }
    }

    /// Whether a republish of a mounted `target` should leave it alone: rotation
    /// off, or content younger than the poll interval.
    #[must_use]
    pub fn skips_republish(&self, target: &Path) -> bool {
        !self.settings.rotation || self.resolve(target).is_ok_and(|t| self.fresh(&t))
    }

    /// Applies `--republish-errors` to a failed republish of a mounted volume:
    /// the old files stay; report answers success, fail passes the error on.
    pub fn republish_failed(&self, error: Error) -> Result<Published, Error> {
        self.metrics.republish_errors.inc();
        match self.settings.republish_errors {
            RepublishErrors::Report => Ok(Published::Reported {
                error: error.message,
            }),
            RepublishErrors::Fail => Err(Error {
                republish: true,
                ..error
            }),
        }
    }

    /// Whether the current content is younger than the poll interval.
    fn fresh(&self, target: &Target) -> bool {
        if self.settings.rotation_poll_interval.is_zero() {
            return false;
        }
        std::fs::symlink_metadata(target.resolved())
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .is_some_and(|age| age < self.settings.rotation_poll_interval)
    }

    async fn fill(
        &self,
        p: &Publish<'_>,
        target: &Target,
        mounted: bool,
    ) -> Result<Published, Error> {
        if p.spc.provider.is_empty() {
            return Err(fail(
                Code::InvalidArgument,
                format!("secretproviderclass {}: spec.provider is empty", p.spc.name),
            ));
        }
        if p.spc.parameters.is_empty() {
            return Err(fail(
                Code::InvalidArgument,
                format!(
                    "secretproviderclass {}: spec.parameters is empty",
                    p.spc.name
                ),
            ));
        }
        // Find the provider before mounting anything.
        self.providers
            .socket(&p.spc.provider)
            .map_err(|e| fail(e.code(), e.to_string()))?;
        if !mounted {
            self.prepare(target)?;
        }
        let request = mount_request(
            &p.spc.parameters,
            p.volume_context,
            p.secrets,
            &p.target.to_string_lossy(),
        );
        let response = self
            .providers
            .mount(&p.spc.provider, request)
            .await
            .map_err(|e| fail(e.code(), e.to_string()))?;
        if let Some(error) = response.error.as_ref().filter(|e| !e.code.is_empty()) {
            return Err(fail(
                Code::Unknown,
                format!(
                    "mount request failed with provider error code {}",
                    error.code
                ),
            ));
        }
        if response.object_version.is_empty() {
            return Err(fail(
                Code::Unknown,
                "the provider returned no object versions (missing object versions)",
            ));
        }
        let versions: Vec<(String, String)> = response
            .object_version
            .iter()
            .map(|v| (v.id.clone(), v.version.clone()))
            .collect();
        if response.files.is_empty() {
            return Ok(Published::ProviderWrote { versions });
        }
        let payloads: Vec<Payload> = response
            .files
            .into_iter()
            .map(|f| Payload {
                path: f.path,
                mode: u32::try_from(f.mode).unwrap_or(u32::MAX),
                contents: Zeroizing::new(f.contents),
            })
            .collect();
        // Opened after the mount, so the descriptor is the tmpfs's root.
        let dir = target.open().map_err(target_error)?.ok_or_else(|| {
            fail(
                Code::Internal,
                format!("{} vanished", target.requested().display()),
            )
        })?;
        let outcome = tokio::task::spawn_blocking(move || atomic_writer::write(&dir, &payloads))
            .await
            .map_err(|e| fail(Code::Internal, format!("file writer stopped: {e}")))?
            .map_err(|e| fail(Code::Internal, format!("failed to write files: {e}")))?;
        Ok(match outcome {
            Outcome::Written => {
                if mounted {
                    self.metrics.rotations.inc();
                }
                Published::Written {
                    versions,
                    first: !mounted,
                }
            }
            Outcome::Unchanged => Published::Unchanged { versions },
        })
    }

    fn prepare(&self, target: &Target) -> Result<(), Error> {
        let dir = target.create().map_err(target_error)?;
        if self.settings.use_tmpfs {
            mount::mount_tmpfs(&dir, self.settings.tmpfs_size).map_err(|e| {
                fail(
                    Code::Internal,
                    format!(
                        "cannot mount tmpfs at {}: {e}",
                        target.requested().display()
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// Mounts a bare tmpfs at `path` unless one is there (the sanity-test provider).
    pub fn mount_bare(&self, path: &Path) -> Result<(), Error> {
        let target = self.resolve(path)?;
        let _busy = self.claim(target.resolved())?;
        if self.mounted(&target)? {
            return Ok(());
        }
        self.prepare(&target)
    }
}
