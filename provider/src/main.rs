//! `courier-provider`: flags, logging, sockets, serving and shutdown. Wiring only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use courier_provider::{
    AwsSettings, AzureArgs, BackendSettings, DEFAULT_ANNOTATION_CACHE, GcpEndpoints, GcpSettings, ConnectionLimits, Core, DEFAULT_BACKEND_CONCURRENCY, DEFAULT_LEASE_REUSE_FRACTION,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_ROLE_CACHE, DEFAULT_TEMPLATE_MEMORY, DEFAULT_TEMPLATE_RENDERERS, BoundSocket, Defaults,
    LogFormat, Health, Metrics, ProviderName, ProviderService, Sandbox, Settings, TEMPLATE_CHILD_ARG, Timeouts,
    TokenVerification, VaultSettings, VerifierSettings, Versioner,
};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Serves Vault/OpenBao secrets to Secrets Store CSI driver mounts, as the pod's own identity.
#[derive(Debug, Parser)]
#[command(version, about, after_help = "`courier-provider check --help`: check SecretProviderClass files offline.")]
struct Args {
    /// Directory the driver looks for provider sockets in; each name gets `<dir>/<name>.sock`.
    #[arg(long, env = "COURIER_PROVIDERS_DIR", default_value = "/var/run/secrets-store-csi-providers")]
    providers_dir: PathBuf,

    /// Provider name to serve (repeatable). `vault` and `openbao` accept those providers'
    /// SecretProviderClasses unchanged; any other name takes Courier's native parameters.
    #[arg(long = "provider", env = "COURIER_PROVIDERS", value_delimiter = ',', default_value = "courier")]
    providers: Vec<ProviderName>,

    /// Vault/OpenBao address used when a SecretProviderClass sets no `vaultAddress`.
    #[arg(long, env = "VAULT_ADDR", default_value = "https://127.0.0.1:8200")]
    vault_addr: String,

    /// Address for the HTTP health endpoints (`/healthz`, `/readyz`), e.g. `0.0.0.0:8080`. Off when unset.
    #[arg(long, env = "COURIER_HEALTH_ADDR")]
    health_addr: Option<SocketAddr>,

    /// Address for Prometheus metrics (`/metrics`), e.g. `0.0.0.0:8095`. Off when unset. May equal
    /// `--health-addr`.
    #[arg(long, env = "COURIER_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,

    /// How long a static read (no lease) is reused for further mounts of the same identity; `0s`
    /// disables reuse. Never shared across identities.
    #[arg(long, env = "COURIER_STATIC_REUSE", default_value = "5s", value_parser = humantime::parse_duration)]
    static_reuse: Duration,

    /// Most concurrent HTTP requests to one Vault address, and to AWS.
    #[arg(long, env = "COURIER_BACKEND_CONCURRENCY", default_value_t = DEFAULT_BACKEND_CONCURRENCY)]
    backend_concurrency: usize,

    /// Share of a dynamic secret's lifetime (lease or certificate validity) after which it is
    /// renewed or re-issued; until then mounts of the same pod get the same secret.
    #[arg(long, env = "COURIER_LEASE_REUSE_FRACTION", default_value_t = DEFAULT_LEASE_REUSE_FRACTION)]
    lease_reuse_fraction: f64,

    /// Renew renewable leases at that point instead of issuing fresh secrets (`false`: re-issue).
    #[arg(long, env = "COURIER_LEASE_RENEW", default_value_t = true, action = clap::ArgAction::Set)]
    lease_renew: bool,

    /// How often expired leases are dropped and idle `revokeOnUnmount` leases revoked.
    #[arg(long, env = "COURIER_LEASE_SWEEP_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    lease_sweep_interval: Duration,

    /// With `revokeOnUnmount`, a lease no mount or republish has used for this long is revoked.
    /// Keep it well above the driver's rotation poll interval.
    #[arg(long, env = "COURIER_LEASE_REVOKE_GRACE", default_value = "10m", value_parser = humantime::parse_duration)]
    lease_revoke_grace: Duration,

    /// AWS region used when a SecretProviderClass sets no `region`.
    #[arg(long, env = "AWS_REGION")]
    aws_region: Option<String>,

    /// URL of the EKS Pod Identity agent (default: its link-local address, IPv4 or IPv6 as the
    /// SecretProviderClass prefers).
    #[arg(long, env = "COURIER_POD_IDENTITY_AGENT_URL")]
    pod_identity_agent_url: Option<String>,

    /// Google Secret Manager's global endpoint.
    #[arg(long, env = "COURIER_GCP_SECRET_MANAGER_ENDPOINT", default_value = "https://secretmanager.googleapis.com")]
    gcp_secret_manager_endpoint: String,

