//! `courier-driver-shim`: flags, logging, the CSI socket, local mode. Wiring only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use courier_driver_shim::cluster::Cluster;
use courier_driver_shim::csi::{IdentityService, NodeService};
use courier_driver_shim::local::Local;
use courier_driver_shim::metrics::Metrics;
use courier_driver_shim::mount::parse_size;
use courier_driver_shim::provider_client::Providers;
use courier_driver_shim::publish::{RepublishErrors, Settings, Shim};
use courier_driver_shim::target::Scope;
use courier_proto::csi::v1::identity_server::IdentityServer;
use courier_proto::csi::v1::node_server::NodeServer;
use tokio_stream::wrappers::UnixListenerStream;

/// Where kubelet keeps pods' volumes unless its `--root-dir` is moved.
const DEFAULT_KUBELET_PODS_DIR: &str = "/var/lib/kubelet/pods";

/// A CSI node plugin that fills pods' secrets volumes from Secrets Store CSI providers.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// CSI endpoint kubelet calls, `unix:///path/csi.sock`.
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    endpoint: String,

    /// This node's name (`spec.nodeName`).
    #[arg(long, env = "KUBE_NODE_NAME", default_value = "")]
    node_id: String,

    /// Driver name reported to kubelet.
    #[arg(
        long,
        env = "COURIER_DRIVER_NAME",
        default_value = "secrets-store.csi.k8s.io"
    )]
    driver_name: String,

    /// Provider socket directory, searched first.
    #[arg(
        long,
        global = true,
        default_value = "/var/run/secrets-store-csi-providers"
    )]
    providers_dir: PathBuf,

    /// Further provider socket directories, searched in order after --providers-dir.
    #[arg(
        long = "additional-providers-dir",
        global = true,
        value_delimiter = ','
    )]
    additional_providers_dirs: Vec<PathBuf>,

    /// Republishes call the provider (kubelet republishes when the CSIDriver sets requiresRepublish).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    enable_secret_rotation: bool,

    /// Content younger than this is not refreshed on republish.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    rotation_poll_interval: Duration,

    /// What kubelet sees when a republish fails: `report` keeps the old files, records an Event
    /// and answers success (kubelet before 1.37 deletes the mount on failure); `fail` also fails.
    #[arg(long, value_enum, default_value_t = RepublishErrors::Report)]
    republish_errors: RepublishErrors,

    /// kubelet's pods directory: targets that do not resolve below it are refused.
    #[arg(long, env = "COURIER_KUBELET_PODS_DIR", default_value = DEFAULT_KUBELET_PODS_DIR)]
    kubelet_pods_dir: PathBuf,

    /// Size limit of each volume's tmpfs.
    #[arg(long, global = true, default_value = "16Mi")]
    tmpfs_size: String,

    /// Largest provider response accepted.
    #[arg(long, global = true, default_value_t = 4 * 1024 * 1024)]
    max_call_recv_msg_size: usize,

    /// Longest time a provider call may take (kubelet gives up at 2 minutes).
    #[arg(long, global = true, default_value = "90s", value_parser = humantime::parse_duration)]
    provider_timeout: Duration,

    /// HTTP `/metrics` address.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,

    /// HTTP `/healthz` address.
    #[arg(long)]
    health_addr: Option<SocketAddr>,

    /// Mirror files into Kubernetes Secrets as SecretProviderClasses' `secretObjects` ask.
    #[arg(long, env = "COURIER_SYNC_SECRETS", default_value_t = false, action = clap::ArgAction::Set)]
    sync_secrets: bool,

    /// Level of the shim's own logs (`info`, `debug`); other crates stay at `warn`.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,

    /// Extra filter directives, e.g. `h2=trace` for the HTTP/2 frames or `trace` for every crate.
    #[arg(long, global = true, env = "RUST_LOG")]
    log_filter: Option<String>,

    /// Log as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the SecretSync controller: Secrets synced from SecretProviderClasses without a pod mount.
    SecretSync(SecretSyncArgs),
    /// Publish a SecretProviderClass file into a directory without a cluster (tmpfs when root).
    Local {
        /// SecretProviderClass manifest (YAML).
        #[arg(long)]
        secret_provider_class: PathBuf,
        /// Pod namespace.
        #[arg(long, default_value = "default")]
        namespace: String,
        /// Service account.
        #[arg(long, default_value = "default")]
        service_account: String,
        /// Pod name.
        #[arg(long, default_value = "local")]
        pod_name: String,
        /// Pod UID.
        #[arg(long, default_value = "00000000-0000-0000-0000-000000000000")]
        pod_uid: String,
        /// File with the service-account token (re-read on every republish).
        #[arg(long)]
        token_file: PathBuf,
        /// Audience the token is passed for (repeatable).
        #[arg(long = "audience", default_value = "vault")]
        audiences: Vec<String>,
        /// Target directory.
        #[arg(long)]
        target: PathBuf,
        /// Republish this often (e.g. `5s`); publish once when unset.
        #[arg(long, value_parser = humantime::parse_duration)]
        republish_every: Option<Duration>,
        /// Stop after this many republishes.
        #[arg(long)]
        republish_count: Option<u64>,
        /// Write into a plain directory instead of a tmpfs (when not root).
        #[arg(long)]
        no_tmpfs: bool,
        /// Leave the files in place on exit.
        #[arg(long)]
        keep: bool,
    },
}

