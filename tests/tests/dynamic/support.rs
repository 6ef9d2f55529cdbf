//! The shared OpenBao and PostgreSQL of this binary, per-test cases on them, and what tests read back: the
//! provider's metrics, OpenBao's leases and PostgreSQL's roles.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use courier_proto::v1alpha1::MountResponse;
use courier_proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient;
use courier_tests::calls::{mount, text};
use courier_tests::postgres::Postgres;
use courier_tests::{
    JwtRole, KUBERNETES_ISSUER, MountRequestBuilder, OpenBao, PodFixture, ProviderBuilder,
    ProviderProcess, TokenIssuer,
};
use serde_json::Value;
use tokio::sync::OnceCell;
use tonic::transport::Channel;

pub(crate) use courier_tests::objects::{Obj, obj, objects_yaml};

/// Where JWT auth is mounted.
pub(crate) const JWT_MOUNT: &str = "jwt";
/// Where the database secrets engine is mounted.
pub(crate) const DATABASE_MOUNT: &str = "database";
/// The database engine's connection to the shared PostgreSQL.
pub(crate) const CONNECTION: &str = "pg";
/// The service account every case's first pod runs as.
pub(crate) const SERVICE_ACCOUNT: &str = "app";
/// The provider name the tests mount through: Courier's native parameters.
pub(crate) const PROVIDER: &str = "courier";
/// How often a test asks again while it waits for something to happen.
pub(crate) const POLL: Duration = Duration::from_millis(250);

/// OpenBao with JWT auth and a database engine connected to PostgreSQL.
pub(crate) struct Env {
    pub(crate) bao: OpenBao,
    pub(crate) pg: Postgres,
    pub(crate) issuer: TokenIssuer,
}

static ENV: OnceCell<Env> = OnceCell::const_new();
static NEXT_CASE: AtomicU32 = AtomicU32::new(1);

/// The shared servers, started on first use.
pub(crate) async fn env() -> anyhow::Result<&'static Env> {
    ENV.get_or_try_init(Env::start).await
}

impl Env {
    async fn start() -> anyhow::Result<Self> {
        let (bao, pg) = tokio::try_join!(
            async { OpenBao::start().await.context("starting OpenBao") },
            async { Postgres::start().await.context("starting PostgreSQL") },
        )?;
        let issuer = TokenIssuer::new()?;
        bao.enable_jwt_auth(
            JWT_MOUNT,
            &[issuer.public_key_pem().to_owned()],
            KUBERNETES_ISSUER,
        )
        .await
        .context("configuring JWT auth")?;
        bao.enable_postgres_database(DATABASE_MOUNT, CONNECTION, &pg)
            .await
            .context("connecting the database engine to PostgreSQL")?;
        Ok(Self { bao, pg, issuer })
    }

    /// A new case: a database role `<id>` issuing credentials for `ttl` (at most `max_ttl`), and a JWT role
    /// `<id>` for the service account `app` of namespace `ns-<id>` whose policy reads them.
    pub(crate) async fn case(
        &'static self,
        label: &str,
        ttl: &str,
        max_ttl: &str,
    ) -> anyhow::Result<Case> {
        self.case_with(label, ttl, max_ttl, true).await
    }

    /// Like [`case`](Self::case); `can_revoke` says whether the policy grants `update` on `sys/leases/revoke`.
    pub(crate) async fn case_with(
        &'static self,
        label: &str,
        ttl: &str,
        max_ttl: &str,
        can_revoke: bool,
    ) -> anyhow::Result<Case> {
        let n = NEXT_CASE.fetch_add(1, Ordering::Relaxed);
        let id = format!("{label}-{n}");
        let pod = PodFixture::new(format!("ns-{id}"), SERVICE_ACCOUNT);
        self.bao
            .postgres_role(DATABASE_MOUNT, CONNECTION, &id, ttl, max_ttl)
            .await?;
        let revoke = if can_revoke {
            r#"path "sys/leases/revoke" { capabilities = ["update"] }"#
        } else {
            ""
        };
        let policy = format!(
            r#"
path "{DATABASE_MOUNT}/creds/{id}" {{ capabilities = ["read"] }}
path "pki-{id}/issue/*" {{ capabilities = ["create", "update"] }}
path "kv1-{id}/*" {{ capabilities = ["read"] }}
{revoke}
"#
        );
        self.bao.write_policy(&id, &policy).await?;
        let case = Case {
            env: self,
            role: id.clone(),
            id,
            pod,
        };
        case.add_role(&case.role, SERVICE_ACCOUNT, &[&case.id])
            .await?;
        Ok(case)
    }
}

/// One test's corner of the shared servers.
pub(crate) struct Case {
    pub(crate) env: &'static Env,
    /// Unique per test; the database role, the policy and the JWT role of the first identity.
    pub(crate) id: String,
    /// The JWT role of the first identity.
    pub(crate) role: String,
    /// The first pod.
    pub(crate) pod: PodFixture,
}