    /// Google Secret Manager's regional endpoint; `{location}` stands for the secret's location.
    #[arg(long, env = "COURIER_GCP_SECRET_MANAGER_REGIONAL_ENDPOINT", default_value = "https://secretmanager.{location}.rep.googleapis.com")]
    gcp_secret_manager_regional_endpoint: String,

    /// Google Parameter Manager's global endpoint.
    #[arg(long, env = "COURIER_GCP_PARAMETER_MANAGER_ENDPOINT", default_value = "https://parametermanager.googleapis.com")]
    gcp_parameter_manager_endpoint: String,

    /// Google Parameter Manager's regional endpoint; `{location}` stands for the parameter's location.
    #[arg(long, env = "COURIER_GCP_PARAMETER_MANAGER_REGIONAL_ENDPOINT", default_value = "https://parametermanager.{location}.rep.googleapis.com")]
    gcp_parameter_manager_regional_endpoint: String,

    /// Google's Security Token Service, where the pod's token is exchanged.
    #[arg(long, env = "COURIER_GCP_STS_ENDPOINT", default_value = "https://sts.googleapis.com")]
    gcp_sts_endpoint: String,

    /// Google's IAM Credentials API, where Google service accounts are impersonated.
    #[arg(long, env = "COURIER_GCP_IAM_CREDENTIALS_ENDPOINT", default_value = "https://iamcredentials.googleapis.com")]
    gcp_iam_credentials_endpoint: String,

    /// The metadata server, used only for `auth: provider-adc` when allowed.
    #[arg(long, env = "COURIER_GCP_METADATA_ENDPOINT", default_value = "http://metadata.google.internal")]
    gcp_metadata_endpoint: String,

    /// The GKE workload pool (`PROJECT_ID.svc.id.goog`): the audience of the pod's token when a
    /// SecretProviderClass sets no `audience`.
    #[arg(long, env = "COURIER_GCP_WORKLOAD_POOL")]
    gcp_workload_pool: Option<String>,

    /// The cluster's identity provider for the STS exchange
    /// (`https://container.googleapis.com/v1/projects/P/locations/L/clusters/C`).
    #[arg(long, env = "COURIER_GCP_IDENTITY_PROVIDER")]
    gcp_identity_provider: Option<String>,

    /// Allow `auth: provider-adc`: mounts then read with the provider's own Google credentials,
    /// the same for every pod on the node. Off by default.
    #[arg(long, env = "COURIER_GCP_ALLOW_PROVIDER_ADC", default_value_t = false, action = clap::ArgAction::Set)]
    gcp_allow_provider_adc: bool,

    #[command(flatten)]
    azure: AzureArgs,

    /// Verify service-account tokens against the cluster's issuer keys (read from the Kubernetes API
    /// at `/openid/v1/jwks`) before any cached login or credential is used for them. `auto`: verify
    /// when the keys can be read, otherwise cache logins per exact token; `required`: refuse mounts
    /// while the keys cannot be read; `off`: cache logins per exact token.
    #[arg(long, env = "COURIER_TOKEN_VERIFICATION", value_enum, default_value_t = TokenVerification::Auto)]
    token_verification: TokenVerification,

    /// Read the issuer keys right after start instead of at the first mount that needs them: a
    /// missing binding is logged at start and the first mount skips one API round trip, at the cost
    /// of about 4 MiB of resident pages (the Kubernetes client and TLS code) on every node,
    /// including nodes that never mount.
    #[arg(long, env = "COURIER_ISSUER_KEYS_AT_START")]
    issuer_keys_at_start: bool,

    /// Accepted `iss` of service-account tokens (repeatable, comma-separated); by default the issuer
    /// the API server's `/.well-known/openid-configuration` names.
    #[arg(long, env = "COURIER_SERVICE_ACCOUNT_ISSUER", value_delimiter = ',')]
    service_account_issuer: Vec<String>,

    /// Log format.
    #[arg(long, env = "COURIER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// Level of Courier's own logs (`info`, `debug`, `trace`); other crates stay at `warn`.
    /// A directive list (`courier_provider=trace,info`) is taken as written.
    #[arg(long, env = "COURIER_LOG_LEVEL", default_value = "info")]
    log_level: String,

    /// Extra filter directives, e.g. `h2=trace` for the HTTP/2 frames or `trace` for every crate.
    #[arg(long, env = "RUST_LOG")]
    log_filter: Option<String>,

    /// File holding the key for object versions (at least 16 bytes). Without it a random key is
    /// made per process, so versions change once after a restart and the driver rewrites files once.
    #[arg(long, env = "COURIER_HMAC_KEY_FILE")]
    hmac_key_file: Option<PathBuf>,