/// Flags of the SecretSync controller.
#[derive(Debug, clap::Args)]
struct SecretSyncArgs {
    /// Namespace of the leader Lease (the controller's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "courier-secretsync")]
    lease_name: String,
    /// This replica's identity in the Lease (its pod name).
    #[arg(long, env = "POD_NAME")]
    identity: String,
    /// How long a leader's last renewal keeps other replicas out.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    lease_duration: Duration,
    /// How often the leader renews and the others try.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    lease_retry_period: Duration,
    /// Token audience when a SecretSync names none (repeatable; as the CSIDriver's tokenRequests).
    #[arg(long = "token-audience", default_value = "vault")]
    token_audiences: Vec<String>,
    /// Lifetime of the TokenRequest tokens (at least 10m, the API's minimum).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    token_lifetime: Duration,
    /// Shortest refresh interval a SecretSync may ask for.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    min_refresh_interval: Duration,
    /// First wait after a failed sync (doubled per further failure).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    backoff_base: Duration,
    /// Longest wait after failed syncs.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    backoff_max: Duration,
    /// HTTP address of `/metrics` and `/healthz`.
    #[arg(long)]
    http_addr: Option<SocketAddr>,
}

/// Runs the SecretSync controller until SIGTERM.
async fn secret_sync(args: SecretSyncArgs, providers: Providers) -> anyhow::Result<()> {
    use courier_driver_shim::secretsync::{self, leader, metrics, reconcile};
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let cluster = Arc::new(Cluster::with_client(client, args.identity.clone()));
    let metrics = Arc::new(metrics::Metrics::default());
    if let Some(addr) = args.http_addr {
        let metrics = Arc::clone(&metrics);
        serve_http(addr, move || metrics.encode()).await?;
    }
    let settings = reconcile::Settings {
        default_audiences: args.token_audiences,
        min_refresh: args.min_refresh_interval,
        token_lifetime: args.token_lifetime,
        backoff_base: args.backoff_base,
        backoff_max: args.backoff_max,
        instance: args.identity.clone(),
    };
    let election = leader::Settings {
        namespace: args.lease_namespace,
        name: args.lease_name,
        identity: args.identity,
        lease_duration: args.lease_duration,
        retry_period: args.lease_retry_period,
    };
    tracing::info!(identity = %election.identity, lease = %election.name, "SecretSync controller starting");
    secretsync::run(cluster, providers, settings, election, metrics, shutdown_signal()).await;
    Ok(())
}

