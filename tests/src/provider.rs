//! The `courier-provider` binary as a child process on a temporary providers directory.
//!
//! The provider is ready when, for every name it serves, the socket file exists and a `Version` call over it
//! succeeds; that is what the driver relies on, so it is what we wait for.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use courier_proto::v1alpha1::VersionRequest;
use courier_proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient;
use hyper_util::rt::TokioIo;
use nix::sys::signal::Signal;
use tempfile::TempDir;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint};

use crate::FakeKubeApi;
use crate::process::{self, Probe, ServerProcess, Shutdown, StartError};
use crate::tools;

/// How long start-up may take; a debug build on a busy machine starts well within this.
const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one connection attempt or readiness `Version` call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Variables the provider reads that a developer's shell may set (proxies and `RUST_LOG` are cleared for every
/// process); the tests pass everything as flags.
const PROVIDER_ENV_TO_CLEAR: &[&str] = &[
    "VAULT_ADDR",
    "BAO_ADDR",
    "COURIER_PROVIDERS_DIR",
    "COURIER_PROVIDERS",
    "COURIER_HEALTH_ADDR",
    "COURIER_LOG_FORMAT",
    "COURIER_LOG_LEVEL",
    "COURIER_HMAC_KEY_FILE",
    "COURIER_MOUNT_TIMEOUT",
    "COURIER_SHUTDOWN_TIMEOUT",
    "COURIER_METRICS_ADDR",
    "COURIER_STATIC_REUSE",
    "COURIER_BACKEND_CONCURRENCY",
    "COURIER_MAX_CONNECTIONS",
    "COURIER_IDLE_TIMEOUT",
    "COURIER_HANDSHAKE_TIMEOUT",
    // AWS: the tests point the provider at moto explicitly; nothing from the developer's AWS setup may leak in.
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    "AWS_CA_BUNDLE",
    "COURIER_POD_IDENTITY_AGENT_URL",
    "KUBECONFIG",
];
/// The API version the driver sends in `VersionRequest`.
pub const API_VERSION: &str = "v1alpha1";

/// Flags, environment and directory for one provider process.
#[derive(Debug, Clone)]
pub struct ProviderBuilder {
    names: Vec<String>,
    vault_addr: Option<String>,
    hmac_key_file: Option<PathBuf>,
    health_addr: Option<String>,
    log_level: String,
    log_format: Option<String>,
    providers_dir: Option<PathBuf>,
    extra_args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// JWKs of the issuers whose tokens the provider verifies against its own fake API server.
    issuer_keys: Vec<serde_json::Value>,
    lazy_issuer_keys: bool,
}

impl Default for ProviderBuilder {
    fn default() -> Self {
        Self {
            names: Vec::new(),
            vault_addr: None,
            hmac_key_file: None,
            health_addr: None,
            log_level: "debug".to_owned(),
            log_format: None,
            providers_dir: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            issuer_keys: Vec::new(),
            lazy_issuer_keys: false,
        }
    }
}

impl ProviderBuilder {
    /// A provider with default flags: the name `courier` unless [`provider`](Self::provider) adds names.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider name (`--provider NAME`); the socket is `<providers-dir>/<name>.sock`.
    #[must_use]
    pub fn provider(mut self, name: impl Into<String>) -> Self {
        self.names.push(name.into());
        self
    }

    /// The default backend address (`--vault-addr`).
    #[must_use]
    pub fn vault_addr(mut self, addr: impl Into<String>) -> Self {
        self.vault_addr = Some(addr.into());
        self
    }