    /// Longest time one mount may take; kept well under kubelet's 2-minute limit so the error
    /// names the slow backend.
    #[arg(long, env = "COURIER_MOUNT_TIMEOUT", default_value = "45s", value_parser = humantime::parse_duration)]
    mount_timeout: Duration,

    /// Memory (data segment) one template renderer may use, in MiB. Templates run in a
    /// short-lived child process with this limit, so a template that builds huge values
    /// fails alone.
    #[arg(long, env = "COURIER_TEMPLATE_MEMORY_MIB", default_value_t = DEFAULT_TEMPLATE_MEMORY / (1024 * 1024),
          value_parser = clap::value_parser!(u64).range(8..=1024))]
    template_memory_mib: u64,

    /// Template renderers running at once; further templated mounts wait their turn.
    #[arg(long, env = "COURIER_TEMPLATE_RENDERERS", default_value_t = DEFAULT_TEMPLATE_RENDERERS as u16,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    template_renderers: u16,

    /// Most connections held at once on each socket. Over it, a new connection takes the place of
    /// the one idle the longest, or is closed at once when all are busy.
    #[arg(long, env = "COURIER_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// A connection with no request in progress for this long is closed (the driver reconnects
    /// on its next call).
    #[arg(long, env = "COURIER_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,

    /// Longest time a new connection may take to send its preface and first request.
    #[arg(long, env = "COURIER_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,

    /// Longest time to finish in-flight mounts after SIGTERM.
    #[arg(long, env = "COURIER_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    shutdown_timeout: Duration,
}

fn main() -> anyhow::Result<()> {
    // A template renderer child (see `sandbox`): no runtime, no threads, no flags.
    let mut argv = std::env::args_os().skip(1);
    let first = argv.next();
    if first.as_deref() == Some(std::ffi::OsStr::new(TEMPLATE_CHILD_ARG)) {
        let limit = argv.next().and_then(|a| a.into_string().ok());
        std::process::exit(courier_provider::template_child_main(limit.as_deref()));
    }
    // `check`: offline, no runtime, no sockets.
    if first.as_deref() == Some(std::ffi::OsStr::new("check")) {
        std::process::exit(courier_provider::run_check(argv));
    }
    // Where the C library refuses a setting, the defaults stay: slower to give memory back, nothing worse.
    let _tuned = courier_provider::tune_allocator();
    serve()
}