impl Case {
    pub(crate) fn bao(&self) -> &OpenBao {
        &self.env.bao
    }

    pub(crate) fn pg(&self) -> &Postgres {
        &self.env.pg
    }

    /// Where this case's credentials are issued.
    pub(crate) fn creds_path(&self) -> String {
        format!("{DATABASE_MOUNT}/creds/{}", self.id)
    }

    /// The leases OpenBao holds for this case's database role.
    pub(crate) async fn db_leases(&self) -> anyhow::Result<Vec<String>> {
        self.bao().lease_ids(&self.creds_path()).await
    }

    /// Creates the JWT role `role` for `service_account` in this case's namespace with `policies`.
    pub(crate) async fn add_role(
        &self,
        role: &str,
        service_account: &str,
        policies: &[&str],
    ) -> anyhow::Result<()> {
        self.bao()
            .jwt_role(
                JWT_MOUNT,
                &JwtRole {
                    name: role.to_owned(),
                    bound_audiences: vec!["vault".to_owned()],
                    namespace: self.pod.namespace().to_owned(),
                    service_account: service_account.to_owned(),
                    policies: policies.iter().map(|p| (*p).to_owned()).collect(),
                },
            )
            .await
    }

    /// Asserts that PostgreSQL accepts `creds`, saying `why` (and showing PostgreSQL's log) when not.
    pub(crate) async fn assert_logs_in(&self, creds: &Creds, why: &str) -> anyhow::Result<()> {
        assert!(
            self.pg().can_login(&creds.username, &creds.password).await?,
            "{why}; PostgreSQL log:\n{}",
            self.pg().logs()
        );
        Ok(())
    }

    /// Another pod of the first pod's service account (same name and uid): the same identity.
    pub(crate) fn sibling_pod(&self) -> PodFixture {
        PodFixture::new(self.pod.namespace(), self.pod.service_account())
            .with_service_account_uid(self.pod.service_account_uid())
    }

    /// The first pod's mount of `objects` as role [`role`](Self::role).
    pub(crate) fn request(&self, objects: &[Obj]) -> anyhow::Result<MountRequestBuilder> {
        self.request_for(&self.pod, &self.role, objects)
    }

    /// A mount of `objects` by `pod` as `role`: native parameters, JWT auth, the pod's token for `vault`.
    pub(crate) fn request_for(
        &self,
        pod: &PodFixture,
        role: &str,
        objects: &[Obj],
    ) -> anyhow::Result<MountRequestBuilder> {
        Ok(MountRequestBuilder::new(pod)
            .parameter("roleName", role)
            .parameter("vaultAddress", self.bao().addr())
            .parameter("vaultAuthMountPath", JWT_MOUNT)
            .parameter("objects", objects_yaml(objects))
            .token("vault", self.env.issuer.token(pod, "vault")?))
    }

    /// The usual database objects: `username`, `password`, and `lease.json` (the whole response, which
    /// names the lease), all from one credentials request.
    pub(crate) fn creds_objects(&self) -> Vec<Obj> {
        let path = self.creds_path();
        vec![
            obj("username", &path).key("username"),
            obj("password", &path).key("password"),
            obj("lease.json", &path),
        ]
    }
}

/// What a database mount returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Creds {
    pub(crate) username: String,
    pub(crate) password: String,
    pub(crate) lease_id: String,
    /// Object versions of `username`, `password`, `lease.json`.
    pub(crate) versions: [String; 3],
}

impl Creds {
    /// Reads the files [`Case::creds_objects`] asks for.
    #[track_caller]
    pub(crate) fn from(response: &MountResponse) -> Self {
        let lease: Value = serde_json::from_str(&text(response, "lease.json"))
            .unwrap_or_else(|e| panic!("lease.json is not JSON: {e}"));
        let lease_id = lease["lease_id"].as_str().unwrap_or_default().to_owned();
        assert!(
            !lease_id.is_empty(),
            "the credentials response names no lease: {lease}"
        );
        assert_eq!(
            lease["data"]["username"].as_str(),
            Some(text(response, "username").as_str()),
            "lease.json and username come from different responses"
        );
        let version = |id: &str| courier_tests::calls::object_version(response, id).to_owned();
        Self {
            username: text(response, "username"),
            password: text(response, "password"),
            lease_id,
            versions: [
                version("username"),
                version("password"),
                version("lease.json"),
            ],
        }
    }
}

/// Mounts and reads the credentials.
pub(crate) async fn mount_creds(
    client: &mut CsiDriverProviderClient<Channel>,
    request: &MountRequestBuilder,
) -> anyhow::Result<Creds> {
    let response = mount(client, request.build()?).await.map_err(|status| {
        anyhow::anyhow!("mount failed: {:?}: {}", status.code(), status.message())
    })?;
    Ok(Creds::from(&response))
}

