//! A Secrets Store CSI provider that stands for "any other provider": a `v1alpha1.CSIDriverProvider` server on
//! `<providers-dir>/<name>.sock` whose answers the test decides, and which records every `Mount` it receives
//! (with the HTTP/2 `:authority` it came with).
//!
//! It answers `Version` as the upstream fake provider does (`v1alpha1`, `fakeprovider`, `0.0.10`), and `Mount`
//! with whatever [`FakeAnswer`] is set: files and object versions, a provider error code, or a gRPC error. It
//! runs on its own thread and runtime, so blocking test code never starves it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use courier_proto::v1alpha1::csi_driver_provider_server::{
    CsiDriverProvider, CsiDriverProviderServer,
};
use courier_proto::v1alpha1::{
    Error as ProviderError, File, MountRequest, MountResponse, ObjectVersion, VersionRequest,
    VersionResponse,
};
use sha2::{Digest as _, Sha256};
use tokio::sync::oneshot;
use tonic::{Code, Request, Response, Status};

/// What the provider answers to `Mount`.
#[derive(Debug, Clone)]
pub enum FakeAnswer {
    /// Files and object versions.
    Files {
        /// The files, as returned.
        files: Vec<File>,
        /// The object versions, as returned (in this order).
        versions: Vec<ObjectVersion>,
    },
    /// A response with `error.code` set (and nothing else).
    ErrorCode(String),
    /// A gRPC error.
    Fail(Code, String),
}

/// One `Mount` the provider received.
#[derive(Debug, Clone)]
pub struct ReceivedMount {
    /// The request.
    pub request: MountRequest,
    /// The `:authority` of the HTTP/2 request.
    pub authority: Option<String>,
}

impl ReceivedMount {
    /// The attributes JSON decoded as a map.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.request.attributes).unwrap_or_else(|e| {
            panic!(
                "attributes are not a JSON string map ({e}): {}",
                self.request.attributes
            )
        })
    }

    /// The tokens the driver passed (`csi.storage.k8s.io/serviceAccount.tokens`), decoded: audience → entry.
    pub fn tokens(&self) -> BTreeMap<String, serde_json::Value> {
        self.attributes()
            .get("csi.storage.k8s.io/serviceAccount.tokens")
            .map(|json| {
                serde_json::from_str(json).unwrap_or_else(|e| panic!("tokens are not JSON ({e})"))
            })
            .unwrap_or_default()
    }
}

#[derive(Debug)]
struct State {
    answer: FakeAnswer,
    delay: Duration,
    mounts: Vec<ReceivedMount>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug, Clone)]
struct Service {
    state: Shared,
}

