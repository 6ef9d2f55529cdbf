//! SecretProviderClass parameter parsers.
//!
//! The dialect is chosen by the socket a mount arrives on: `vault.sock` and
//! `openbao.sock` take SecretProviderClasses written for those providers
//! unchanged; every other name (`courier` by default) takes the native parameters,
//! which are the same keys plus `backend`. A dialect turns the attributes into a
//! [`MountPlan`]; every error names the parameter and object it is about.

mod aws;
mod azure;
mod bounded_yaml;
mod gcp;
mod native;
mod objects;
mod parsed;
mod vault;

use std::collections::BTreeMap;
use std::fmt;

use crate::backend;
use crate::plan::ObjectSpec;
use crate::object_path::ObjectPath;
use crate::template::{self, TemplateSpec};
use crate::backend::vault::Flavor;

pub(crate) use self::parsed::ParsedPlans;

/// The most objects one mount may list.
pub(crate) const MAX_OBJECTS: usize = 1000;

/// Which parameter set a socket accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Courier's own parameters.
    Native,
    /// hashicorp/vault-csi-provider's parameters (`vault*` keys).
    Vault,
    /// The OpenBao provider's parameters (`bao*`, `openbao*` and `vault*` keys; audience `openbao`).
    OpenBao,
    /// aws/secrets-store-csi-driver-provider-aws's parameters.
    Aws,
    /// GoogleCloudPlatform/secrets-store-csi-driver-provider-gcp's parameters.
    Gcp,
    /// Azure/secrets-store-csi-driver-provider-azure's parameters.
    Azure,
}

impl Dialect {
    /// The dialect served on the socket named `provider_name`.
    #[must_use]
    pub fn for_provider(provider_name: &str) -> Self {
        match provider_name {
            "vault" => Self::Vault,
            "openbao" => Self::OpenBao,
            "aws" => Self::Aws,
            "gcp" => Self::Gcp,
            "azure" => Self::Azure,
            _ => Self::Native,
        }
    }

    /// Name for logs.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Vault => "vault",
            Self::OpenBao => "openbao",
            Self::Aws => "aws",
            Self::Gcp => "gcp",
            Self::Azure => "azure",
        }
    }

    /// Parses the mount's attributes.
    pub fn parse(self, attributes: &BTreeMap<String, String>, defaults: &Defaults) -> Result<MountPlan, Error> {
        let mut plan = self.parse_backend(attributes, defaults)?;
        plan.templates = templates(attributes)?;
        Ok(plan)
    }

    fn parse_backend(self, attributes: &BTreeMap<String, String>, defaults: &Defaults) -> Result<MountPlan, Error> {
        match self {
            Self::Native => native::parse(attributes, defaults),
            Self::Vault => vault::parse(attributes, Flavor::Vault, vault::Socket::Compatible, defaults),
            Self::OpenBao => vault::parse(attributes, Flavor::OpenBao, vault::Socket::Compatible, defaults),
            Self::Aws => aws::parse(attributes, aws::Flavor::Compatible, defaults),
            Self::Gcp => gcp::parse(attributes),
            Self::Azure => azure::parse(attributes),
        }
    }
}

/// A parameter's trimmed value; empty means unset.
fn single(attrs: &BTreeMap<String, String>, name: &str) -> Option<String> {
    attrs.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// A boolean parameter (see [`go_bool`]); anything else is an error naming it.
fn boolean(attrs: &BTreeMap<String, String>, name: &str) -> Result<Option<bool>, Error> {
    single(attrs, name).map(|v| parse_bool(name, &v)).transpose()
}

/// `value` of parameter `name` as a boolean.
fn parse_bool(name: &str, value: &str) -> Result<bool, Error> {
    go_bool(value).ok_or_else(|| {
        Error::new(name, format!("{value:?} is not a boolean; use true or false (also 1, t, T, TRUE, True, 0, f, F, FALSE, False)"))
    })
}

/// A boolean spelled as the anchors accept it (they all parse booleans the same
/// way): `1 t T TRUE true True` and `0 f F FALSE false False`, nothing else, so a
/// SecretProviderClass that mounts there mounts here.
pub(crate) fn go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Provider-wide defaults a SecretProviderClass may override.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Vault address when the SecretProviderClass names none (`--vault-addr`).
    pub vault_address: String,
    /// AWS region when the SecretProviderClass names none (`AWS_REGION`).
    pub aws_region: Option<String>,
}

/// What a mount fetches and from where.
#[derive(Debug, Clone)]
pub struct MountPlan {
    /// The backend's part: its configuration and where each object comes from
    /// (`backend`'s objects match `objects` one to one).
    pub backend: backend::Plan,
    /// The objects, in SecretProviderClass order: where each goes and how it is written.
    pub objects: Vec<ObjectSpec>,
    /// Templated files (`templates`), rendered after the objects.
    pub templates: Vec<TemplateSpec>,
}

/// The `templates` parameter: a YAML list of `{path, template, filePermission}`.
/// Available in every dialect; the anchors' own parsers ignore the key.
fn templates(attributes: &BTreeMap<String, String>) -> Result<Vec<TemplateSpec>, Error> {
    let Some(yaml) = attributes.get("templates").map(|t| t.trim()).filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    let entries = objects::parse_named_list("templates", yaml)?;
    let largest = entries.iter().filter_map(|e| e.string("template").ok().flatten()).map(|t| t.len()).max().unwrap_or(0);
    template::check_limits(entries.len(), largest).map_err(|p| Error::new("templates", p))?;
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let raw_path = entry.required("path")?;
        let path = ObjectPath::parse(&raw_path)
            .map_err(|e| Error::new(format!("templates[{}].path", entry.index), format!("{raw_path:?} {e}")))?;
        let source = entry.required("template")?;
        template::check_syntax(&source).map_err(|problem| {
            Error::new(format!("templates[{}].template", entry.index), format!("template for {:?}: {problem}", path.as_str()))
        })?;
        let mode = entry.file_mode("filePermission")?;
        out.push(TemplateSpec { index: entry.index, path, source, mode });
    }
    Ok(out)
}

/// A parameter problem: which parameter (and object), and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// `roleName`, `objects`, `objects[2].secretPath`, ...
    pub field: String,
    /// What is wrong; never a secret value.
    pub problem: String,
}

impl Error {
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self { field: field.into(), problem: problem.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for Error {}
