//! Per-test cases around the Azure stand-in: a tenant, a vault, an Entra application federated with the pod's
//! service account and granted on the vault, a fake Kubernetes API, and a provider pointed at the stand-in.

use std::sync::atomic::{AtomicU32, Ordering};

use courier_tests::{
    AZURE_TOKEN_AUDIENCE, AzureApi, AzureCall, AzureStandIn, FakeKubeApi, MountRequestBuilder,
    PodFixture, ProviderBuilder, ProviderProcess, TokenIssuer,
};
use serde_json::Value;
use tokio::sync::OnceCell;

/// The tenant the stand-in knows.
pub(crate) const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The vault every case reads.
pub(crate) const VAULT: &str = "kv-courier";
/// The service account every case's pod runs as.
pub(crate) const SERVICE_ACCOUNT: &str = "app";
/// The annotation naming the service account's Entra application.
pub(crate) const CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";

static ISSUER: OnceCell<TokenIssuer> = OnceCell::const_new();
static NEXT_CASE: AtomicU32 = AtomicU32::new(1);

/// One test's world.
pub(crate) struct Case {
    pub(crate) pod: PodFixture,
    /// The Entra application the pod's service account is federated with and granted on [`VAULT`].
    pub(crate) client_id: String,
    pub(crate) issuer: &'static TokenIssuer,
    pub(crate) standin: AzureStandIn,
    pub(crate) kube: FakeKubeApi,
}

/// A client id (a GUID) unique to `n` and `which`.
pub(crate) fn client_id(n: u32, which: u32) -> String {
    format!("{n:08x}-{which:04x}-4000-8000-00000000c0de")
}

/// A new case labelled `label`.
pub(crate) async fn case(label: &str) -> anyhow::Result<Case> {
    let issuer = ISSUER
        .get_or_try_init(|| async { TokenIssuer::new() })
        .await?;
    let n = NEXT_CASE.fetch_add(1, Ordering::Relaxed);
    let pod = PodFixture::new(format!("ns-{label}-{n}"), SERVICE_ACCOUNT);
    let standin = AzureStandIn::start(issuer, TENANT)?;
    let kube = FakeKubeApi::start()?;
    kube.publish_issuer_keys(issuer);
    kube.put_pod_service_account(&pod, std::iter::empty::<(&str, &str)>());
    let case = Case {
        client_id: client_id(n, 1),
        pod,
        issuer,
        standin,
        kube,
    };
    case.standin.federate(
        &case.client_id,
        case.pod.namespace(),
        case.pod.service_account(),
    );
    case.standin.grant(VAULT, &case.client_id);
    Ok(case)
}

impl Case {
    /// A provider serving `names`, with Entra and Key Vault at the stand-in (trusted through its CA).
    pub(crate) fn provider_builder(&self, names: &[&str]) -> ProviderBuilder {
        let mut builder = ProviderBuilder::new()
            .kubeconfig(self.kube.kubeconfig_path())
            .trust_issuer(self.issuer)
            .arg("--azure-authority-host")
            .arg(self.standin.authority_host())
            .arg("--azure-keyvault-endpoint")
            .arg(self.standin.keyvault_endpoint())
            .arg("--azure-ca-file")
            .arg(self.standin.ca_file());
        for name in names {
            builder = builder.provider(*name);
        }
        builder
    }

    /// [`provider_builder`](Self::provider_builder) for `azure.sock`, started.
    pub(crate) async fn provider(&self) -> anyhow::Result<ProviderProcess> {
        self.provider_builder(&["azure"]).start().await
    }

    /// The request an Azure SecretProviderClass listing `objects` makes for this case's pod.
    pub(crate) fn request(&self, objects: &[Obj]) -> anyhow::Result<MountRequestBuilder> {
        self.request_for(&self.pod, &self.client_id, objects)
    }

    /// Like [`request`](Self::request), for another pod and application.
    pub(crate) fn request_for(
        &self,
        pod: &PodFixture,
        client_id: &str,
        objects: &[Obj],
    ) -> anyhow::Result<MountRequestBuilder> {
        Ok(MountRequestBuilder::new(pod)
            .parameter("keyvaultName", VAULT)
            .parameter("tenantId", TENANT)
            .parameter("clientID", client_id)
            .parameter("usePodIdentity", "false")
            .parameter("objects", objects_yaml(objects))
            .token(
                AZURE_TOKEN_AUDIENCE,
                self.issuer.token(pod, AZURE_TOKEN_AUDIENCE)?,
            ))
    }

    /// The stand-in's calls to `api`.
    pub(crate) fn calls(&self, api: AzureApi) -> Vec<AzureCall> {
        self.standin.calls_to(api)
    }

    /// Adds a version of the secret `name` in [`VAULT`].
    pub(crate) fn secret(&self, name: &str, value: &str) -> String {
        self.standin.set_secret(VAULT, name, value, None)
    }
}

/// A provider for `azure.sock` with Key Vault and the CA at the stand-in but Entra's authority left to the cloud.
pub(crate) fn provider_without_authority(case: &Case) -> ProviderBuilder {
    ProviderBuilder::new()
        .kubeconfig(case.kube.kubeconfig_path())
        .trust_issuer(case.issuer)
        .arg("--azure-keyvault-endpoint")
        .arg(case.standin.keyvault_endpoint())
        .arg("--azure-ca-file")
        .arg(case.standin.ca_file())
        .provider("azure")
}

/// One entry of `objects`.
#[derive(Debug, Clone)]
pub(crate) struct Obj {
    fields: Vec<(&'static str, String)>,
}

/// `objectName: name, objectType: kind`.
pub(crate) fn obj(name: &str, kind: &str) -> Obj {
    Obj {
        fields: vec![("objectName", quote(name)), ("objectType", quote(kind))],
    }
}

impl Obj {
    /// Any field with a YAML value written verbatim.
    pub(crate) fn field(mut self, name: &'static str, yaml: impl Into<String>) -> Self {
        self.fields.retain(|(n, _)| *n != name);
        self.fields.push((name, yaml.into()));
        self
    }
}

/// The `objects` parameter as the Azure provider's documentation writes it: `array:` of YAML strings.
pub(crate) fn objects_yaml(objects: &[Obj]) -> String {
    let mut yaml = String::from("array:\n");
    for object in objects {
        yaml.push_str("  - |\n");
        for (name, value) in &object.fields {
            yaml.push_str(&format!("    {name}: {value}\n"));
        }
    }
    yaml
}

/// A YAML double-quoted scalar.
pub(crate) fn quote(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}