/// A provider serving [`PROVIDER`] with metrics on an ephemeral port and JSON logs (so the port can be read),
/// verifying tokens against the shared issuer's key.
pub(crate) async fn provider_builder() -> anyhow::Result<ProviderBuilder> {
    Ok(ProviderBuilder::new()
        .provider(PROVIDER)
        .trust_issuer(&env().await?.issuer)
        .log_format("json")
        .arg("--metrics-addr")
        .arg("127.0.0.1:0"))
}

/// A started provider and the address of its metrics.
pub(crate) struct Provider {
    pub(crate) process: ProviderProcess,
    pub(crate) metrics_addr: String,
}

impl Provider {
    /// Starts `builder` and finds the metrics address in its log.
    pub(crate) async fn start(builder: ProviderBuilder) -> anyhow::Result<Self> {
        let process = builder.start().await?;
        let metrics_addr = http_address(&process.logs()).with_context(|| {
            format!(
                "the provider logged no HTTP address; log:\n{}",
                process.logs()
            )
        })?;
        Ok(Self {
            process,
            metrics_addr,
        })
    }

    /// Starts a [`provider_builder`] provider with `--lease-reuse-fraction fraction`.
    pub(crate) async fn with_reuse_fraction(fraction: f64) -> anyhow::Result<Self> {
        Self::start(
            provider_builder()
                .await?
                .arg("--lease-reuse-fraction")
                .arg(fraction.to_string()),
        )
        .await
    }

    pub(crate) async fn client(&self) -> anyhow::Result<CsiDriverProviderClient<Channel>> {
        self.process.client(PROVIDER).await
    }

    /// The current `/metrics` text.
    pub(crate) async fn metrics(&self) -> anyhow::Result<Metrics> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let response = http
            .get(format!("http://{}/metrics", self.metrics_addr))
            .send()
            .await
            .context("GET /metrics")?;
        if !response.status().is_success() {
            bail!("/metrics answered {}", response.status());
        }
        Ok(Metrics(response.text().await?))
    }

    /// `courier_lease_events_total{event}` now.
    pub(crate) async fn lease_events(&self, event: &str) -> anyhow::Result<f64> {
        Ok(self
            .metrics()
            .await?
            .sum("courier_lease_events_total", &[("event", event)]))
    }
}

/// The address in the provider's "HTTP endpoints listening" log line.
fn http_address(log: &str) -> Option<String> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "HTTP endpoints listening")
        .and_then(|line| line["address"].as_str().map(str::to_owned))
}

/// A Prometheus text exposition.
#[derive(Debug, Clone)]
pub(crate) struct Metrics(pub(crate) String);

/// One expected sum: metric name, labels the samples must carry, value.
pub(crate) type ExpectedSum<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

impl Metrics {
    /// Asserts every expected sum, naming the metric and showing the whole exposition on a mismatch.
    #[track_caller]
    pub(crate) fn assert_sums(&self, expected: &[ExpectedSum<'_>]) {
        for (name, labels, value) in expected {
            assert_eq!(
                self.sum(name, labels),
                *value,
                "{name} {labels:?}:\n{}",
                self.0
            );
        }
    }

    /// Asserts that every sum is at least its value, naming the metric and showing the whole exposition when not.
    #[track_caller]
    pub(crate) fn assert_at_least(&self, expected: &[ExpectedSum<'_>]) {
        for (name, labels, value) in expected {
            let sum = self.sum(name, labels);
            assert!(sum >= *value, "{name} {labels:?} is {sum}, below {value}:\n{}", self.0);
        }
    }

    /// The sum of every sample of `name` whose labels include all of `labels` (0 when there is none).
    pub(crate) fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut total = 0.0;
        for line in self.0.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if series_name != name {
                continue;
            }
            let matches = labels.iter().all(|(k, v)| {
                series_labels
                    .split(',')
                    .any(|pair| pair == format!("{k}=\"{v}\""))
            });
            if matches && let Ok(value) = value.parse::<f64>() {
                total += value;
            }
        }
        total
    }
}

/// Polls `check` until it returns `Some`, failing with `what` after `timeout`.
pub(crate) async fn eventually<T, F, Fut>(
    timeout: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check().await? {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            bail!("{what}: not within {timeout:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}



#[test]
fn metrics_are_summed_by_labels() {
    let metrics = Metrics(
        "# TYPE courier_lease_events counter\n\
         courier_lease_events_total{event=\"issued\"} 2\n\
         courier_lease_events_total{event=\"reused\"} 5\n\
         courier_leases_held 3\n"
            .to_owned(),
    );
    assert_eq!(
        metrics.sum("courier_lease_events_total", &[("event", "issued")]),
        2.0
    );
    assert_eq!(metrics.sum("courier_lease_events_total", &[]), 7.0);
    assert_eq!(metrics.sum("courier_leases_held", &[]), 3.0);
    assert_eq!(
        metrics.sum("courier_lease_events_total", &[("event", "renewed")]),
        0.0
    );
}
