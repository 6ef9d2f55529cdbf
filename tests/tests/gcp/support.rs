//! The shared drongos of this binary, and per-test cases around them.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use courier_tests::{
    Drongo, FakeKubeApi, GKE_IDENTITY_PROVIDER, GcpApi, GcpCall, GcpStandIn, MountRequestBuilder, PodFixture,
    ProviderBuilder, ProviderProcess, TokenIssuer,
};
use serde_json::Value;
use tokio::sync::OnceCell;

/// The workload pool: the audience of the pods' tokens.
pub(crate) const POOL: &str = "p1.svc.id.goog";
/// The service account every case's pod runs as.
pub(crate) const SERVICE_ACCOUNT: &str = "app";
/// The annotation naming the Google service account to impersonate.
pub(crate) const GSA_ANNOTATION: &str = "iam.gke.io/gcp-service-account";
/// The location of regional secrets.
pub(crate) const LOCATION: &str = "us-east1";

static GLOBAL: OnceCell<Drongo> = OnceCell::const_new();
static REGIONAL: OnceCell<Drongo> = OnceCell::const_new();
static ISSUER: OnceCell<TokenIssuer> = OnceCell::const_new();
static NEXT_CASE: AtomicU32 = AtomicU32::new(1);

/// One test's world: its project, its pod and Google service account, its stand-in, Kubernetes API.
pub(crate) struct Case {
    pub(crate) project: String,
    pub(crate) pod: PodFixture,
    /// The Google service account the pod's service account is annotated with and bound to.
    pub(crate) gsa: String,
    pub(crate) global: &'static Drongo,
    pub(crate) regional: &'static Drongo,
    pub(crate) issuer: &'static TokenIssuer,
    pub(crate) standin: GcpStandIn,
    pub(crate) kube: FakeKubeApi,
}

/// A new case labelled `label`: the pod's service account impersonates its own Google service account.
pub(crate) async fn case(label: &str) -> anyhow::Result<Case> {
    let global = GLOBAL.get_or_try_init(|| async { Drongo::start().await.context("starting drongo") }).await?;
    let regional = REGIONAL.get_or_try_init(|| async { Drongo::start().await.context("starting the regional drongo") }).await?;
    let issuer = ISSUER.get_or_try_init(|| async { TokenIssuer::new() }).await?;
    let n = NEXT_CASE.fetch_add(1, Ordering::Relaxed);
    let id = format!("{label}-{n}");
    let pod = PodFixture::new(format!("ns-{id}"), SERVICE_ACCOUNT);
    let standin = GcpStandIn::start(issuer, POOL, &global.endpoint(), &regional.endpoint())?;
    let kube = FakeKubeApi::start()?;
    kube.publish_issuer_keys(issuer);
    let case = Case {
        project: format!("p-{id}"),
        gsa: format!("{label}-{n}@p1.iam.gserviceaccount.com"),
        pod,
        global,
        regional,
        issuer,
        standin,
        kube,
    };
    case.add_identity(&case.pod, &case.gsa);
    Ok(case)
}

impl Case {
    /// Annotates `pod`'s service account with `gsa` and lets it impersonate it.
    pub(crate) fn add_identity(&self, pod: &PodFixture, gsa: &str) {
        self.kube.put_pod_service_account(pod, [(GSA_ANNOTATION, gsa)]);
        self.standin.bind(gsa, pod.namespace(), pod.service_account());
    }

    /// Creates the global secret `local` with one version holding `data`; returns the version's name.
    pub(crate) async fn secret(&self, local: &str, data: impl AsRef<[u8]>) -> anyhow::Result<String> {
        self.global.secret_with(&self.project, local, data).await
    }

    /// `projects/<project>/secrets/<local>/versions/<version>`.
    pub(crate) fn version(&self, local: &str, version: &str) -> String {
        format!("projects/{}/secrets/{local}/versions/{version}", self.project)
    }

