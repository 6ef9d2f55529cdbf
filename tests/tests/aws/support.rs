//! The shared moto server of this binary, and per-test cases around it.
//!
//! One moto serves the whole binary; every test works under its own id (its own secret and parameter names, its
//! own namespace and role), and gets its own recording proxy in front of moto, its own fake Kubernetes API and
//! Pod Identity agent, and its own provider process. So calls, faults, reads and logs never mix between tests.

use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::Context;
use courier_tests::{
    AwsCall, AwsProxy, CreatedSecret, FakeKubeApi, MOTO_ACCOUNT_ID, MintedToken, Moto,
    MountRequestBuilder, POD_IDENTITY_AUDIENCE, ParameterType, PodFixture, PodIdentityAgent,
    ProviderBuilder, ProviderProcess, STS_AUDIENCE, SecretValue, TokenIssuer,
};
use serde_json::Value;
use tokio::sync::OnceCell;

/// The primary region of every case.
pub(crate) const REGION: &str = "us-east-1";
/// The failover region of the failover cases.
pub(crate) const FAILOVER_REGION: &str = "us-west-2";
/// The service account every case's pod runs as.
pub(crate) const SERVICE_ACCOUNT: &str = "app";
/// The annotation IRSA reads the role from.
pub(crate) const ROLE_ANNOTATION: &str = "eks.amazonaws.com/role-arn";

static MOTO: OnceCell<Moto> = OnceCell::const_new();
static ISSUER: OnceCell<TokenIssuer> = OnceCell::const_new();
static NEXT_CASE: AtomicU32 = AtomicU32::new(1);

/// The shared moto server, started on first use.
pub(crate) async fn moto() -> anyhow::Result<&'static Moto> {
    MOTO.get_or_try_init(|| async { Moto::start().await.context("starting moto") })
        .await
}

/// The shared token signer (the cluster's service-account issuer).
pub(crate) async fn issuer() -> anyhow::Result<&'static TokenIssuer> {
    ISSUER
        .get_or_try_init(|| async { TokenIssuer::new() })
        .await
}

/// One test's world: its pod, its role, and its own proxy, Kubernetes API and Pod Identity agent.
///
/// Set up for both identity methods: the pod's service account is annotated with [`role_arn`](Self::role_arn),
/// the role trusts it (STS checks on), and the agent has an association for it.
pub(crate) struct Case {
    /// Unique per test.
    pub(crate) id: String,
    pub(crate) pod: PodFixture,
    /// `arn:aws:iam::123456789012:role/<id>`.
    pub(crate) role_arn: String,
    pub(crate) moto: &'static Moto,
    pub(crate) issuer: &'static TokenIssuer,
    pub(crate) proxy: AwsProxy,
    pub(crate) kube: FakeKubeApi,
    pub(crate) agent: PodIdentityAgent,
}

/// A new case labelled `label`.
pub(crate) async fn case(label: &str) -> anyhow::Result<Case> {
    let moto = moto().await?;
    let issuer = issuer().await?;
    let n = NEXT_CASE.fetch_add(1, Ordering::Relaxed);
    let id = format!("{label}-{n}");
    let pod = PodFixture::new(format!("ns-{id}"), SERVICE_ACCOUNT);
    let role_arn = role(&id);
    let proxy = AwsProxy::start_with_sts_checks(&moto.endpoint(), issuer)?;
    let kube = FakeKubeApi::start()?;
    kube.publish_issuer_keys(issuer);
    let agent = PodIdentityAgent::start(issuer)?;
    let case = Case {
        id,
        pod,
        role_arn,
        moto,
        issuer,
        proxy,
        kube,
        agent,
    };
    case.add_identity(&case.pod, &case.role_arn);
    Ok(case)
}

/// An IAM role ARN in moto's account.
pub(crate) fn role(name: &str) -> String {
    format!("arn:aws:iam::{MOTO_ACCOUNT_ID}:role/{name}")
}

impl Case {
    /// Gives `pod`'s service account the role `role_arn` for both methods: the IRSA annotation (and the role's
    /// trust), and a Pod Identity association.
    pub(crate) fn add_identity(&self, pod: &PodFixture, role_arn: &str) {
        self.kube
            .put_pod_service_account(pod, [(ROLE_ANNOTATION, role_arn)]);
        self.proxy
            .trust(role_arn, pod.namespace(), pod.service_account());
        self.agent
            .associate(pod.namespace(), pod.service_account(), role_arn);
    }

    /// A Secrets Manager name unique to this case: `<id>/<local>`.
    pub(crate) fn name(&self, local: &str) -> String {
        format!("{}/{local}", self.id)
    }

    /// An SSM parameter name unique to this case: `/<id>/<local>`. (SSM refuses names starting with `aws` or
    /// `ssm`, so case labels of parameter tests avoid those prefixes.)
    pub(crate) fn param(&self, local: &str) -> String {
        format!("/{}/{local}", self.id)
    }

    /// Creates the secret [`name`](Self::name)`(local)` in the primary region.
    pub(crate) async fn secret(
        &self,
        local: &str,
        value: impl Into<SecretValue>,
    ) -> anyhow::Result<CreatedSecret> {
        self.moto
            .create_secret(REGION, &self.name(local), value)
            .await
    }

    /// Creates the String parameter [`param`](Self::param)`(local)` in the primary region.
    pub(crate) async fn parameter(&self, local: &str, value: &str) -> anyhow::Result<i64> {
        self.moto
            .put_parameter(
                REGION,
                &self.param(local),
                value,
                ParameterType::String,
                false,
            )
            .await
    }

    /// A pod token for `audience`.
    pub(crate) fn token(&self, pod: &PodFixture, audience: &str) -> anyhow::Result<MintedToken> {
        self.issuer.token(pod, audience)
    }

