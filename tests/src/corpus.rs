//! The hostile-input corpus (`tests/corpus/mount_requests.jsonl`, format in `tests/corpus/README.md`): one case
//! per line, with recipes for large values, and the `Mount` request the driver would send for a case. The
//! reliability suite checks every case's answer; the benchmark sends the same cases to measure memory (P6).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use courier_proto::v1alpha1::MountRequest;
use serde::Deserialize;
use tonic::Code;

use crate::{PodFixture, ProviderBuilder, TokenIssuer, closed_port_url, tools};

/// The corpus file, relative to the workspace root.
const CORPUS: &str = "tests/corpus/mount_requests.jsonl";
/// The provider's own `--mount-timeout` for the corpus: a case that reaches a (closed) backend answers well
/// within it.
pub const MOUNT_TIMEOUT: &str = "8s";
/// Sockets the provider serves; `custom` is any other name, which takes the native parameters.
pub const SOCKETS: &[&str] = &["vault", "openbao", "courier", "aws", "gcp", "azure", "custom"];
/// Audiences the driver passes tokens for in a default case.
const AUDIENCES: &[&str] = &[
    "vault",
    "openbao",
    "sts.amazonaws.com",
    "pods.eks.amazonaws.com",
    GCP_POOL,
    "api://AzureADTokenExchange",
];
/// The workload pool of the corpus provider (`--gcp-workload-pool`), also a default token's audience.
const GCP_POOL: &str = "corpus.svc.id.goog";

/// One line of the corpus.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusCase {
    pub name: String,
    pub socket: String,
    /// The raw `attributes` string, sent as it is (then `parameters`, `omit` and `tokens` must be absent).
    #[serde(default)]
    attributes: Option<Text>,
    /// SecretProviderClass parameters; the runner adds kubelet's pod info and the tokens as the driver does.
    #[serde(default)]
    parameters: Option<BTreeMap<String, Text>>,
    /// Attribute keys to drop after the pod info and tokens are added.
    #[serde(default)]
    omit: Vec<String>,
    /// The tokens JSON instead of the default one (a token per audience).
    #[serde(default)]
    tokens: Option<Text>,
    #[serde(default)]
    secrets: Option<Text>,
    #[serde(default)]
    permission: Option<Text>,
    pub expect_code: String,
    pub expect_field: String,
    #[serde(default)]
    #[allow(dead_code, reason = "a comment for people reading the corpus")]
    note: Option<String>,
    /// A provider bug this case shows (see the report); such cases run apart, each on its own connection, and
    /// are counted but do not fail the run. Remove the field once the bug is fixed.
    #[serde(default)]
    pub known_issue: Option<String>,
}

/// What a corpus provider talks to: its Vault address, AWS, Google and Azure endpoints, Kubernetes API and Pod Identity agent all
/// point at closed ports, so no case needs a backend. Keep it alive as long as the provider it configured.
#[derive(Debug)]
pub struct CorpusSetup {
    _kube_dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl CorpusSetup {
    /// A kubeconfig naming a closed port.
    pub fn new() -> anyhow::Result<Self> {
        let kube_dir = tempfile::tempdir()?;
        let kubeconfig = kube_dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user:\n    token: closed\n",
                closed_port_url()?
            ),
        )?;
        Ok(Self {
            _kube_dir: kube_dir,
            kubeconfig,
        })
    }

    /// A provider serving every socket of [`SOCKETS`] with every backend on a closed port and
    /// `--mount-timeout` [`MOUNT_TIMEOUT`].
    pub fn provider_builder(&self) -> anyhow::Result<ProviderBuilder> {
        let mut builder = ProviderBuilder::new()
            .vault_addr(closed_port_url()?)
            .aws_endpoint_url(closed_port_url()?)
            .pod_identity_agent_url(format!("{}/v1/credentials", closed_port_url()?))
            .kubeconfig(&self.kubeconfig)
            .arg("--gcp-secret-manager-endpoint")
            .arg(closed_port_url()?)
            .arg("--gcp-secret-manager-regional-endpoint")
            .arg(closed_port_url()?)
            .arg("--gcp-sts-endpoint")
            .arg(closed_port_url()?)
            .arg("--gcp-iam-credentials-endpoint")
            .arg(closed_port_url()?)
            .arg("--gcp-workload-pool")
            .arg(GCP_POOL)
            .arg("--gcp-identity-provider")
            .arg("https://container.googleapis.com/v1/projects/corpus/locations/l/clusters/c")
            .arg("--azure-authority-host")
            .arg(closed_port_url()?)
            .arg("--azure-keyvault-endpoint")
            .arg(format!("{}/vaults/{{vault}}", closed_port_url()?))
            .arg("--mount-timeout")
            .arg(MOUNT_TIMEOUT);
        for socket in SOCKETS {
            builder = builder.provider(*socket);
        }
        Ok(builder)
    }
}

impl CorpusCase {
    /// The SecretProviderClass parameters with every recipe expanded, for a case that is a plain class (no raw
    /// attributes, no omitted keys, and the default tokens, secrets and permission); `None` otherwise.
    pub fn plain_parameters(&self) -> Option<BTreeMap<String, String>> {
        let plain = self.attributes.is_none()
            && self.omit.is_empty()
            && self.tokens.is_none()
            && self.secrets.is_none()
            && self.permission.is_none();
        let parameters = self.parameters.as_ref().filter(|_| plain)?;
        Some(parameters.iter().map(|(k, v)| (k.clone(), v.expand())).collect())
    }
}