    /// Creates the regional secret `local` in [`LOCATION`]; returns its regional version name.
    pub(crate) async fn regional_secret(&self, local: &str, data: impl AsRef<[u8]>) -> anyhow::Result<String> {
        let name = self.regional.secret_with(&self.project, local, data).await?;
        Ok(name.replacen(&format!("projects/{}/", self.project), &format!("projects/{}/locations/{LOCATION}/", self.project), 1))
    }

    /// A provider serving `names`, with every Google endpoint at the stand-in.
    pub(crate) fn provider_builder(&self, names: &[&str]) -> ProviderBuilder {
        let url = self.standin.url();
        // The issuer keys are loaded before the first mount, so mounts that count exchanges never race the load.
        let mut builder = ProviderBuilder::new()
            .kubeconfig(self.kube.kubeconfig_path())
            .trust_issuer(self.issuer)
            .arg("--gcp-secret-manager-endpoint")
            .arg(&url)
            .arg("--gcp-secret-manager-regional-endpoint")
            .arg(&url)
            .arg("--gcp-sts-endpoint")
            .arg(&url)
            .arg("--gcp-iam-credentials-endpoint")
            .arg(&url)
            .arg("--gcp-parameter-manager-endpoint")
            .arg(&url)
            .arg("--gcp-parameter-manager-regional-endpoint")
            .arg(&url)
            .arg("--gcp-metadata-endpoint")
            .arg(&url)
            .arg("--gcp-workload-pool")
            .arg(POOL)
            .arg("--gcp-identity-provider")
            .arg(GKE_IDENTITY_PROVIDER);
        for name in names {
            builder = builder.provider(*name);
        }
        builder
    }

    /// [`provider_builder`](Self::provider_builder), started.
    pub(crate) async fn provider(&self, names: &[&str]) -> anyhow::Result<ProviderProcess> {
        self.provider_builder(names).start().await
    }

    /// The request a GCP SecretProviderClass with `secrets` makes for this case's pod, with the pool token.
    pub(crate) fn request(&self, secrets: &[Sec]) -> anyhow::Result<MountRequestBuilder> {
        self.request_for(&self.pod, secrets)
    }

    /// Like [`request`](Self::request), for another pod.
    pub(crate) fn request_for(&self, pod: &PodFixture, secrets: &[Sec]) -> anyhow::Result<MountRequestBuilder> {
        Ok(MountRequestBuilder::new(pod)
            .parameter("secrets", secrets_yaml(secrets))
            .token(POOL, self.issuer.token(pod, POOL)?))
    }

    /// The stand-in's calls to `api`.
    pub(crate) fn calls(&self, api: GcpApi) -> Vec<GcpCall> {
        self.standin.calls_to(api)
    }
}

/// One entry of the `secrets` parameter.
#[derive(Debug, Clone)]
pub(crate) struct Sec {
    fields: Vec<(&'static str, String)>,
}

/// `resourceName: name, path: path`.
pub(crate) fn sec(name: &str, path: &str) -> Sec {
    Sec { fields: vec![("resourceName", quote(name)), ("path", quote(path))] }
}

impl Sec {
    /// Any field with a YAML value written verbatim.
    pub(crate) fn field(mut self, name: &'static str, yaml: impl Into<String>) -> Self {
        self.fields.retain(|(n, _)| *n != name);
        self.fields.push((name, yaml.into()));
        self
    }
}

/// The `secrets` parameter: a YAML list.
pub(crate) fn secrets_yaml(secrets: &[Sec]) -> String {
    let mut yaml = String::new();
    for secret in secrets {
        for (i, (name, value)) in secret.fields.iter().enumerate() {
            let lead = if i == 0 { "- " } else { "  " };
            yaml.push_str(&format!("{lead}{name}: {value}\n"));
        }
    }
    yaml
}

/// A YAML double-quoted scalar.
pub(crate) fn quote(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}