#[tokio::main]
async fn serve() -> anyhow::Result<()> {
    let args = Args::parse();
    courier_provider::init_telemetry(args.log_format, &args.log_level, args.log_filter.as_deref())?;
    if let Err(e) = run(args).await {
        tracing::error!("{e:#}");
        return Err(e);
    }
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut names = args.providers.clone();
    names.sort();
    names.dedup();
    if names.len() != args.providers.len() {
        bail!("--provider lists a name twice");
    }
    let versioner = match &args.hmac_key_file {
        Some(path) => {
            let key = std::fs::read(path).with_context(|| format!("--hmac-key-file {}", path.display()))?;
            Versioner::with_key(key).with_context(|| format!("--hmac-key-file {}", path.display()))?
        }
        None => Versioner::random(),
    };
    if !(args.lease_reuse_fraction > 0.0 && args.lease_reuse_fraction <= 1.0) {
        bail!("--lease-reuse-fraction must be in (0, 1]");
    }
    if args.backend_concurrency == 0 {
        bail!("--backend-concurrency must be at least 1");
    }
    if args.max_connections == 0 {
        bail!("--max-connections must be at least 1");
    }
    if args.idle_timeout.is_zero() || args.handshake_timeout.is_zero() {
        bail!("--idle-timeout and --handshake-timeout must be positive");
    }
    let limits = ConnectionLimits {
        max_connections: args.max_connections,
        timeouts: Timeouts { idle: args.idle_timeout, handshake: args.handshake_timeout },
    };
    let settings = Settings {
        defaults: Defaults {
            vault_address: args.vault_addr.trim_end_matches('/').to_owned(),
            aws_region: args.aws_region.clone().filter(|r| !r.is_empty()),
        },
        mount_timeout: args.mount_timeout,
        templates: Some(Sandbox::new(
            std::env::current_exe().context("cannot find the provider's own binary for the template renderer")?,
            args.template_memory_mib * 1024 * 1024,
            usize::from(args.template_renderers),
        )),
        backends: BackendSettings {
            vault: VaultSettings {
                static_reuse: args.static_reuse,
                backend_concurrency: args.backend_concurrency,
                lease_reuse_fraction: args.lease_reuse_fraction,
                renew_leases: args.lease_renew,
                lease_sweep_interval: args.lease_sweep_interval,
                lease_revoke_grace: args.lease_revoke_grace,
                shared_work_timeout: args.mount_timeout,
            },
            aws: AwsSettings {
                default_region: args.aws_region.clone().filter(|r| !r.is_empty()),
                pod_identity_agent_url: args.pod_identity_agent_url.clone(),
                role_cache: DEFAULT_ROLE_CACHE,
                concurrency: args.backend_concurrency,
            },
            gcp: GcpSettings {
                endpoints: GcpEndpoints {
                    secret_manager: args.gcp_secret_manager_endpoint.clone(),
                    secret_manager_regional: args.gcp_secret_manager_regional_endpoint.clone(),
                    parameter_manager: args.gcp_parameter_manager_endpoint.clone(),
                    parameter_manager_regional: args.gcp_parameter_manager_regional_endpoint.clone(),
                    sts: args.gcp_sts_endpoint.clone(),
                    iam_credentials: args.gcp_iam_credentials_endpoint.clone(),
                    metadata: args.gcp_metadata_endpoint.clone(),
                },
                workload_pool: args.gcp_workload_pool.clone().filter(|p| !p.is_empty()),
                identity_provider: args.gcp_identity_provider.clone().filter(|p| !p.is_empty()),
                allow_provider_adc: args.gcp_allow_provider_adc,
                annotation_cache: DEFAULT_ANNOTATION_CACHE,
                concurrency: args.backend_concurrency,
            },
            azure: args.azure.settings(args.backend_concurrency),
        },
        tokens: VerifierSettings {
            mode: args.token_verification,
            issuers: args.service_account_issuer.iter().filter(|i| !i.is_empty()).cloned().collect(),
        },
    };
    let metrics = Metrics::shared();
    let core = Arc::new(Core::new(versioner, settings, Arc::clone(&metrics)));
    if args.issuer_keys_at_start {
        core.prefetch_issuer_keys();
    }

    std::fs::create_dir_all(&args.providers_dir)
        .with_context(|| format!("--providers-dir {}", args.providers_dir.display()))?;
    let mut bound: Vec<(ProviderName, BoundSocket, tokio::net::UnixListener)> = Vec::new();
    for name in &args.providers {
        let path = args.providers_dir.join(name.socket_file());
        match courier_provider::bind_socket(&path) {
            Ok((socket, listener)) => bound.push((name.clone(), socket, listener)),
            Err(e) => {
                for (_, socket, _) in &bound {
                    socket.remove();
                }
                return Err(e.into());
            }
        }
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let health = Arc::new(Health::default());
    // Health and metrics share one listener when given the same address.
    let mut endpoints: Vec<(SocketAddr, axum::Router)> = Vec::new();
    if let Some(addr) = args.health_addr {
        endpoints.push((addr, courier_provider::health_router(Arc::clone(&health))));
    }
    if let Some(addr) = args.metrics_addr {
        let route = courier_provider::metrics_router(Arc::clone(&metrics));
        match endpoints.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, router)) => *router = router.clone().merge(route),
            None => endpoints.push((addr, route)),
        }
    }
    for (addr, router) in endpoints {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr().context("HTTP listener address")?;
        tracing::info!(address = %local, "HTTP endpoints listening");
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = &e as &dyn std::error::Error, "HTTP endpoint failed");
            }
        });
    }

    let mut sockets = Vec::new();
    let mut servers = tokio::task::JoinSet::new();
    for (name, socket, listener) in bound {
        tracing::info!(provider = %name, socket = %socket.path().display(), "serving");
        let service = ProviderService::new(name.clone(), Arc::clone(&core));
        let mut stop = stop_rx.clone();
        servers.spawn(async move {
            let result = service
                .serve(listener, limits, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            (name, result)
        });
        sockets.push(socket);
    }
    health.set_ready(true);
    metrics.ready.set(1);
    tracing::info!(providers = sockets.len(), "ready");

    let mut sigterm = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let failure = tokio::select! {
        _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); None }
        Some(done) = servers.join_next() => Some(done),
    };

    // Stop taking new connections first and give the socket names back, so a
    // successor can bind them while in-flight mounts finish here.
    health.set_ready(false);
    metrics.ready.set(0);
    let _ = stop_tx.send(true);
    for socket in &sockets {
        socket.remove();
    }
    let drained = tokio::time::timeout(args.shutdown_timeout, async {
        while let Some(done) = servers.join_next().await {
            if let Ok((name, Err(e))) = done {
                tracing::error!(provider = %name, error = &e as &dyn std::error::Error, "server failed");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(timeout = ?args.shutdown_timeout, "in-flight mounts did not finish in time; exiting");
    }
    match failure {
        Some(Ok((name, Err(e)))) => Err(anyhow::Error::new(e).context(format!("provider {name} stopped serving"))),
        Some(Ok((name, Ok(())))) => bail!("provider {name} stopped serving unexpectedly"),
        Some(Err(e)) => Err(anyhow::Error::new(e).context("a server task failed")),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}