/// A string, or a recipe for a large or repetitive one (so the file stays small and readable).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Text {
    /// The text itself.
    Literal(String),
    /// `text` repeated `count` times.
    Repeat { repeat: Box<Text>, count: usize },
    /// The parts, joined.
    Concat { concat: Vec<Text> },
    /// `sequence` once per index from `start`, with `{i}` replaced by the index and `{prev}` by the one before.
    Sequence {
        sequence: String,
        count: usize,
        #[serde(default)]
        start: usize,
    },
}

impl Text {
    fn expand(&self) -> String {
        match self {
            Self::Literal(text) => text.clone(),
            Self::Repeat { repeat, count } => repeat.expand().repeat(*count),
            Self::Concat { concat } => concat.iter().map(Self::expand).collect(),
            Self::Sequence {
                sequence,
                count,
                start,
            } => (*start..start + count)
                .map(|i| {
                    sequence
                        .replace("{i}", &i.to_string())
                        .replace("{prev}", &i.saturating_sub(1).to_string())
                })
                .collect(),
        }
    }
}

/// The gRPC code an `expect_code` names.
pub fn code_named(name: &str) -> anyhow::Result<Code> {
    Ok(match name {
        "Ok" => Code::Ok,
        "InvalidArgument" => Code::InvalidArgument,
        "NotFound" => Code::NotFound,
        "PermissionDenied" => Code::PermissionDenied,
        "Unavailable" => Code::Unavailable,
        "DeadlineExceeded" => Code::DeadlineExceeded,
        "OutOfRange" => Code::OutOfRange,
        "ResourceExhausted" => Code::ResourceExhausted,
        "Internal" => Code::Internal,
        other => bail!("unknown expect_code {other:?}"),
    })
}

/// Every case of the corpus file, checked for duplicate names, known sockets and codes.
pub fn load_corpus() -> anyhow::Result<Vec<CorpusCase>> {
    let path = tools::workspace_root().join(CORPUS);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut cases = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let case: CorpusCase = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not a corpus case", path.display(), n + 1))?;
        if !names.insert(case.name.clone()) {
            bail!(
                "{}:{}: the name {:?} is used twice",
                path.display(),
                n + 1,
                case.name
            );
        }
        if !SOCKETS.contains(&case.socket.as_str()) {
            bail!(
                "{}:{}: socket {:?} is not one of {SOCKETS:?}",
                path.display(),
                n + 1,
                case.socket
            );
        }
        code_named(&case.expect_code).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        if case.attributes.is_some()
            && (case.parameters.is_some() || case.tokens.is_some() || !case.omit.is_empty())
        {
            bail!(
                "{}:{}: raw attributes exclude parameters, tokens and omit",
                path.display(),
                n + 1
            );
        }
        cases.push(case);
    }
    Ok(cases)
}

/// What the driver would send for `case`: attributes built from the parameters plus pod info and tokens.
pub fn request_for(
    case: &CorpusCase,
    n: usize,
    issuer: &TokenIssuer,
) -> anyhow::Result<(MountRequest, Vec<String>)> {
    let pod = PodFixture::new("corpus", "app")
        .with_name(format!("corpus-pod-{n}"))
        .with_uid(format!("00000000-0000-4000-8000-{n:012}"));
    let mut jwts = Vec::new();
    let mut default_tokens = BTreeMap::new();
    for audience in AUDIENCES {
        let token = issuer.token(&pod, audience)?;
        default_tokens.insert(
            (*audience).to_owned(),
            serde_json::json!({"token": token.jwt(), "expirationTimestamp": token.expiration_timestamp()?}),
        );
        jwts.push(token.jwt().to_owned());
    }
    let default_tokens = serde_json::to_string(&default_tokens)?;
    let attributes = match &case.attributes {
        Some(raw) => raw.expand(),
        None => {
            let mut map: BTreeMap<String, String> = BTreeMap::from([
                ("secretProviderClass".to_owned(), format!("corpus-{n}")),
                (
                    "csi.storage.k8s.io/pod.name".to_owned(),
                    pod.name().to_owned(),
                ),
                (
                    "csi.storage.k8s.io/pod.namespace".to_owned(),
                    pod.namespace().to_owned(),
                ),
                (
                    "csi.storage.k8s.io/pod.uid".to_owned(),
                    pod.uid().to_owned(),
                ),
                (
                    "csi.storage.k8s.io/serviceAccount.name".to_owned(),
                    pod.service_account().to_owned(),
                ),
                ("csi.storage.k8s.io/ephemeral".to_owned(), "true".to_owned()),
            ]);
            for (key, value) in case.parameters.iter().flatten() {
                map.insert(key.clone(), value.expand());
            }
            let tokens = case
                .tokens
                .as_ref()
                .map_or_else(|| default_tokens.clone(), Text::expand);
            map.insert(
                "csi.storage.k8s.io/serviceAccount.tokens".to_owned(),
                tokens,
            );
            for key in &case.omit {
                map.remove(key);
            }
            serde_json::to_string(&map)?
        }
    };
    let request = MountRequest {
        attributes,
        secrets: case
            .secrets
            .as_ref()
            .map_or_else(|| "null".to_owned(), Text::expand),
        target_path: format!(
            "/var/lib/kubelet/pods/corpus-{n}/volumes/kubernetes.io~csi/secrets-store/mount"
        ),
        permission: case
            .permission
            .as_ref()
            .map_or_else(|| "420".to_owned(), Text::expand),
        current_object_version: Vec::new(),
    };
    Ok((request, jwts))
}