#[tonic::async_trait]
impl CsiDriverProvider for Service {
    async fn version(
        &self,
        _: Request<VersionRequest>,
    ) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: "v1alpha1".to_owned(),
            runtime_name: "fakeprovider".to_owned(),
            runtime_version: "0.0.10".to_owned(),
        }))
    }

    async fn mount(
        &self,
        request: Request<MountRequest>,
    ) -> Result<Response<MountResponse>, Status> {
        let authority = request.extensions().get::<Authority>().map(|a| a.0.clone());
        let request = request.into_inner();
        // Go's json.Unmarshal would fail on these, and so does the upstream fake provider.
        for (field, text) in [
            ("attributes", &request.attributes),
            ("secrets", &request.secrets),
        ] {
            if serde_json::from_str::<Option<BTreeMap<String, String>>>(text).is_err() {
                return Err(Status::invalid_argument(format!(
                    "failed to unmarshal {field}"
                )));
            }
        }
        if serde_json::from_str::<u32>(&request.permission).is_err() {
            return Err(Status::invalid_argument(
                "failed to unmarshal file permission",
            ));
        }
        let (answer, delay) = {
            let mut state = lock(&self.state);
            state.mounts.push(ReceivedMount { request, authority });
            (state.answer.clone(), state.delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match answer {
            FakeAnswer::Files { files, versions } => Ok(Response::new(MountResponse {
                object_version: versions,
                error: None,
                files,
            })),
            FakeAnswer::ErrorCode(code) => Ok(Response::new(MountResponse {
                object_version: Vec::new(),
                error: Some(ProviderError { code }),
                files: Vec::new(),
            })),
            FakeAnswer::Fail(code, message) => Err(Status::new(code, message)),
        }
    }
}

/// The `:authority` of a request, put into its extensions before the service sees it.
#[derive(Debug, Clone)]
struct Authority(String);

/// A running fake provider; stops (and removes its socket) on drop.
#[derive(Debug)]
pub struct FakeProvider {
    name: String,
    socket: PathBuf,
    state: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A file for [`FakeProvider::set_files`]: path, mode, contents.
pub type FakeFile<'a> = (&'a str, u32, &'a [u8]);

/// The object version the fake gives a file: a short content hash, as providers derive versions.
fn version_of(contents: &[u8]) -> String {
    hex::encode(&Sha256::digest(contents)[..8])
}

impl FakeProvider {
    /// Serves provider `name` on `<providers_dir>/<name>.sock`, answering one file `foo` ("secret", 0644) with
    /// version `v1` until told otherwise.
    pub fn start(providers_dir: &Path, name: &str) -> anyhow::Result<Self> {
        let socket = providers_dir.join(format!("{name}.sock"));
        if socket.exists() {
            std::fs::remove_file(&socket)
                .with_context(|| format!("removing the stale {}", socket.display()))?;
        }
        let state: Shared = Arc::new(Mutex::new(State {
            answer: FakeAnswer::Files {
                files: vec![File {
                    path: "foo".to_owned(),
                    mode: 0o644,
                    contents: b"secret".to_vec(),
                }],
                versions: vec![ObjectVersion {
                    id: "secret/foo".to_owned(),
                    version: "v1".to_owned(),
                }],
            },
            delay: Duration::ZERO,
            mounts: Vec::new(),
        }));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot build the fake provider's runtime")?;
        let listener = {
            let _guard = runtime.enter();
            tokio::net::UnixListener::bind(&socket)
                .with_context(|| format!("cannot bind {}", socket.display()))?
        };
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let service = Service {
            state: Arc::clone(&state),
        };
        let thread = std::thread::Builder::new()
            .name(format!("fake-provider-{name}"))
            .spawn(move || {
                runtime.block_on(async move {
                    let record_authority = tower::util::MapRequestLayer::new(
                        |mut request: axum::http::Request<tonic::body::Body>| {
                            let authority =
                                request.uri().authority().map(|a| a.as_str().to_owned());
                            if let Some(authority) = authority {
                                request.extensions_mut().insert(Authority(authority));
                            }
                            request
                        },
                    );
                    let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
                    let serve = tonic::transport::Server::builder()
                        .layer(record_authority)
                        .add_service(CsiDriverProviderServer::new(service))
                        .serve_with_incoming(incoming);
                    // Stop at once on drop: a client's cached connection is cut, never waited for.
                    tokio::select! {
                        _ = serve => {}
                        _ = shutdown_rx => {}
                    }
                });
            })
            .context("cannot start the fake provider's thread")?;
        Ok(Self {
            name: name.to_owned(),
            socket,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The provider name (`spec.provider`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `<providers-dir>/<name>.sock`.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Sets the answer to every following `Mount`.
    pub fn set_answer(&self, answer: FakeAnswer) {
        lock(&self.state).answer = answer;
    }

    /// Answers with `files`; each file's object version is `(path, hash of its contents)`, in the files' order.
    pub fn set_files(&self, files: &[FakeFile<'_>]) {
        let versions = files
            .iter()
            .map(|(path, _, contents)| ObjectVersion {
                id: (*path).to_owned(),
                version: version_of(contents),
            })
            .collect();
        self.set_files_with_versions(files, versions);
    }

    /// Answers with `files` and exactly `versions`.
    pub fn set_files_with_versions(&self, files: &[FakeFile<'_>], versions: Vec<ObjectVersion>) {
        let files = files
            .iter()
            .map(|(path, mode, contents)| File {
                path: (*path).to_owned(),
                mode: i32::try_from(*mode).unwrap_or(i32::MAX),
                contents: contents.to_vec(),
            })
            .collect();
        self.set_answer(FakeAnswer::Files { files, versions });
    }

    /// Fails every following `Mount` with a gRPC error.
    pub fn fail_with(&self, code: Code, message: &str) {
        self.set_answer(FakeAnswer::Fail(code, message.to_owned()));
    }

    /// Answers every following `Mount` with `error.code` = `code`.
    pub fn fail_with_error_code(&self, code: &str) {
        self.set_answer(FakeAnswer::ErrorCode(code.to_owned()));
    }

    /// Waits this long before answering.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).delay = delay;
    }

    /// Every `Mount` received so far.
    pub fn mounts(&self) -> Vec<ReceivedMount> {
        lock(&self.state).mounts.clone()
    }

    /// How many `Mount` calls arrived.
    pub fn mount_count(&self) -> usize {
        lock(&self.state).mounts.len()
    }

    /// The last `Mount` received.
    pub fn last_mount(&self) -> Option<ReceivedMount> {
        lock(&self.state).mounts.last().cloned()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
