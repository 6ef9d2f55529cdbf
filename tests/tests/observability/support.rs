//! This binary's OpenBao, per-test cases on it, identities, and the stalled-listener fault injector.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use anyhow::Context;
use courier_proto::v1alpha1::{MountRequest, MountResponse};
use courier_tests::calls::mount;
use courier_tests::{
    JwtRole, KUBERNETES_ISSUER, MountRequestBuilder, OpenBao, PodFixture, ProviderBuilder,
    ProviderProcess, TokenIssuer,
};
use rand::Rng as _;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;
use tokio::sync::{Barrier, OnceCell};
use tokio::task::JoinHandle;
use tonic::Status;

pub(crate) use courier_tests::objects::{Obj, objects_yaml};

/// Where JWT auth is mounted.
pub(crate) const JWT_MOUNT: &str = "jwt";
/// Loopback with an ephemeral port: health and metrics share one listener, whose address the log names.
pub(crate) const EPHEMERAL: &str = "127.0.0.1:0";

/// An OpenBao server with JWT auth trusting `issuer`.
pub(crate) struct Backend {
    pub(crate) bao: OpenBao,
    pub(crate) issuer: TokenIssuer,
}

static SERVER: OnceCell<Backend> = OnceCell::const_new();
static NEXT_CASE: AtomicU32 = AtomicU32::new(1);

/// This binary's server, started on first use.
pub(crate) async fn backend() -> anyhow::Result<&'static Backend> {
    SERVER.get_or_try_init(Backend::start).await
}

impl Backend {
    /// A fresh dev server with JWT auth; tests that break their server (sealing it) start their own.
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let bao = OpenBao::start().await.context("starting OpenBao")?;
        let issuer = TokenIssuer::new()?;
        bao.enable_jwt_auth(
            JWT_MOUNT,
            &[issuer.public_key_pem().to_owned()],
            KUBERNETES_ISSUER,
        )
        .await
        .context("configuring JWT auth")?;
        Ok(Self { bao, issuer })
    }
}

/// Whether an identity's role may read the case's secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The role's policy grants `read` on `secret/data/<id>/*`.
    Allowed,
    /// The role logs in fine but its policy covers another path only.
    Denied,
}

/// One test's corner of a server: its id, a policy that reads its secrets and one that reads nothing of them.
pub(crate) struct Case<'a> {
    pub(crate) backend: &'a Backend,
    pub(crate) id: String,
}

impl<'a> Case<'a> {
    /// A new case on `backend`, labelled `label` (the id is unique per binary).
    pub(crate) async fn new(backend: &'a Backend, label: &str) -> anyhow::Result<Self> {
        let n = NEXT_CASE.fetch_add(1, Ordering::Relaxed);
        let id = format!("{label}-{n}");
        backend
            .bao
            .read_only_policy(&allowed_policy(&id), &[&format!("secret/data/{id}/*")])
            .await?;
        backend
            .bao
            .read_only_policy(&denied_policy(&id), &[&format!("secret/data/{id}-elsewhere/*")])
            .await?;
        Ok(Self { backend, id })
    }

    /// A new case on this binary's shared server.
    pub(crate) async fn shared(label: &str) -> anyhow::Result<Case<'static>> {
        Case::new(backend().await?, label).await
    }

    pub(crate) fn bao(&self) -> &OpenBao {
        &self.backend.bao
    }

    /// `secret/data/<id>/<name>`.
    pub(crate) fn secret_path(&self, name: &str) -> String {
        format!("secret/data/{}/{name}", self.id)
    }

    /// Writes `data` at [`secret_path`](Self::secret_path)`(name)`.
    pub(crate) async fn put(&self, name: &str, data: Value) -> anyhow::Result<u64> {
        self.bao()
            .kv2_put("secret", &format!("{}/{name}", self.id), data)
            .await
    }

    /// Seeds `count` secrets `s0..` with one random `value` each, and returns the objects reading them (object
    /// `<prefix>-<i>` with `secretKey: value`) together with the values.
    pub(crate) async fn seed(
        &self,
        prefix: &str,
        count: usize,
    ) -> anyhow::Result<Vec<(Obj, String)>> {
        let mut seeded = Vec::with_capacity(count);
        for i in 0..count {
            let value = random_value("value");
            self.put(&format!("s{i}"), json!({"value": value})).await?;
            seeded.push((
                Obj::new(
                    &format!("{prefix}-{i}"),
                    &self.secret_path(&format!("s{i}")),
                )
                .key("value"),
                value,
            ));
        }
        Ok(seeded)
    }

    /// A service account `service_account` in the case's namespace with its own role.
    pub(crate) async fn identity(
        &self,
        service_account: &str,
        access: Access,
    ) -> anyhow::Result<Identity<'a>> {
        self.identity_in(&format!("ns-{}", self.id), service_account, access)
            .await
    }

    /// A service account in `namespace` with its own role (`<id>-<namespace>-<service_account>`).
    pub(crate) async fn identity_in(
        &self,
        namespace: &str,
        service_account: &str,
        access: Access,
    ) -> anyhow::Result<Identity<'a>> {
        let role = format!("{}-{namespace}-{service_account}", self.id);
        let policy = match access {
            Access::Allowed => allowed_policy(&self.id),
            Access::Denied => denied_policy(&self.id),
        };
        self.bao()
            .jwt_role(
                JWT_MOUNT,
                &JwtRole {
                    name: role.clone(),
                    bound_audiences: vec!["vault".to_owned()],
                    namespace: namespace.to_owned(),
                    service_account: service_account.to_owned(),
                    policies: vec![policy],
                },
            )
            .await?;
        let template = PodFixture::new(namespace, service_account);
        Ok(Identity {
            backend: self.backend,
            service_account_uid: template.service_account_uid().to_owned(),
            template,
            role,
        })
    }
}