    /// The object-version key (`--hmac-key-file`).
    #[must_use]
    pub fn hmac_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.hmac_key_file = Some(path.into());
        self
    }

    /// The health endpoint (`--health-addr HOST:PORT`).
    #[must_use]
    pub fn health_addr(mut self, addr: impl Into<String>) -> Self {
        self.health_addr = Some(addr.into());
        self
    }

    /// The Prometheus endpoint (`--metrics-addr HOST:PORT`); it may equal the health address, and port 0 works:
    /// [`ProviderProcess::http_addr`] reads the bound address from the log.
    #[must_use]
    pub fn metrics_addr(self, addr: impl Into<String>) -> Self {
        self.arg("--metrics-addr").arg(addr.into())
    }

    /// How long a static read is reused for the same identity (`--static-reuse`; zero disables reuse).
    #[must_use]
    pub fn static_reuse(self, window: Duration) -> Self {
        self.arg("--static-reuse")
            .arg(format!("{}ms", window.as_millis()))
    }

    /// Where every AWS call goes (`AWS_ENDPOINT_URL`: STS, Secrets Manager and SSM alike), e.g. moto or an
    /// [`AwsProxy`](crate::AwsProxy) in front of it.
    #[must_use]
    pub fn aws_endpoint_url(self, url: impl Into<String>) -> Self {
        self.env("AWS_ENDPOINT_URL", url.into())
    }

    /// The default AWS region (`--aws-region`).
    #[must_use]
    pub fn aws_region(self, region: impl Into<String>) -> Self {
        self.arg("--aws-region").arg(region.into())
    }

    /// The EKS Pod Identity agent's credentials URL (`--pod-identity-agent-url`).
    #[must_use]
    pub fn pod_identity_agent_url(self, url: impl Into<String>) -> Self {
        self.arg("--pod-identity-agent-url").arg(url.into())
    }

    /// The kubeconfig the provider's Kubernetes client reads (`KUBECONFIG`), e.g. a
    /// [`FakeKubeApi`](crate::FakeKubeApi)'s.
    #[must_use]
    pub fn kubeconfig(self, path: impl Into<PathBuf>) -> Self {
        self.env("KUBECONFIG", path.into().into_os_string())
    }

    /// Lets the provider verify `issuer`'s tokens, as in a cluster: unless [`kubeconfig`](Self::kubeconfig)
    /// names an API server (on which the test then publishes the key itself,
    /// [`FakeKubeApi::publish_issuer_keys`]), the process gets its own [`FakeKubeApi`] serving `issuer`'s public
    /// key at `/openid/v1/jwks` ([`ProviderProcess::kube_api`]). Without it, no API server is reachable and the
    /// provider caches logins per exact token.
    #[must_use]
    pub fn trust_issuer(mut self, issuer: &crate::TokenIssuer) -> Self {
        self.issuer_keys.push(issuer.jwk().clone());
        self
    }

    /// Leaves the issuer keys to the first mount that needs them, as the provider does by default.
    /// Without it, a provider that verifies tokens is started with `--issuer-keys-at-start` and
    /// [`start`](Self::start) returns once the keys are loaded (or could not be), so tests that
    /// count logins or key reads never race the load.
    #[must_use]
    pub fn lazy_issuer_keys(mut self) -> Self {
        self.lazy_issuer_keys = true;
        self
    }

    /// `--token-verification auto|required|off`.
    #[must_use]
    pub fn token_verification(self, mode: &str) -> Self {
        self.arg("--token-verification").arg(mode)
    }

    /// `--log-level` (default `debug`).
    #[must_use]
    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }

    /// `--log-format text|json`.
    #[must_use]
    pub fn log_format(mut self, format: impl Into<String>) -> Self {
        self.log_format = Some(format.into());
        self
    }

    /// Serves in `dir` instead of a fresh temporary directory (the caller keeps it alive).
    #[must_use]
    pub fn providers_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.providers_dir = Some(dir.into());
        self
    }

    /// Adds a raw argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// Sets an environment variable for the process.
    #[must_use]
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Starts the process and waits until every socket answers `Version`.
    pub async fn start(self) -> anyhow::Result<ProviderProcess> {
        let verification_off = self
            .extra_args
            .windows(2)
            .any(|w| w[0] == "--token-verification" && w[1] == "off")
            || self.env.iter().any(|(k, v)| k == "COURIER_TOKEN_VERIFICATION" && v == "off");
        let keys_at_start = !self.issuer_keys.is_empty() && !verification_off && !self.lazy_issuer_keys;
        let builder = if keys_at_start { self.arg("--issuer-keys-at-start") } else { self };
        let mut process = builder.spawn()?;
        process.wait_ready().await?;
        if keys_at_start {
            // Tests that count logins or credential exchanges start once the keys
            // are loaded (or could not be), so a burst of first mounts never races the load.
            process.wait_for_log(&["issuer keys loaded", "cannot load the service-account issuer keys"]).await?;
        }
        Ok(process)
    }

    /// Starts the process without waiting for it, for tests that expect it to fail.
    pub fn spawn(self) -> anyhow::Result<ProviderProcess> {
        let binary = tools::provider_binary()?;
        let (providers_dir, owned_dir) = match self.providers_dir {
            Some(dir) => (dir, None),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("courier-providers-")
                    .tempdir()
                    .context("cannot create a temporary providers directory")?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let log_dir = tempfile::Builder::new()
            .prefix("courier-provider-log-")
            .tempdir()
            .context("cannot create a temporary directory for the provider's log")?;
        let log_path = log_dir.path().join("provider.log");

        let names = if self.names.is_empty() {
            vec!["courier".to_owned()]
        } else {
            self.names
        };
        let mut command = Command::new(&binary);
        command.arg("--providers-dir").arg(&providers_dir);
        for name in &names {
            command.arg("--provider").arg(name);
        }
        if let Some(addr) = &self.vault_addr {
            command.arg("--vault-addr").arg(addr);
        }
        if let Some(path) = &self.hmac_key_file {
            command.arg("--hmac-key-file").arg(path);
        }
        if let Some(addr) = &self.health_addr {
            command.arg("--health-addr").arg(addr);
        }
        command.arg("--log-level").arg(&self.log_level);
        if let Some(format) = &self.log_format {
            command.arg("--log-format").arg(format);
        }
        process::clear_inherited_env(&mut command, PROVIDER_ENV_TO_CLEAR);
        let explicit_kubeconfig = self.env.iter().any(|(k, _)| k == "KUBECONFIG");
        let kube_api = if explicit_kubeconfig || self.issuer_keys.is_empty() {
            None
        } else {
            let api = FakeKubeApi::start().context("starting the provider's fake Kubernetes API")?;
            for jwk in &self.issuer_keys {
                api.publish_jwk(jwk.clone());
            }
            Some(api)
        };
        match &kube_api {
            Some(api) => command.env("KUBECONFIG", api.kubeconfig_path()),
            // No API server: a kubeconfig that does not exist, so nothing from ~/.kube is ever read.
            None => command.env("KUBECONFIG", log_dir.path().join("no-kubeconfig")),
        };
        // The AWS SDK falls back to the EC2 instance metadata service (169.254.169.254) for credentials and
        // region, and reads ~/.aws; tests only ever contact 127.0.0.1 and bring their own configuration.
        command
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", log_dir.path().join("no-aws-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", log_dir.path().join("no-aws-credentials"));
        command
            .args(&self.extra_args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let process = ServerProcess::spawn(NAME, &mut command, &log_path, Shutdown::Kill)?;
        Ok(ProviderProcess {
            process,
            names,
            providers_dir,
            kube_api,
            _owned_dir: owned_dir,
            _log_dir: log_dir,
        })
    }
}

/// How the provider is named in start-up and exit errors.
const NAME: &str = "courier-provider";

/// A running provider; killed on drop unless it already exited.
#[derive(Debug)]
pub struct ProviderProcess {
    // First, so that the process is gone before its fake API server and directories.
    process: ServerProcess,
    names: Vec<String>,
    providers_dir: PathBuf,
    kube_api: Option<FakeKubeApi>,
    _owned_dir: Option<TempDir>,
    _log_dir: TempDir,
}

impl ProviderProcess {
    /// Shorthand for `ProviderBuilder::new()`.
    pub fn builder() -> ProviderBuilder {
        ProviderBuilder::new()
    }

    /// Starts a provider as `builder` describes and waits until it is ready.
    pub async fn start(builder: ProviderBuilder) -> anyhow::Result<Self> {
        builder.start().await
    }

    /// Waits until every socket exists and answers `Version`; fails with the log if the process exits first.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        // Sockets already answering are not asked again.
        let answered = AtomicUsize::new(0);
        let at = format!("the sockets in {}", self.providers_dir.display());
        self.process
            .wait_ready(&at, READY_TIMEOUT, process::POLL, || async {
                while let Some(name) = self.names.get(answered.load(Ordering::SeqCst)) {
                    let socket = self.socket_path(name);
                    if !socket.exists() {
                        return Probe::NotYet(format!("{} not there yet", socket.display()));
                    }
                    if let Err(error) = version_once(&socket).await {
                        return Probe::NotYet(format!("{}: {error:#}", socket.display()));
                    }
                    answered.fetch_add(1, Ordering::SeqCst);
                }
                Probe::Ready
            })
            .await
            .map_err(StartError::into_error)
    }

    /// Waits until the log holds one of `needles` (bounded by the start-up timeout); fails at once if the process
    /// exits without logging any.
    pub async fn wait_for_log(&self, needles: &[&str]) -> anyhow::Result<()> {
        self.process.wait_for_log(needles, READY_TIMEOUT).await
    }

    /// The fake API server the process got from [`ProviderBuilder::trust_issuer`], if any.
    pub fn kube_api(&self) -> Option<&FakeKubeApi> {
        self.kube_api.as_ref()
    }

    /// The provider names served.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The providers directory.
    pub fn providers_dir(&self) -> &Path {
        &self.providers_dir
    }

    /// `<providers-dir>/<name>.sock`.
    pub fn socket_path(&self, name: &str) -> PathBuf {
        self.providers_dir.join(format!("{name}.sock"))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Everything the provider wrote to stderr and stdout so far.
    pub fn logs(&self) -> String {
        self.process.logs()
    }

    /// A client on socket `name`, with `:authority` `localhost` as drivers since v1.6 send it.
    pub async fn client(&self, name: &str) -> anyhow::Result<CsiDriverProviderClient<Channel>> {
        Ok(CsiDriverProviderClient::new(
            connect_unix(&self.socket_path(name)).await?,
        ))
    }

    /// The address of the HTTP endpoints (`--health-addr` / `--metrics-addr`), as the provider logged it when it
    /// bound them ("HTTP endpoints listening", text or JSON format). With two different addresses this is the first
    /// one logged.
    pub fn http_addr(&self) -> anyhow::Result<SocketAddr> {
        let logs = self.logs();
        logged_http_addr(&logs).with_context(|| {
            format!("the provider logged no \"HTTP endpoints listening\" address; log:\n{logs}")
        })
    }

    /// `GET http://<http_addr><path>`: the status code and the body.
    pub async fn http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let url = format!("http://{}{path}", self.http_addr()?);
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(CALL_TIMEOUT)
            .build()
            .context("cannot build an HTTP client")?;
        let response = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .with_context(|| format!("GET {url}: reading the body"))?;
        Ok((status, body))
    }

    /// Scrapes `/metrics` (the provider must run with `--metrics-addr`).
    pub async fn metrics(&self) -> anyhow::Result<MetricsSnapshot> {
        let (status, body) = self.http_get("/metrics").await?;
        if status != 200 {
            bail!("/metrics answered {status}: {body}");
        }
        MetricsSnapshot::parse(&body)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.process.terminate(process::EXIT_TIMEOUT).await
    }

    /// Sends `signal` to the process (refused once it has exited and been reaped).
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        self.process.signal(signal)
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.process.wait_exit(timeout).await
    }
}

