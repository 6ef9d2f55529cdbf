//! `courier-bench`: measures the provider against a real OpenBao dev server and compares each figure with a
//! baseline measured in the same run. Run it through `scripts/bench.sh` (release builds).
//!
//! - P1: latency of one warm mount of 10 KV objects, with the default static reuse window and with `--static-reuse
//!   0s`, against the floor of the same 10 reads sent directly and concurrently with a valid token.
//! - P2: a burst of 110 concurrent mounts of 10 objects over 10 identities on a cold provider: failures, logins,
//!   wall time against 1,100 direct reads.
//! - P3: resident memory idle after start and after the burst.
//! - P4: backend requests per republish: static objects inside and outside the reuse window, and dynamic PKI
//!   certificates (without and with a lease) before their renewal point.
//! - P5: time from spawning the process to its socket answering `Version`.
//! - P6: memory under hostile input: the whole bad-input corpus (`tests/corpus`) sent to a provider
//!   [`P6_CONCURRENCY`] requests at a time; peak resident memory (VmHWM) and resident memory
//!   [`P6_SETTLE`] after the last answer.
//!
//! Everything runs on 127.0.0.1, every phase has a time limit, and every process started here is killed when the
//! bench ends, however it ends.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use courier_proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient;
use courier_proto::v1alpha1::{MountRequest, MountResponse, VersionRequest};
use courier_tests::corpus::{CorpusSetup, load_corpus, request_for};
use courier_tests::{
    API_VERSION, JwtRole, KUBERNETES_ISSUER, MountRequestBuilder, OpenBao, PodFixture,
    ProviderBuilder, ProviderProcess, TokenIssuer, connect_unix, tools,
};
use rand::Rng as _;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tonic::transport::Channel;

/// Identities (service accounts, each with its own role).
const IDENTITIES: usize = 10;
/// KV v2 secrets, one object each per mount.
const OBJECTS: usize = 10;
/// P1: timed repetitions and warm-ups.
const P1_REPEATS: usize = 300;
const P1_WARMUPS: usize = 20;
/// P2: mounts in the burst.
const P2_MOUNTS: usize = 110;
/// P2 floor: requests in flight at once, as the provider's default `--backend-concurrency`.
const P2_FLOOR_CONCURRENCY: usize = 64;
/// P5: provider starts.
const P5_STARTS: usize = 10;
/// P5: how often the socket is polled.
const P5_POLL: Duration = Duration::from_millis(1);
/// P5: longest wait for one start.
const P5_START_LIMIT: Duration = Duration::from_secs(10);
/// The provider's default static reuse window, plus margin, for the "outside the window" republish.
const OUTSIDE_REUSE_WINDOW: Duration = Duration::from_millis(5_500);
/// P6: corpus requests in flight at once.
const P6_CONCURRENCY: usize = 4;
/// P6: how long after the last answer the settled RSS is read.
const P6_SETTLE: Duration = Duration::from_secs(10);
/// P6: client deadline of one corpus request (the corpus provider's own mount timeout is 8 s).
const P6_CASE_LIMIT: Duration = Duration::from_secs(10);
/// Time limit of each phase.
const PHASE_LIMIT: Duration = Duration::from_secs(180);
/// Time limit of one mount.
const MOUNT_LIMIT: Duration = Duration::from_secs(60);

