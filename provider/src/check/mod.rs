//! `courier-provider check`: what the provider would do with SecretProviderClasses,
//! offline. Each class goes through the same code a mount does (the driver's
//! attribute encoding, [`MountContext::decode`], [`Dialect::parse`]) and its
//! errors are the status the mount would answer; nothing is fetched and no
//! network address is contacted.

mod manifest;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Parser;
use serde::Serialize;

use crate::backend::Plan;
use crate::backend::gcp::GcpAuth;
use crate::plan::ObjectSpec;
use crate::dialect::{Defaults, Dialect, MountPlan};
use crate::request::{self, MountContext};
use crate::server;

pub(crate) use manifest::InputError;

/// Exit code: every SecretProviderClass would mount as far as can be told offline.
pub(crate) const EXIT_OK: i32 = 0;
/// Exit code: at least one SecretProviderClass would fail.
pub(crate) const EXIT_INVALID: i32 = 1;
/// Exit code: bad flags, or an input file that cannot be read as YAML within the bounds.
pub(crate) const EXIT_USAGE: i32 = 2;

/// The API group of SecretProviderClasses.
const SPC_GROUP: &str = "secrets-store.csi.x-k8s.io/";
/// The mode the driver sends when the volume sets none (`permission: "420"`).
const DRIVER_DEFAULT_PERMISSION: &str = "420";
/// The namespace a class without one is checked in (where `kubectl apply` would put it).
const DEFAULT_NAMESPACE: &str = "default";
/// The service account and pod the attributes are built for; only their presence matters.
const PLACEHOLDER_POD: &str = "courier-check";

/// Checks SecretProviderClass manifests offline: dialect, backend, files and modes, the
/// token audiences needed, and every error as a mount would report it.
#[derive(Debug, Parser)]
#[command(name = "courier-provider check", version)]
pub(crate) struct CheckArgs {
    /// Manifest files (one or many YAML documents) or directories of `*.yaml`, `*.yml`, `*.json`.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,

    /// `text` for people, `json` for pipelines.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// The provider's `--vault-addr`, used where a class sets no `vaultAddress`.
    #[arg(long, env = "VAULT_ADDR", default_value = "https://127.0.0.1:8200")]
    pub vault_addr: String,

    /// The provider's `AWS_REGION`, used where a class sets no `region`.
    #[arg(long, env = "AWS_REGION")]
    pub aws_region: Option<String>,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Output {
    /// Human-readable.
    Text,
    /// One JSON object.
    Json,
}

/// The whole report.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// One entry per SecretProviderClass, in file and document order.
    pub classes: Vec<ClassReport>,
    /// Documents of other kinds, left alone.
    pub skipped: usize,
    /// How many classes would mount, and how many not.
    pub valid: usize,
    /// See [`valid`](Self::valid).
    pub invalid: usize,
}