fn allowed_policy(id: &str) -> String {
    format!("{id}-read")
}

fn denied_policy(id: &str) -> String {
    format!("{id}-other")
}

/// A service account (namespace, name, uid) and the role it logs in as. Its pods share the service account uid,
/// as pods of one ServiceAccount object do.
pub(crate) struct Identity<'a> {
    backend: &'a Backend,
    template: PodFixture,
    service_account_uid: String,
    pub(crate) role: String,
}

impl Identity<'_> {
    /// A new pod (own name and uid) running as this service account.
    pub(crate) fn pod(&self) -> PodFixture {
        PodFixture::new(self.template.namespace(), self.template.service_account())
            .with_service_account_uid(&self.service_account_uid)
    }

    /// The mount request of a new pod of this identity, logging in with this identity's role.
    pub(crate) fn request(&self, objects: &[Obj]) -> anyhow::Result<MountRequestBuilder> {
        self.request_as(&self.role, objects)
    }

    /// Like [`request`](Self::request), asking for role `role` (which may belong to someone else).
    pub(crate) fn request_as(
        &self,
        role: &str,
        objects: &[Obj],
    ) -> anyhow::Result<MountRequestBuilder> {
        let pod = self.pod();
        Ok(MountRequestBuilder::new(&pod)
            .parameter("roleName", role)
            .parameter("vaultAddress", self.backend.bao.addr())
            .parameter("vaultAuthMountPath", JWT_MOUNT)
            .parameter("objects", objects_yaml(objects))
            .token("vault", self.backend.issuer.token(&pod, "vault")?))
    }
}



/// `<prefix>-<16 hex digits>`: a value no log line or label would contain by accident.
pub(crate) fn random_value(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::rng().random::<u64>())
}

/// A provider serving `names` with health and metrics on one ephemeral loopback port, logging at `info`.
pub(crate) async fn provider_builder(names: &[&str]) -> anyhow::Result<ProviderBuilder> {
    let mut builder = ProviderBuilder::new()
        .vault_addr(backend().await?.bao.addr())
        .trust_issuer(&backend().await?.issuer)
        .health_addr(EPHEMERAL)
        .metrics_addr(EPHEMERAL)
        .log_level("info");
    for name in names {
        builder = builder.provider(*name);
    }
    Ok(builder)
}

/// Sends every request at once (released together by a barrier) over one connection, as the driver multiplexes
/// its mounts, and returns the results in request order.
pub(crate) async fn mount_concurrently(
    provider: &ProviderProcess,
    socket: &str,
    requests: Vec<MountRequest>,
) -> anyhow::Result<Vec<Result<MountResponse, Status>>> {
    let client = provider.client(socket).await?;
    let barrier = Arc::new(Barrier::new(requests.len()));
    let mut tasks = Vec::with_capacity(requests.len());
    for request in requests {
        let mut client = client.clone();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            mount(&mut client, request).await
        }));
    }
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.context("a mount task panicked")?);
    }
    Ok(results)
}

/// Fault injector: a TCP listener on 127.0.0.1 that accepts connections and never answers a byte. It reads and
/// discards what it is sent, so it can tell when the client closes a connection. Not a Vault imitation: it
/// stands for a backend that hangs.
pub(crate) struct StalledListener {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl StalledListener {
    /// Binds 127.0.0.1:0 and starts accepting.
    pub(crate) async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (accepted_count, open_count) = (Arc::clone(&accepted), Arc::clone(&open));
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                accepted_count.fetch_add(1, Ordering::SeqCst);
                open_count.fetch_add(1, Ordering::SeqCst);
                let open_count = Arc::clone(&open_count);
                connections.spawn(async move {
                    let mut sink = [0_u8; 4096];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    open_count.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(Self {
            addr,
            accepted,
            open,
            task,
        })
    }

    /// `http://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections the client has not closed yet.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

impl Drop for StalledListener {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts (and closes) every held connection.
        self.task.abort();
    }
}