    /// A provider serving `names`, sending every AWS call through this case's proxy and reading service accounts
    /// from this case's Kubernetes API. No default region: requests name theirs.
    pub(crate) fn provider_builder(&self, names: &[&str]) -> ProviderBuilder {
        let mut builder = ProviderBuilder::new()
            .aws_endpoint_url(self.proxy.endpoint())
            .kubeconfig(self.kube.kubeconfig_path())
            .pod_identity_agent_url(self.agent.url());
        for name in names {
            builder = builder.provider(*name);
        }
        builder
    }

    /// [`provider_builder`](Self::provider_builder), started.
    pub(crate) async fn provider(&self, names: &[&str]) -> anyhow::Result<ProviderProcess> {
        self.provider_builder(names).start().await
    }

    /// The request an ASCP SecretProviderClass with `objects` and `region: us-east-1` makes for this case's pod,
    /// with the tokens a CSIDriver set up for both AWS audiences passes.
    pub(crate) fn request(&self, objects: &[AwsObj]) -> anyhow::Result<MountRequestBuilder> {
        self.request_for(&self.pod, objects)
    }

    /// Like [`request`](Self::request), for another pod.
    pub(crate) fn request_for(
        &self,
        pod: &PodFixture,
        objects: &[AwsObj],
    ) -> anyhow::Result<MountRequestBuilder> {
        Ok(MountRequestBuilder::new(pod)
            .parameter("region", REGION)
            .parameter("objects", objects_yaml(objects))
            .token(STS_AUDIENCE, self.token(pod, STS_AUDIENCE)?)
            .token(
                POD_IDENTITY_AUDIENCE,
                self.token(pod, POD_IDENTITY_AUDIENCE)?,
            ))
    }

    /// The provider's calls of `action` (Secrets Manager, SSM or STS), as the proxy saw them.
    pub(crate) fn calls(&self, service: &str, action: &str) -> Vec<AwsCall> {
        self.proxy.calls_of(service, action)
    }

    /// The regions the provider's calls of `action` were signed for, in order.
    pub(crate) fn regions_of(&self, service: &str, action: &str) -> Vec<String> {
        self.calls(service, action)
            .into_iter()
            .map(|c| c.region.unwrap_or_default())
            .collect()
    }
}

/// An endpoint where nothing listens: every connection is refused.
pub(crate) fn unreachable_endpoint() -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    Ok(format!("http://127.0.0.1:{port}"))
}

/// One entry of the `objects` parameter.
#[derive(Debug, Clone)]
pub(crate) struct AwsObj {
    fields: Vec<(&'static str, String)>,
}

/// A Secrets Manager secret by name (`objectType: secretsmanager`).
pub(crate) fn sm(name: &str) -> AwsObj {
    AwsObj::named(name).field("objectType", quote("secretsmanager"))
}

/// An SSM parameter by name (`objectType: ssmparameter`).
pub(crate) fn ssm(name: &str) -> AwsObj {
    AwsObj::named(name).field("objectType", quote("ssmparameter"))
}

/// An object by full ARN, without `objectType`.
pub(crate) fn arn(arn: &str) -> AwsObj {
    AwsObj::named(arn)
}

impl AwsObj {
    /// An entry with only `objectName`.
    pub(crate) fn named(name: &str) -> Self {
        Self {
            fields: vec![("objectName", quote(name))],
        }
    }

    pub(crate) fn alias(self, alias: &str) -> Self {
        self.field("objectAlias", quote(alias))
    }

    pub(crate) fn version(self, version: &str) -> Self {
        self.field("objectVersion", quote(version))
    }

    pub(crate) fn label(self, label: &str) -> Self {
        self.field("objectVersionLabel", quote(label))
    }

    /// `filePermission` as a quoted string, as ASCP documents it (`"0600"`).
    pub(crate) fn file_permission(self, mode: &str) -> Self {
        self.field("filePermission", quote(mode))
    }

    /// `jmesPath` entries: (path, objectAlias, filePermission).
    pub(crate) fn jmes(self, entries: &[(&str, &str, Option<&str>)]) -> Self {
        let list: Vec<Value> = entries
            .iter()
            .map(|(path, alias, mode)| {
                let mut entry = serde_json::json!({"path": path, "objectAlias": alias});
                if let Some(mode) = mode {
                    entry["filePermission"] = Value::String((*mode).to_owned());
                }
                entry
            })
            .collect();
        self.field("jmesPath", Value::Array(list).to_string())
    }

    /// `failoverObject` with `objectName` and optional version fields.
    pub(crate) fn failover(self, name: &str, version: Option<&str>, label: Option<&str>) -> Self {
        let mut object = serde_json::json!({"objectName": name});
        if let Some(version) = version {
            object["objectVersion"] = Value::String(version.to_owned());
        }
        if let Some(label) = label {
            object["objectVersionLabel"] = Value::String(label.to_owned());
        }
        self.field("failoverObject", object.to_string())
    }

    /// Any field with a YAML value written verbatim.
    pub(crate) fn field(mut self, name: &'static str, yaml: String) -> Self {
        self.fields.retain(|(n, _)| *n != name);
        self.fields.push((name, yaml));
        self
    }
}

/// The `objects` parameter: a YAML list, as SecretProviderClasses carry it in a block scalar.
pub(crate) fn objects_yaml(objects: &[AwsObj]) -> String {
    let mut yaml = String::new();
    for object in objects {
        for (i, (name, value)) in object.fields.iter().enumerate() {
            let lead = if i == 0 { "- " } else { "  " };
            yaml.push_str(&format!("{lead}{name}: {value}\n"));
        }
    }
    yaml
}

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
pub(crate) fn quote(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}