/// A channel over the unix socket at `path`, sending `:authority` `localhost`.
pub async fn connect_unix(path: &Path) -> anyhow::Result<Channel> {
    let socket = path.to_path_buf();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let socket = socket.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
    });
    let endpoint = Endpoint::from_static("http://localhost");
    tokio::time::timeout(CALL_TIMEOUT, endpoint.connect_with_connector(connector))
        .await
        .with_context(|| format!("connecting to {} timed out", path.display()))?
        .with_context(|| format!("cannot connect to {}", path.display()))
}

async fn version_once(socket: &Path) -> anyhow::Result<()> {
    let mut client = CsiDriverProviderClient::new(connect_unix(socket).await?);
    let call = client.version(VersionRequest {
        version: API_VERSION.to_owned(),
    });
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .context("Version timed out")?
        .context("Version failed")?;
    Ok(())
}

/// Finds the address in the provider's "HTTP endpoints listening" log line, in text (`address=HOST:PORT`, possibly
/// with colour codes around the `=`) or JSON (`"address":"HOST:PORT"`) format.
fn logged_http_addr(logs: &str) -> Option<SocketAddr> {
    logs.lines()
        .filter(|line| line.contains("HTTP endpoints listening"))
        .find_map(|line| {
            let plain = strip_ansi(line);
            let (_, rest) = plain
                .split_once("\"address\":\"")
                .or_else(|| plain.split_once("address="))?;
            let end = rest
                .find(|c: char| c == '"' || c.is_whitespace())
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        })
}