const JWT_MOUNT: &str = "jwt";
const NAMESPACE: &str = "bench";
const POLICY: &str = "bench";
const PKI_MOUNT: &str = "pki";
const PKI_DOMAIN: &str = "bench.internal";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let provider_binary = tools::provider_binary()?;
    print_machine_facts(&provider_binary);
    // `courier-bench p6` measures P6 alone (no OpenBao needed), for allocator and memory work.
    if std::env::args().nth(1).as_deref() == Some("p6") {
        let p6 = phase("P6 hostile corpus", measure_corpus_memory()).await?;
        let mut table = Table::default();
        p6_rows(&mut table, &p6);
        println!();
        table.print();
        println!();
        p6_note(&p6);
        return Ok(());
    }

    let env = phase("setup", Env::start()).await?;
    // `courier-bench p3` reads the idle footprint alone (`p3 hold` keeps the provider up for inspection).
    if std::env::args().nth(1).as_deref() == Some("p3") {
        let provider = env.provider(None).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pid = provider.pid();
        println!(
            "P3 idle: VmRSS {:.1} MiB (anonymous {:.1} MiB, file-backed {:.1} MiB), pid {pid}",
            proc_status_mib(pid, "VmRSS")?,
            proc_status_mib(pid, "RssAnon")?,
            proc_status_mib(pid, "RssFile")?,
        );
        if std::env::args().nth(2).as_deref() == Some("hold") {
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        return Ok(());
    }
    // `courier-bench p1` measures P1 alone (both settings), for profiling the mount path.
    if std::env::args().nth(1).as_deref() == Some("p1") {
        for (label, reuse) in [("default settings", None), ("--static-reuse 0s", Some("0s"))] {
            let p1 = phase("P1", measure_warm_mount(&env, reuse)).await?;
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "P1 ({label}): mount p50 {:.2} ms, floor p50 {:.2} ms, ratio {:.2}; p99 {:.2} / {:.2} ms; \
                 inside the provider {:.2} ms, one backend read {:.2} ms; CPU per mount: provider {:.2} ms, \
                 client {:.2} ms, OpenBao {:.2} ms; CPU per floor round {:.2} ms, OpenBao {:.2} ms",
                ms(p1.mount.p50),
                ms(p1.floor.p50),
                ms(p1.mount.p50) / ms(p1.floor.p50),
                ms(p1.mount.p99),
                ms(p1.floor.p99),
                ms(p1.server_mean),
                p1.read_mean.map_or(0.0, ms),
                ms(p1.cpu.provider),
                ms(p1.cpu.client),
                ms(p1.cpu.server_mount),
                ms(p1.cpu.floor),
                ms(p1.cpu.server_floor),
            );
        }
        return Ok(());
    }
    let mut table = Table::default();

    let p5 = phase("P5 start-up", measure_startup(&provider_binary)).await?;
    let p1_default = phase("P1 (default settings)", measure_warm_mount(&env, None)).await?;
    let p1_no_reuse = phase(
        "P1 (--static-reuse 0s)",
        measure_warm_mount(&env, Some("0s")),
    )
    .await?;
    let burst = phase("P2/P3/P4", measure_burst_and_republish(&env)).await?;
    // Last: the corpus loads the CPU, and runs on its own provider.
    let p6 = phase("P6 hostile corpus", measure_corpus_memory()).await?;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (label, p1) in [
        ("default settings", &p1_default),
        ("--static-reuse 0s", &p1_no_reuse),
    ] {
        let (mount, floor) = (&p1.mount, &p1.floor);
        table.row(
            &format!("P1 warm mount p50, 10 KV objects ({label})"),
            format!("{:.2} ms", ms(mount.p50)),
            format!("{:.2} ms (10 direct GETs)", ms(floor.p50)),
            Some(ms(mount.p50) / ms(floor.p50)),
            "ratio ≤ 1.2",
            Some(ms(mount.p50) / ms(floor.p50) <= 1.2),
        );
        table.row(
            &format!("P1 warm mount p99 ({label})"),
            format!("{:.2} ms", ms(mount.p99)),
            format!("{:.2} ms (10 direct GETs)", ms(floor.p99)),
            Some(ms(mount.p99) / ms(floor.p99)),
            "—",
            None,
        );
    }
    table.row(
        "P2 burst failures (110 mounts × 10 objects, 10 identities, cold)",
        burst.failures.to_string(),
        "—".to_owned(),
        None,
        "0",
        Some(burst.failures == 0),
    );
    table.row(
        "P2 burst logins",
        burst.logins.to_string(),
        "—".to_owned(),
        None,
        "10",
        Some(burst.logins == IDENTITIES as u64),
    );
    table.row(
        "P2 burst wall time",
        format!("{:.1} ms", ms(burst.wall)),
        format!("{:.1} ms (1,100 direct reads)", ms(burst.floor_wall)),
        Some(ms(burst.wall) / ms(burst.floor_wall)),
        "ratio ≤ 2",
        Some(ms(burst.wall) / ms(burst.floor_wall) <= 2.0),
    );
    table.row(
        "P3 RSS idle after start",
        format!("{:.1} MiB", burst.rss_idle_mib),
        "—".to_owned(),
        None,
        "≤ 10 MiB",
        Some(burst.rss_idle_mib <= 10.0),
    );
    table.row(
        "P3 RSS after P2 (peak VmHWM in notes)",
        format!("{:.1} MiB", burst.rss_after_mib),
        "—".to_owned(),
        None,
        "≤ 32 MiB",
        Some(burst.rss_after_mib <= 32.0),
    );
    table.row(
        "P4a republish of 10 static objects inside the reuse window: backend requests per object",
        format!("{:.2}", burst.republish_inside as f64 / OBJECTS as f64),
        "—".to_owned(),
        None,
        "≤ 1",
        Some(burst.republish_inside <= OBJECTS as u64),
    );
    table.row(
        "P4a republish of 10 static objects outside the reuse window: backend requests per object",
        format!("{:.2}", burst.republish_outside as f64 / OBJECTS as f64),
        "—".to_owned(),
        None,
        "≤ 1",
        Some(burst.republish_outside <= OBJECTS as u64),
    );
    table.row(
        "P4b republish of a PKI certificate (pki/issue, no lease) before 2/3 of its validity: backend requests",
        burst.republish_pki.to_string(),
        format!("{} on first mount", burst.first_pki),
        None,
        "0",
        Some(burst.republish_pki == 0),
    );
    table.row(
        "P4b republish of a leased PKI certificate (generate_lease) before 2/3 of its lease: backend requests",
        burst.republish_leased.to_string(),
        format!("{} on first mount", burst.first_leased),
        None,
        "0",
        Some(burst.republish_leased == 0),
    );
    table.row(
        "P5 spawn → socket answers Version (median of 10)",
        format!("{:.1} ms", ms(p5.median)),
        "—".to_owned(),
        None,
        "≤ 50 ms",
        Some(ms(p5.median) <= 50.0),
    );

    p6_rows(&mut table, &p6);

    println!();
    table.print();
    println!();
    println!("Notes:");
    println!(
        "- P1 floor: the same {OBJECTS} GETs sent concurrently to OpenBao on one keep-alive reqwest client with a valid \
         token of the same identity, bodies parsed as JSON; {P1_REPEATS} rounds after {P1_WARMUPS} warm-ups, each round \
         right after one timed mount, so mount and floor see the same load. With the default settings warm mounts are \
         served from the 5 s static reuse window; --static-reuse 0s is the honest backend path."
    );
    for (label, p1) in [
        ("default settings", &p1_default),
        ("--static-reuse 0s", &p1_no_reuse),
    ] {
        println!(
            "- P1 ({label}): {} backend requests during the {P1_REPEATS} timed mounts; mean mount time inside the \
             provider {:.2} ms{}. CPU per mount: provider {:.2} ms, client {:.2} ms, OpenBao {:.2} ms; per floor \
             round: client {:.2} ms, OpenBao {:.2} ms (on this machine all of them share its cores).",
            p1.backend_requests,
            ms(p1.server_mean),
            p1.read_mean.map_or_else(String::new, |d| format!(
                ", mean backend read inside the provider {:.2} ms",
                ms(d)
            )),
            ms(p1.cpu.provider),
            ms(p1.cpu.client),
            ms(p1.cpu.server_mount),
            ms(p1.cpu.floor),
            ms(p1.cpu.server_floor),
        );
    }
    println!(
        "- P2 floor: {} GETs with {IDENTITIES} tokens, at most {P2_FLOOR_CONCURRENCY} in flight (the provider's default \
         --backend-concurrency), on one fresh keep-alive client; {} of them failed.",
        P2_MOUNTS * OBJECTS,
        burst.floor_failures
    );
    println!(
        "- P2 provider backend requests: {} (logins {}, reads {}); read lookups hit/shared/miss {}; mount p50/p99 \
         inside the burst {:.1}/{:.1} ms.",
        burst.backend_requests,
        burst.logins,
        burst.reads,
        burst.read_lookups,
        ms(burst.mount_p50),
        ms(burst.mount_p99)
    );
    println!(
        "- P2 token verification: every token verified against the issuer keys the fake API server publishes \
         (/openid/v1/jwks read {} time(s) by the provider).",
        burst.key_reads
    );
    println!(
        "- P3 idle RSS split: anonymous {:.1} MiB, file-backed {:.1} MiB (pages of the {:.1} MiB binary); after P2: \
         anonymous {:.1} MiB, file-backed {:.1} MiB; peak (VmHWM) {:.1} MiB.",
        burst.idle_anon_mib,
        burst.idle_file_mib,
        std::fs::metadata(&provider_binary).map_or(0.0, |m| m.len() as f64 / 1_048_576.0),
        burst.after_anon_mib,
        burst.after_file_mib,
        burst.hwm_after_mib
    );
    p6_note(&p6);
    println!(
        "- P5 starts (ms): {}.",
        p5.samples
            .iter()
            .map(|d| format!("{:.1}", ms(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "- Total bench time {:.1} s.",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs `future` with the phase time limit, naming the phase on failure.
async fn phase<T>(
    name: &str,
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    eprintln!("bench: {name} ...");
    let started = Instant::now();
    let result = tokio::time::timeout(PHASE_LIMIT, future)
        .await
        .with_context(|| format!("{name} did not finish within {PHASE_LIMIT:?}"))?
        .with_context(|| format!("{name} failed"));
    eprintln!(
        "bench: {name} took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    result
}

fn print_machine_facts(provider_binary: &Path) {
    let nproc = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let provider_profile = provider_binary
        .parent()
        .and_then(Path::file_name)
        .map_or_else(
            || "unknown".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
    println!("## Courier benchmark");
    println!();
    println!("- machine: nproc {nproc}, CPU {cpu}");
    println!("- bench build profile: {profile}");
    println!(
        "- provider binary: {} (directory {provider_profile})",
        provider_binary.display()
    );
}

/// The OpenBao server, its configuration, and the identities.
struct Env {
    bao: OpenBao,
    issuer: TokenIssuer,
    identities: Vec<Identity>,
    objects_yaml: String,
    paths: Vec<String>,
}

/// A service account (its pods share the uid) and its role.
struct Identity {
    template: PodFixture,
    role: String,
}

impl Identity {
    fn pod(&self) -> PodFixture {
        PodFixture::new(self.template.namespace(), self.template.service_account())
            .with_service_account_uid(self.template.service_account_uid())
    }
}

impl Env {
    async fn start() -> anyhow::Result<Self> {
        let bao = OpenBao::start().await.context("starting OpenBao")?;
        let issuer = TokenIssuer::new()?;
        bao.enable_jwt_auth(
            JWT_MOUNT,
            &[issuer.public_key_pem().to_owned()],
            KUBERNETES_ISSUER,
        )
        .await?;
        bao.write_policy(
            POLICY,
            &format!(
                r#"
path "secret/data/bench/*" {{ capabilities = ["read"] }}
path "{PKI_MOUNT}/issue/*" {{ capabilities = ["create", "update"] }}
"#
            ),
        )
        .await?;
        let mut identities = Vec::with_capacity(IDENTITIES);
        for i in 0..IDENTITIES {
            let service_account = format!("app-{i}");
            let role = format!("bench-{i}");
            bao.jwt_role(
                JWT_MOUNT,
                &JwtRole {
                    name: role.clone(),
                    bound_audiences: vec!["vault".to_owned()],
                    namespace: NAMESPACE.to_owned(),
                    service_account: service_account.clone(),
                    policies: vec![POLICY.to_owned()],
                },
            )
            .await?;
            identities.push(Identity {
                template: PodFixture::new(NAMESPACE, service_account),
                role,
            });
        }
        let mut paths = Vec::with_capacity(OBJECTS);
        let mut objects_yaml = String::new();
        for i in 0..OBJECTS {
            let value = format!("{:064x}", rand::rng().random::<u128>());
            bao.kv2_put(
                "secret",
                &format!("bench/s{i}"),
                json!({"value": value, "user": format!("user-{i}")}),
            )
            .await?;
            paths.push(format!("secret/data/bench/s{i}"));
            objects_yaml.push_str(&format!(
                "- objectName: \"obj-{i}\"\n  secretPath: \"secret/data/bench/s{i}\"\n  secretKey: \"value\"\n"
            ));
        }
        bao.enable_pki(PKI_MOUNT, "Courier Bench Root").await?;
        bao.pki_role(PKI_MOUNT, "web", PKI_DOMAIN).await?;
        bao.api(
            Method::POST,
            &format!("{PKI_MOUNT}/roles/web-leased"),
            Some(json!({
                "allowed_domains": [PKI_DOMAIN],
                "allow_subdomains": true,
                "key_type": "ec",
                "key_bits": 256,
                "max_ttl": "24h",
                "generate_lease": true,
            })),
        )
        .await?;
        Ok(Self {
            bao,
            issuer,
            identities,
            objects_yaml,
            paths,
        })
    }

    /// A mount request of `pod` (of identity `i`) for the 10 KV objects.
    fn kv_request(&self, i: usize, pod: &PodFixture) -> anyhow::Result<MountRequestBuilder> {
        self.request(i, pod, &self.objects_yaml)
    }

    fn request(
        &self,
        i: usize,
        pod: &PodFixture,
        objects_yaml: &str,
    ) -> anyhow::Result<MountRequestBuilder> {
        Ok(MountRequestBuilder::new(pod)
            .parameter("roleName", &self.identities[i].role)
            .parameter("vaultAddress", self.bao.addr())
            .parameter("vaultAuthMountPath", JWT_MOUNT)
            .parameter("objects", objects_yaml)
            .token("vault", self.issuer.token(pod, "vault")?))
    }

    /// Logs identity `i` in directly and returns its Vault token.
    async fn direct_token(&self, client: &reqwest::Client, i: usize) -> anyhow::Result<String> {
        let pod = self.identities[i].pod();
        let jwt = self.issuer.token(&pod, "vault")?;
        let response: Value = client
            .post(format!("{}/v1/auth/{JWT_MOUNT}/login", self.bao.addr()))
            .json(&json!({"role": self.identities[i].role, "jwt": jwt.jwt()}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        response["auth"]["client_token"]
            .as_str()
            .map(str::to_owned)
            .context("login answered without a client token")
    }

    /// A provider on this server: release binary as found by [`tools::provider_binary`], metrics on, `info` logs.
    async fn provider(&self, static_reuse: Option<&str>) -> anyhow::Result<ProviderProcess> {
        let mut builder = ProviderBuilder::new()
            .provider("vault")
            .vault_addr(self.bao.addr())
            .trust_issuer(&self.issuer)
            // As deployed: the keys are read by the first mount (P2's cold burst), not at start.
            .lazy_issuer_keys()
            .metrics_addr("127.0.0.1:0")
            .log_level("info");
        if let Some(window) = static_reuse {
            builder = builder.arg("--static-reuse").arg(window);
        }
        builder.start().await
    }
}

/// A keep-alive HTTP client for direct reads, never through a proxy.
fn direct_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(MOUNT_LIMIT)
        .build()
        .context("cannot build an HTTP client")
}

async fn mount_once(
    client: &mut CsiDriverProviderClient<Channel>,
    request: MountRequest,
) -> anyhow::Result<MountResponse> {
    let mut request = tonic::Request::new(request);
    request.set_timeout(MOUNT_LIMIT);
    let response = tokio::time::timeout(MOUNT_LIMIT, client.mount(request))
        .await
        .context("mount timed out")?
        .map_err(|s| anyhow::anyhow!("mount failed: {:?}: {}", s.code(), s.message()))?;
    Ok(response.into_inner())
}

/// p50 and p99 of samples.
struct Percentiles {
    p50: Duration,
    p99: Duration,
}

fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort();
    let at = |q: f64| {
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        samples[rank - 1]
    };
    Percentiles {
        p50: at(0.50),
        p99: at(0.99),
    }
}

struct WarmMount {
    mount: Percentiles,
    floor: Percentiles,
    backend_requests: u64,
    /// Mean mount time as the provider measured it (from its histogram).
    server_mean: Duration,
    /// Mean latency of one backend read as the provider measured it.
    read_mean: Option<Duration>,
    /// CPU time per timed mount and per floor round.
    cpu: CpuPerRound,
}

/// CPU time spent per P1 round: by the provider for one mount, by this process sending that mount (the driver's
/// side), and by this process sending the floor's direct reads.
struct CpuPerRound {
    provider: Duration,
    client: Duration,
    floor: Duration,
    /// OpenBao's CPU time answering one mount's reads, and one floor round's.
    server_mount: Duration,
    server_floor: Duration,
}

/// CPU time used so far by all live threads of process `pid`, from `/proc/<pid>/task/*/schedstat` (nanoseconds,
/// unlike the clock ticks of `/proc/<pid>/stat`).
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).with_context(|| format!("no threads of {pid}"))? {
        let path = task?.path().join("schedstat");
        // A thread can end between the listing and the read.
        let Ok(stat) = std::fs::read_to_string(&path) else { continue };
        let ns: u64 = stat
            .split_whitespace()
            .next()
            .context("empty schedstat")?
            .parse()
            .with_context(|| format!("{} is not a number", path.display()))?;
        total += ns;
    }
    Ok(Duration::from_nanos(total))
}

/// P1: one identity's mount of 10 objects, repeated on a warm provider, interleaved with its floor (the same 10
/// GETs sent directly), so both see the same machine load.
async fn measure_warm_mount(env: &Env, static_reuse: Option<&str>) -> anyhow::Result<WarmMount> {
    let provider = env.provider(static_reuse).await?;
    let mut client = provider.client("vault").await?;
    let pod = env.identities[0].pod();
    let request = env.kv_request(0, &pod)?.build()?;
    let direct = DirectReads::new(env).await?;
    for _ in 0..P1_WARMUPS {
        mount_once(&mut client, request.clone()).await?;
        direct.round().await?;
    }
    let before = provider.metrics().await?;
    let me = std::process::id();
    let provider_cpu = cpu_time(provider.pid())?;
    let bao = env.bao.pid();
    let (mut client_cpu, mut floor_cpu) = (Duration::ZERO, Duration::ZERO);
    let (mut bao_mount_cpu, mut bao_floor_cpu) = (Duration::ZERO, Duration::ZERO);
    let mut mounts = Vec::with_capacity(P1_REPEATS);
    let mut floor = Vec::with_capacity(P1_REPEATS);
    for _ in 0..P1_REPEATS {
        let request = request.clone();
        let bao_cpu = cpu_time(bao)?;
        let cpu = cpu_time(me)?;
        let started = Instant::now();
        let response = mount_once(&mut client, request).await?;
        mounts.push(started.elapsed());
        client_cpu += cpu_time(me)?.saturating_sub(cpu);
        bao_mount_cpu += cpu_time(bao)?.saturating_sub(bao_cpu);
        if response.files.len() != OBJECTS {
            bail!("a mount returned {} files", response.files.len());
        }
        let bao_cpu = cpu_time(bao)?;
        let cpu = cpu_time(me)?;
        let started = Instant::now();
        direct.round().await?;
        floor.push(started.elapsed());
        floor_cpu += cpu_time(me)?.saturating_sub(cpu);
        bao_floor_cpu += cpu_time(bao)?.saturating_sub(bao_cpu);
    }
    let provider_cpu = cpu_time(provider.pid())?.saturating_sub(provider_cpu);
    let after = provider.metrics().await?;
    let delta =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) - before.sum(name, labels);
    let backend_requests = after.count("courier_backend_requests_total", &[])
        - before.count("courier_backend_requests_total", &[]);
    let server_mean = Duration::from_secs_f64(
        delta("courier_mount_duration_seconds_sum", &[])
            / delta("courier_mount_duration_seconds_count", &[]).max(1.0),
    );
    let read = [("operation", "read")];
    let reads = delta("courier_backend_request_duration_seconds_count", &read);
    let read_mean = (reads > 0.0).then(|| {
        Duration::from_secs_f64(
            delta("courier_backend_request_duration_seconds_sum", &read) / reads,
        )
    });
    Ok(WarmMount {
        mount: percentiles(mounts),
        floor: percentiles(floor),
        backend_requests,
        server_mean,
        read_mean,
        cpu: CpuPerRound {
            provider: provider_cpu / P1_REPEATS as u32,
            client: client_cpu / P1_REPEATS as u32,
            floor: floor_cpu / P1_REPEATS as u32,
            server_mount: bao_mount_cpu / P1_REPEATS as u32,
            server_floor: bao_floor_cpu / P1_REPEATS as u32,
        },
    })
}

/// The P1 floor: the mount's 10 GETs sent concurrently and directly to OpenBao on one keep-alive client, with a
/// token of the same identity; each body is read and parsed as JSON, as the provider does.
struct DirectReads {
    client: reqwest::Client,
    token: String,
    urls: Vec<String>,
}

impl DirectReads {
    async fn new(env: &Env) -> anyhow::Result<Self> {
        let client = direct_client()?;
        let token = env.direct_token(&client, 0).await?;
        let urls = env
            .paths
            .iter()
            .map(|p| format!("{}/v1/{p}", env.bao.addr()))
            .collect();
        Ok(Self {
            client,
            token,
            urls,
        })
    }

    async fn round(&self) -> anyhow::Result<()> {
        let mut set = tokio::task::JoinSet::new();
        for url in &self.urls {
            let request = self
                .client
                .get(url)
                .header("X-Vault-Token", &self.token)
                .header("X-Vault-Request", "true");
            set.spawn(async move {
                let body = request.send().await?.error_for_status()?.bytes().await?;
                let value: Value = serde_json::from_slice(&body)?;
                anyhow::Ok(value)
            });
        }
        while let Some(done) = set.join_next().await {
            done??;
        }
        Ok(())
    }
}

struct Burst {
    failures: usize,
    logins: u64,
    /// Reads of the issuer's keys by the provider (tokens are verified against them).
    key_reads: usize,
    reads: u64,
    backend_requests: u64,
    read_lookups: String,
    wall: Duration,
    mount_p50: Duration,
    mount_p99: Duration,
    floor_wall: Duration,
    floor_failures: usize,
    rss_idle_mib: f64,
    rss_after_mib: f64,
    hwm_after_mib: f64,
    idle_anon_mib: f64,
    idle_file_mib: f64,
    after_anon_mib: f64,
    after_file_mib: f64,
    republish_inside: u64,
    republish_outside: u64,
    first_pki: u64,
    republish_pki: u64,
    first_leased: u64,
    republish_leased: u64,
}

/// Reads a field such as `VmRSS` from `/proc/<pid>/status`, in MiB.
fn proc_status_mib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
    let kib: f64 = line
        .split_whitespace()
        .nth(1)
        .context("no value")?
        .parse()
        .context("not a number")?;
    Ok(kib / 1024.0)
}

/// Total backend requests the provider has sent.
async fn backend_requests(provider: &ProviderProcess) -> anyhow::Result<u64> {
    Ok(provider
        .metrics()
        .await?
        .count("courier_backend_requests_total", &[]))
}

/// P2 on a cold provider, P3 around it, then P4 on the same (now warm) provider.
async fn measure_burst_and_republish(env: &Env) -> anyhow::Result<Burst> {
    let provider = env.provider(None).await?;
    // Let start-up allocations settle before reading the idle footprint.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_idle_mib = proc_status_mib(provider.pid(), "VmRSS")?;
    let idle_anon_mib = proc_status_mib(provider.pid(), "RssAnon")?;
    let idle_file_mib = proc_status_mib(provider.pid(), "RssFile")?;

    // P2: 110 mounts, 11 pods per identity, released together over one connection.
    let mut requests = Vec::with_capacity(P2_MOUNTS);
    for n in 0..P2_MOUNTS {
        let i = n % IDENTITIES;
        requests.push(env.kv_request(i, &env.identities[i].pod())?.build()?);
    }
    let client = provider.client("vault").await?;
    let (go_tx, go_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(P2_MOUNTS);
    for request in requests {
        let mut client = client.clone();
        let mut go = go_rx.clone();
        tasks.push(tokio::spawn(async move {
            go.wait_for(|go| *go).await.ok();
            let started = Instant::now();
            let result = mount_once(&mut client, request).await;
            (started.elapsed(), result.map(|r| r.files.len()))
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    go_tx.send(true).ok();
    let mut failures = 0;
    let mut latencies = Vec::with_capacity(P2_MOUNTS);
    for task in tasks {
        let (took, result) = task.await.context("a mount task panicked")?;
        latencies.push(took);
        match result {
            Ok(files) if files == OBJECTS => {}
            Ok(files) => {
                failures += 1;
                eprintln!("bench: a burst mount returned {files} files");
            }
            Err(e) => {
                failures += 1;
                eprintln!("bench: a burst mount failed: {e:#}");
            }
        }
    }
    let wall = started.elapsed();
    let rss_after_mib = proc_status_mib(provider.pid(), "VmRSS")?;
    let hwm_after_mib = proc_status_mib(provider.pid(), "VmHWM")?;
    let after_anon_mib = proc_status_mib(provider.pid(), "RssAnon")?;
    let after_file_mib = proc_status_mib(provider.pid(), "RssFile")?;
    let metrics = provider.metrics().await?;
    let logins = metrics.count("courier_logins_total", &[("result", "ok")]);
    let reads = metrics.count("courier_backend_requests_total", &[("operation", "read")]);
    let backend_total = metrics.count("courier_backend_requests_total", &[]);
    let lookups = |r| {
        metrics.count(
            "courier_cache_lookups_total",
            &[("cache", "read"), ("result", r)],
        )
    };
    let read_lookups = format!(
        "{}/{}/{}",
        lookups("hit"),
        lookups("shared"),
        lookups("miss")
    );
    let burst_latency = percentiles(latencies);

    // P2 floor: 1,100 direct reads with the identities' tokens.
    let (floor_wall, floor_failures) = burst_floor(env).await?;

    // P4a: a pod mounts, then the driver republishes with the versions it recorded.
    let mut client = provider.client("vault").await?;
    let pod = env.identities[1].pod();
    let first = mount_once(&mut client, env.kv_request(1, &pod)?.build()?).await?;
    let republish = |response: &MountResponse| -> anyhow::Result<MountRequest> {
        let mut builder = env.kv_request(1, &pod)?;
        for v in &response.object_version {
            builder = builder.current_object_version(&v.id, &v.version);
        }
        builder.build()
    };
    let before = backend_requests(&provider).await?;
    let inside = mount_once(&mut client, republish(&first)?).await?;
    let republish_inside = backend_requests(&provider).await? - before;
    tokio::time::sleep(OUTSIDE_REUSE_WINDOW).await;
    let before = backend_requests(&provider).await?;
    mount_once(&mut client, republish(&inside)?).await?;
    let republish_outside = backend_requests(&provider).await? - before;

    // P4b: certificates, issued by a PUT; a republish before 2/3 of their life sends nothing.
    let mut pki = BTreeMap::new();
    for role in ["web", "web-leased"] {
        let objects = format!(
            "- objectName: \"tls.crt\"\n  secretPath: \"{PKI_MOUNT}/issue/{role}\"\n  secretKey: \"certificate\"\n  \
             method: \"PUT\"\n  secretArgs: {{\"common_name\": \"app.{PKI_DOMAIN}\", \"ttl\": \"1h\"}}\n\
             - objectName: \"tls.key\"\n  secretPath: \"{PKI_MOUNT}/issue/{role}\"\n  secretKey: \"private_key\"\n  \
             method: \"PUT\"\n  secretArgs: {{\"common_name\": \"app.{PKI_DOMAIN}\", \"ttl\": \"1h\"}}\n"
        );
        let pod = env.identities[2].pod();
        let before = backend_requests(&provider).await?;
        let first = mount_once(&mut client, env.request(2, &pod, &objects)?.build()?).await?;
        let first_requests = backend_requests(&provider).await? - before;
        let mut builder = env.request(2, &pod, &objects)?;
        for v in &first.object_version {
            builder = builder.current_object_version(&v.id, &v.version);
        }
        let before = backend_requests(&provider).await?;
        let again = mount_once(&mut client, builder.build()?).await?;
        let republish_requests = backend_requests(&provider).await? - before;
        if again.object_version != first.object_version {
            eprintln!("bench: the {role} certificate changed on republish");
        }
        pki.insert(role, (first_requests, republish_requests));
    }
    let (first_pki, republish_pki) = pki["web"];
    let (first_leased, republish_leased) = pki["web-leased"];

    let key_reads = provider.kube_api().map_or(0, courier_tests::FakeKubeApi::jwks_reads);
    Ok(Burst {
        failures,
        logins,
        key_reads,
        reads,
        backend_requests: backend_total,
        read_lookups,
        wall,
        mount_p50: burst_latency.p50,
        mount_p99: burst_latency.p99,
        floor_wall,
        floor_failures,
        rss_idle_mib,
        rss_after_mib,
        hwm_after_mib,
        idle_anon_mib,
        idle_file_mib,
        after_anon_mib,
        after_file_mib,
        republish_inside,
        republish_outside,
        first_pki,
        republish_pki,
        first_leased,
        republish_leased,
    })
}

/// The P6 rows of the table.
fn p6_rows(table: &mut Table, p6: &CorpusMemory) {
    table.row(
        &format!(
            "P6 peak RSS (VmHWM) over the hostile corpus ({} requests, {P6_CONCURRENCY} in flight)",
            p6.cases
        ),
        format!("{:.1} MiB", p6.peak_mib),
        format!("{:.1} MiB idle before", p6.before_mib),
        None,
        "≤ 48 MiB",
        Some(p6.peak_mib <= 48.0),
    );
    table.row(
        &format!("P6 RSS {} s after the corpus", P6_SETTLE.as_secs()),
        format!("{:.1} MiB", p6.settled_mib),
        format!("{:.1} MiB at the last answer", p6.at_end_mib),
        None,
        "≤ 32 MiB",
        Some(p6.settled_mib <= 32.0),
    );
}

/// The P6 note.
fn p6_note(p6: &CorpusMemory) {
    println!(
        "- P6: {} corpus requests in {:.1} s, {} answered with the code the corpus expects, {} otherwise ({}); \
         settled RSS split: anonymous {:.1} MiB, file-backed {:.1} MiB.",
        p6.cases,
        p6.wall.as_secs_f64(),
        p6.expected,
        p6.cases - p6.expected,
        if p6.unexpected.is_empty() {
            "none".to_owned()
        } else {
            p6.unexpected.join(", ")
        },
        p6.settled_anon_mib,
        p6.settled_file_mib
    );
}

struct CorpusMemory {
    cases: usize,
    expected: usize,
    /// The first few cases answered otherwise than the corpus expects (name and code).
    unexpected: Vec<String>,
    wall: Duration,
    before_mib: f64,
    peak_mib: f64,
    at_end_mib: f64,
    settled_mib: f64,
    settled_anon_mib: f64,
    settled_file_mib: f64,
}

/// P6: every corpus case, [`P6_CONCURRENCY`] at a time over one connection per socket (as the driver multiplexes
/// mounts), to a provider whose backends are closed ports, as the reliability suite runs it; then the peak and,
/// [`P6_SETTLE`] later, the resident memory.
async fn measure_corpus_memory() -> anyhow::Result<CorpusMemory> {
    let cases = Arc::new(load_corpus()?);
    let setup = CorpusSetup::new()?;
    let provider = setup.provider_builder()?.log_level("info").start().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before_mib = proc_status_mib(provider.pid(), "VmRSS")?;
    let mut clients = BTreeMap::new();
    for case in cases.iter() {
        if !clients.contains_key(case.socket.as_str()) {
            clients.insert(case.socket.clone(), provider.client(&case.socket).await?);
        }
    }
    let issuer = TokenIssuer::new()?;
    let limit = Arc::new(Semaphore::new(P6_CONCURRENCY));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for (n, case) in cases.iter().enumerate() {
        let (request, _tokens) = request_for(case, n, &issuer)?;
        let mut client = clients[case.socket.as_str()].clone();
        let permit = Arc::clone(&limit).acquire_owned().await?;
        let cases = Arc::clone(&cases);
        set.spawn(async move {
            let mut call = tonic::Request::new(request);
            call.set_timeout(P6_CASE_LIMIT);
            let answer = tokio::time::timeout(P6_CASE_LIMIT, client.mount(call)).await;
            drop(permit);
            let code = match answer {
                Err(_) => None,
                Ok(Ok(_)) => Some(tonic::Code::Ok),
                Ok(Err(status)) => Some(status.code()),
            };
            let case = &cases[n];
            let expected = courier_tests::corpus::code_named(&case.expect_code).ok();
            (
                code.is_some() && code == expected,
                format!("{} {code:?}", case.name),
            )
        });
    }
    let mut expected = 0;
    let mut unexpected = Vec::new();
    while let Some(done) = set.join_next().await {
        let (as_expected, label) = done.context("a corpus task panicked")?;
        if as_expected {
            expected += 1;
        } else if unexpected.len() < 5 {
            unexpected.push(label);
        }
    }
    let wall = started.elapsed();
    let pid = provider.pid();
    let at_end_mib = proc_status_mib(pid, "VmRSS")?;
    tokio::time::sleep(P6_SETTLE).await;
    Ok(CorpusMemory {
        cases: cases.len(),
        expected,
        unexpected,
        wall,
        before_mib,
        peak_mib: proc_status_mib(pid, "VmHWM")?,
        at_end_mib,
        settled_mib: proc_status_mib(pid, "VmRSS")?,
        settled_anon_mib: proc_status_mib(pid, "RssAnon")?,
        settled_file_mib: proc_status_mib(pid, "RssFile")?,
    })
}

/// 1,100 GETs (the burst's 110 mounts × 10 objects) with each identity's token, at most 64 in flight.
async fn burst_floor(env: &Env) -> anyhow::Result<(Duration, usize)> {
    let login_client = direct_client()?;
    let mut tokens = Vec::with_capacity(IDENTITIES);
    for i in 0..IDENTITIES {
        tokens.push(env.direct_token(&login_client, i).await?);
    }
    drop(login_client);
    let client = direct_client()?;
    let limit = Arc::new(Semaphore::new(P2_FLOOR_CONCURRENCY));
    let (go_tx, go_rx) = watch::channel(false);
    let mut set = tokio::task::JoinSet::new();
    for n in 0..P2_MOUNTS * OBJECTS {
        let token = tokens[(n / OBJECTS) % IDENTITIES].clone();
        let url = format!("{}/v1/{}", env.bao.addr(), env.paths[n % OBJECTS]);
        let client = client.clone();
        let limit = Arc::clone(&limit);
        let mut go = go_rx.clone();
        set.spawn(async move {
            go.wait_for(|go| *go).await.ok();
            let _permit = limit.acquire().await?;
            let body = client
                .get(url)
                .header("X-Vault-Token", token)
                .header("X-Vault-Request", "true")
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            let _value: Value = serde_json::from_slice(&body)?;
            anyhow::Ok(())
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    go_tx.send(true).ok();
    let mut failures = 0;
    while let Some(done) = set.join_next().await {
        if !matches!(done, Ok(Ok(()))) {
            failures += 1;
        }
    }
    Ok((started.elapsed(), failures))
}

struct Startup {
    median: Duration,
    samples: Vec<Duration>,
}

/// Kills the process it holds when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// P5: spawn the provider, poll its socket every millisecond until `Version` answers.
async fn measure_startup(binary: &Path) -> anyhow::Result<Startup> {
    let mut samples = Vec::with_capacity(P5_STARTS);
    for _ in 0..P5_STARTS {
        let dir = tempfile::Builder::new()
            .prefix("courier-bench-start-")
            .tempdir()?;
        let socket = dir.path().join("vault.sock");
        let mut command = Command::new(binary);
        command
            .arg("--providers-dir")
            .arg(dir.path())
            .args(["--provider", "vault", "--log-level", "warn"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let started = Instant::now();
        let mut child = KillOnDrop(
            command
                .spawn()
                .with_context(|| format!("cannot run {}", binary.display()))?,
        );
        loop {
            if answers_version(&socket).await {
                samples.push(started.elapsed());
                break;
            }
            if let Some(status) = child.0.try_wait()? {
                bail!("the provider exited during start-up with {status}");
            }
            if started.elapsed() > P5_START_LIMIT {
                bail!("the provider did not answer Version within {P5_START_LIMIT:?}");
            }
            tokio::time::sleep(P5_POLL).await;
        }
        drop(child);
    }
    let mut sorted = samples.clone();
    sorted.sort();
    // The lower median of an even count.
    let median = sorted[(sorted.len() - 1) / 2];
    Ok(Startup { median, samples })
}

async fn answers_version(socket: &Path) -> bool {
    if !socket.exists() {
        return false;
    }
    let Ok(channel) = connect_unix(socket).await else {
        return false;
    };
    let mut client = CsiDriverProviderClient::new(channel);
    let call = client.version(VersionRequest {
        version: API_VERSION.to_owned(),
    });
    matches!(
        tokio::time::timeout(Duration::from_secs(1), call).await,
        Ok(Ok(_))
    )
}

/// The result table.
#[derive(Default)]
struct Table {
    rows: Vec<[String; 6]>,
}

impl Table {
    fn row(
        &mut self,
        metric: &str,
        value: String,
        baseline: String,
        ratio: Option<f64>,
        goal: &str,
        met: Option<bool>,
    ) {
        self.rows.push([
            metric.to_owned(),
            value,
            baseline,
            ratio.map_or_else(|| "—".to_owned(), |r| format!("{r:.2}×")),
            goal.to_owned(),
            match met {
                Some(true) => "yes".to_owned(),
                Some(false) => "**no**".to_owned(),
                None => "—".to_owned(),
            },
        ]);
    }

    fn print(&self) {
        println!("| metric | value | baseline | ratio | goal | met? |");
        println!("|---|---|---|---|---|---|");
        for row in &self.rows {
            println!("| {} |", row.join(" | "));
        }
    }
}