/// What the provider would do with one SecretProviderClass.
#[derive(Debug, Serialize)]
pub(crate) struct ClassReport {
    /// The file.
    pub file: String,
    /// 1-based document number in the file.
    pub document: usize,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`, or `default`.
    pub namespace: String,
    /// `spec.provider`: the socket the driver calls.
    pub provider: String,
    /// `vault`, `openbao`, `aws` (those providers' parameters) or `native` (Courier's).
    pub dialect: &'static str,
    /// The backend and where it is, when the parameters parse.
    pub backend: Option<BackendReport>,
    /// Audiences of the service-account tokens the mount needs: the CSIDriver's
    /// `spec.tokenRequests` must list them.
    pub audiences: Vec<String>,
    /// Files the mount writes.
    pub files: Vec<FileReport>,
    /// Whether the mount would get past its parameters.
    pub valid: bool,
    /// Errors, each as the mount would answer it.
    pub errors: Vec<ErrorReport>,
}

/// Backend facts.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BackendReport {
    /// `vault`, `openbao`, `aws`, `gcp` or `azure`.
    pub name: &'static str,
    /// Vault/OpenBao address; the Key Vault name for Azure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Vault/OpenBao auth mount path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_mount: Option<String>,
    /// Vault/OpenBao role; the Entra application (`clientID`) for Azure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// AWS region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

/// One file of the mount.
#[derive(Debug, Serialize)]
pub(crate) struct FileReport {
    /// Path below the mount; for `expandKeys`, `<base>/*` (one file per key).
    pub path: String,
    /// Octal mode, e.g. `0644`.
    pub mode: String,
    /// Where it comes from: `objects[2]`, `objects[2].jmesPath[0]`, `templates[0]`.
    pub source: String,
}

/// An error as the mount would answer it.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorReport {
    /// The gRPC code (`InvalidArgument`).
    pub code: String,
    /// The status message.
    pub message: String,
}

/// Runs the subcommand on `args` (without the `check` word) and returns the exit code.
/// Writes the report to stdout and problems with the input to stderr.
pub fn run_cli(args: impl IntoIterator<Item = OsString>) -> i32 {
    let args = match CheckArgs::try_parse_from(std::iter::once(OsString::from("courier-provider check")).chain(args)) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    let report = match check(&args) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("courier-provider check: {e}");
            return EXIT_USAGE;
        }
    };
    let out = match args.output {
        Output::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("courier-provider check: cannot encode the report: {e}");
                return EXIT_USAGE;
            }
        },
        Output::Text => text(&report),
    };
    print!("{out}");
    if report.invalid > 0 { EXIT_INVALID } else { EXIT_OK }
}

/// Reads every path and checks every SecretProviderClass in it.
pub(crate) fn check(args: &CheckArgs) -> Result<Report, InputError> {
    let defaults = Defaults {
        vault_address: args.vault_addr.trim_end_matches('/').to_owned(),
        aws_region: args.aws_region.clone().filter(|r| !r.is_empty()),
    };
    let documents = manifest::read_all(&args.paths)?;
    let mut report = Report { classes: Vec::new(), skipped: 0, valid: 0, invalid: 0 };
    for doc in documents {
        let is_spc = doc.body.kind.as_deref() == Some("SecretProviderClass")
            && doc.body.api_version.as_deref().is_some_and(|v| v.starts_with(SPC_GROUP));
        if !is_spc {
            report.skipped += 1;
            continue;
        }
        let class = check_class(&doc, &defaults);
        if class.valid {
            report.valid += 1;
        } else {
            report.invalid += 1;
        }
        report.classes.push(class);
    }
    Ok(report)
}

fn check_class(doc: &manifest::Located, defaults: &Defaults) -> ClassReport {
    let name = doc.body.metadata.name.clone().unwrap_or_default();
    let namespace = doc.body.metadata.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let mut class = ClassReport {
        file: doc.file.display().to_string(),
        document: doc.document,
        name: name.clone(),
        namespace: namespace.clone(),
        provider: String::new(),
        dialect: Dialect::Native.name(),
        backend: None,
        audiences: Vec::new(),
        files: Vec::new(),
        valid: false,
        errors: Vec::new(),
    };
    if name.is_empty() {
        class.errors.push(ErrorReport { code: "Manifest".to_owned(), message: "metadata.name: missing".to_owned() });
    }
    let (provider, parameters) = match manifest::provider_and_parameters(doc.body.spec.as_ref()) {
        Ok(found) => found,
        Err(problem) => {
            class.errors.push(ErrorReport { code: "Manifest".to_owned(), message: problem });
            return class;
        }
    };
    let dialect = Dialect::for_provider(&provider);
    class.provider = provider;
    class.dialect = dialect.name();
    match plan(&parameters, &name, &namespace, dialect, defaults) {
        Ok((plan, default_mode)) => {
            describe(&mut class, &plan, default_mode);
            class.valid = class.errors.is_empty();
        }
        Err(status) => class.errors.push(ErrorReport {
            code: format!("{:?}", status.code()),
            message: status.message().to_owned(),
        }),
    }
    class
}

/// The plan a mount of this class would make: the attributes built as the driver builds
/// them (parameters, then the pod's information), decoded and parsed by the provider's code.
fn plan(
    parameters: &BTreeMap<String, String>,
    name: &str,
    namespace: &str,
    dialect: Dialect,
    defaults: &Defaults,
) -> Result<(MountPlan, u32), tonic::Status> {
    let mut attributes = parameters.clone();
    attributes.insert(request::SPC_KEY.to_owned(), name.to_owned());
    attributes.insert(request::POD_NAMESPACE_KEY.to_owned(), namespace.to_owned());
    attributes.insert(request::POD_NAME_KEY.to_owned(), PLACEHOLDER_POD.to_owned());
    attributes.insert(request::POD_UID_KEY.to_owned(), PLACEHOLDER_POD.to_owned());
    attributes.insert(request::SERVICE_ACCOUNT_KEY.to_owned(), PLACEHOLDER_POD.to_owned());
    let encoded = serde_json::to_string(&attributes)
        .map_err(|e| tonic::Status::internal(format!("cannot encode the attributes: {e}")))?;
    let ctx = MountContext::decode(&encoded, "null", DRIVER_DEFAULT_PERMISSION).map_err(server::request_error_status)?;
    let plan = dialect.parse(&ctx.attributes, defaults).map_err(server::parameter_error_status)?;
    Ok((plan, ctx.default_mode))
}

fn describe(class: &mut ClassReport, plan: &MountPlan, default_mode: u32) {
    let mode = |m: Option<u32>| format!("{:04o}", m.unwrap_or(default_mode));
    match &plan.backend {
        Plan::Vault(vault) => {
            let cfg = &vault.config;
            class.audiences.push(cfg.audience.clone());
            class.backend = Some(BackendReport {
                name: plan.backend.name(),
                address: Some(cfg.address.clone()),
                auth_mount: Some(cfg.auth_mount.clone()),
                role: Some(cfg.role.clone()),
                region: None,
            });
        }
        Plan::Aws(aws) => {
            let cfg = &aws.config;
            class.audiences.push(cfg.auth.audience().to_owned());
            class.backend = Some(BackendReport {
                name: plan.backend.name(),
                address: None,
                auth_mount: None,
                role: None,
                region: Some(cfg.region.clone()),
            });
        }
        Plan::Gcp(gcp) => {
            // Without an `audience` parameter the pool comes from the provider's
            // --gcp-workload-pool, which an offline check cannot see.
            if let GcpAuth::Pod { audience: Some(audience) } = &gcp.config.auth {
                class.audiences.push(audience.clone());
            }
            class.backend = Some(BackendReport {
                name: plan.backend.name(),
                address: None,
                auth_mount: None,
                role: None,
                region: None,
            });
        }
        Plan::Azure(azure) => {
            // Entra workload identity: the driver must request this audience.
            class.audiences.push(crate::backend::azure::AUDIENCE.to_owned());
            class.backend = Some(BackendReport {
                name: plan.backend.name(),
                address: Some(azure.config.vault.clone()),
                auth_mount: None,
                role: azure.config.auth_client_id().map(str::to_owned),
                region: None,
            });
        }
    }
    for object in plan.objects.iter().filter(|o| o.write) {
        class.files.push(FileReport { path: object_path(object), mode: mode(object.mode), source: format!("objects[{}]", object.index) });
        for (i, derived) in object.derived.iter().enumerate() {
            class.files.push(FileReport {
                path: derived.path.as_str().to_owned(),
                mode: mode(derived.mode),
                source: format!("objects[{}].jmesPath[{i}]", object.index),
            });
        }
    }
    for template in &plan.templates {
        class.files.push(FileReport {
            path: template.path.as_str().to_owned(),
            mode: mode(template.mode),
            source: format!("templates[{}]", template.index),
        });
    }
}

fn object_path(object: &ObjectSpec) -> String {
    match &object.expand {
        Some(expand) => match &expand.base {
            Some(base) => format!("{}/*", base.as_str()),
            None => "*".to_owned(),
        },
        None => object.path.as_str().to_owned(),
    }
}

/// The report for people.
#[must_use]
pub(crate) fn text(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.classes {
        let verdict = if c.valid { "ok" } else { "INVALID" };
        let _ = writeln!(out, "{}/{} ({} document {}): {verdict}", c.namespace, c.name, c.file, c.document);
        let _ = writeln!(out, "  provider {:?}, dialect {}", c.provider, c.dialect);
        if let Some(b) = &c.backend {
            let mut line = format!("  backend {}", b.name);
            for (label, value) in [("address", &b.address), ("auth", &b.auth_mount), ("role", &b.role), ("region", &b.region)] {
                if let Some(value) = value {
                    let _ = write!(line, ", {label} {value}");
                }
            }
            let _ = writeln!(out, "{line}");
        }
        if !c.audiences.is_empty() {
            let _ = writeln!(out, "  token audiences: {}", c.audiences.join(", "));
        }
        for f in &c.files {
            let _ = writeln!(out, "  file {} {} ({})", f.mode, f.path, f.source);
        }
        for e in &c.errors {
            let _ = writeln!(out, "  error {}: {}", e.code, e.message);
        }
    }
    let _ = writeln!(
        out,
        "{} SecretProviderClass(es): {} valid, {} invalid; {} other document(s) skipped",
        report.classes.len(),
        report.valid,
        report.invalid,
        report.skipped
    );
    out
}