/// Removes terminal colour sequences (`ESC [ ... m`) from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `GET http://<addr>/metrics`, parsed; for the shim and the SecretSync controller, whose address the test chose.
pub(crate) async fn scrape_metrics(addr: SocketAddr) -> anyhow::Result<MetricsSnapshot> {
    let url = format!("http://{addr}/metrics");
    let response = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .context("cannot build an HTTP client")?
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let body = response
        .text()
        .await
        .with_context(|| format!("GET {url}: reading the body"))?;
    MetricsSnapshot::parse(&body)
}

/// One sample of the Prometheus text format: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// The sample's name (`courier_mounts_total`, `..._bucket`, ...).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A parsed `/metrics` page.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    text: String,
    samples: Vec<MetricSample>,
}

impl MetricsSnapshot {
    /// Parses the Prometheus/OpenMetrics text format (comments skipped).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            samples.push(parse_sample(line).with_context(|| format!("bad metrics line {line:?}"))?);
        }
        Ok(Self {
            text: text.to_owned(),
            samples,
        })
    }

    /// The page as served.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every sample.
    pub fn samples(&self) -> &[MetricSample] {
        &self.samples
    }

    /// The sum of the samples named `name` whose labels include every pair of `labels` (0 when none match, as
    /// for a counter never incremented).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).is_some_and(|have| have == v))
            })
            .map(|s| s.value)
            .sum()
    }

    /// Like [`sum`](Self::sum), rounded to a count.
    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let sum = self.sum(name, labels);
        if sum.is_finite() && sum > 0.0 {
            sum.round() as u64
        } else {
            0
        }
    }
}