/// Serves `/healthz` and `/metrics` (the text `encode` returns) on `addr`, in the background.
async fn serve_http(
    addr: SocketAddr,
    encode: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> anyhow::Result<()> {
    let router = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route(
            "/metrics",
            axum::routing::get(move || {
                let encode = encode.clone();
                async move { encode() }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "HTTP endpoint failed");
        }
    });
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    courier_driver_shim::logging::init(&args.log_level, args.log_filter.as_deref(), args.log_json)?;

    let mut dirs = vec![args.providers_dir.clone()];
    dirs.extend(args.additional_providers_dirs.iter().cloned());
    let providers = Providers::new(dirs, args.max_call_recv_msg_size, args.provider_timeout);
    let metrics = Arc::new(Metrics::default());
    let tmpfs_size =
        Some(parse_size(&args.tmpfs_size).map_err(|e| anyhow::anyhow!("--tmpfs-size: {e}"))?);

    if let Some(Command::SecretSync(sync_args)) = args.command {
        if sync_args.token_lifetime < Duration::from_secs(600) {
            bail!("--token-lifetime must be at least 10m (the TokenRequest API's minimum)");
        }
        return secret_sync(sync_args, providers).await;
    }

    if let Some(Command::Local {
        secret_provider_class,
        namespace,
        service_account,
        pod_name,
        pod_uid,
        token_file,
        audiences,
        target,
        republish_every,
        republish_count,
        no_tmpfs,
        keep,
    }) = args.command
    {
        let use_tmpfs = !no_tmpfs;
        if use_tmpfs && !nix::unistd::geteuid().is_root() {
            bail!("mounting a tmpfs needs root; run as root or pass --no-tmpfs");
        }
        let settings = Settings {
            rotation: true,
            rotation_poll_interval: Duration::ZERO,
            republish_errors: RepublishErrors::Report,
            tmpfs_size,
            use_tmpfs,
            // The operator names the target on the command line.
            scope: Scope::Anywhere,
        };
        let shim = Shim::new(settings, providers, metrics);
        let local = Local {
            spc_file: secret_provider_class,
            namespace,
            service_account,
            pod_name,
            pod_uid,
            token_file,
            audiences,
            target,
            republish_every,
            republish_count,
            unpublish_on_exit: !keep,
        };
        return Ok(local.run(&shim).await?);
    }

    if args.node_id.is_empty() {
        bail!("--node-id (or KUBE_NODE_NAME) is required");
    }
    let socket = args
        .endpoint
        .strip_prefix("unix://")
        .map(PathBuf::from)
        .context("--endpoint must be unix:///path")?;
    let settings = Settings {
        rotation: args.enable_secret_rotation,
        rotation_poll_interval: args.rotation_poll_interval,
        republish_errors: args.republish_errors,
        tmpfs_size,
        use_tmpfs: true,
        scope: Scope::Below(args.kubelet_pods_dir.clone()),
    };
    let shim = Arc::new(Shim::new(settings, providers, Arc::clone(&metrics)));
    let cluster = Arc::new(
        Cluster::connect(args.node_id.clone())
            .await
            .context("connecting to the Kubernetes API")?,
    );

    for addr in [args.metrics_addr, args.health_addr]
        .into_iter()
        .flatten()
        .collect::<std::collections::BTreeSet<_>>()
    {
        let metrics = Arc::clone(&metrics);
        serve_http(addr, move || metrics.encode()).await?;
    }

    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    if std::fs::symlink_metadata(&socket).is_ok() {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            bail!(
                "{}: another process is serving this socket",
                socket.display()
            );
        }
        std::fs::remove_file(&socket)
            .with_context(|| format!("removing stale {}", socket.display()))?;
    }
    let listener = tokio::net::UnixListener::bind(&socket)
        .with_context(|| format!("binding {}", socket.display()))?;
    tracing::info!(endpoint = %socket.display(), driver = %args.driver_name, node = %args.node_id, "serving CSI");
    let identity = IdentityService {
        driver_name: args.driver_name.clone(),
    };
    let after_mount: Option<Arc<dyn courier_driver_shim::csi::AfterMount>> = if args.sync_secrets {
        Some(Arc::new(courier_driver_shim::sync::SecretSync::new(
            Arc::clone(&cluster),
        )))
    } else {
        None
    };
    let node = NodeService {
        shim,
        cluster,
        after_mount,
    };
    let shutdown = shutdown_signal();
    tonic::transport::Server::builder()
        .add_service(IdentityServer::new(identity))
        .add_service(NodeServer::new(node))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await
        .context("serving CSI")?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