fn parse_sample(line: &str) -> anyhow::Result<MetricSample> {
    let (head, value) = if line.contains('{') {
        let close = line.rfind('}').context("unclosed label set")?;
        (&line[..=close], line[close + 1..].trim())
    } else {
        line.split_once(' ').context("no value")?
    };
    // OpenMetrics may append a timestamp or an exemplar; the value is the first field.
    let value = value.split_whitespace().next().context("no value")?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().context("value is not a number")?,
    };
    let (name, labels) = match head.find('{') {
        Some(open) => (
            &head[..open],
            parse_labels(&head[open + 1..head.len() - 1])?,
        ),
        None => (head.trim(), BTreeMap::new()),
    };
    Ok(MetricSample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(mut rest: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if rest.is_empty() {
            return Ok(labels);
        }
        let (key, after) = rest.split_once("=\"").context("label without =\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => bail!("dangling escape"),
                },
                Some((_, c)) => value.push(c),
                None => bail!("unterminated label value"),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        rest = &after[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_logged_http_address_in_both_formats() {
        let text = "\u{1b}[2mts\u{1b}[0m INFO courier_provider: HTTP endpoints listening \u{1b}[3maddress\u{1b}[0m\u{1b}[2m=\u{1b}[0m127.0.0.1:34799\n";
        assert_eq!(logged_http_addr(text), "127.0.0.1:34799".parse().ok());
        let json = r#"{"message":"HTTP endpoints listening","address":"127.0.0.1:38323","target":"courier_provider"}"#;
        assert_eq!(logged_http_addr(json), "127.0.0.1:38323".parse().ok());
        assert_eq!(logged_http_addr("ready providers=1"), None);
    }

    #[test]
    fn parses_the_text_format() -> anyhow::Result<()> {
        let page = "# HELP a_total x\n# TYPE a_total counter\na_total{provider=\"vault\",result=\"ok\"} 3\n\
                    a_total{provider=\"vault\",result=\"denied\"} 2\nb 1.5\nh_bucket{le=\"+Inf\"} 4\n\
                    q{v=\"a\\\"b\"} 1\n# EOF\n";
        let m = MetricsSnapshot::parse(page)?;
        assert_eq!(m.count("a_total", &[]), 5);
        assert_eq!(m.count("a_total", &[("result", "ok")]), 3);
        assert_eq!(m.count("a_total", &[("result", "none")]), 0);
        assert!((m.sum("b", &[]) - 1.5).abs() < f64::EPSILON);
        assert_eq!(m.count("h_bucket", &[("le", "+Inf")]), 4);
        assert_eq!(m.count("q", &[("v", "a\"b")]), 1);
        Ok(())
    }
}
