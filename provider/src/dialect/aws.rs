//! Parameters of aws/secrets-store-csi-driver-provider-aws, accepted unchanged,
//! with the same checks (and the same combinations rejected).

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::objects::{RawObject, parse_list};
use super::{Defaults, Error, MountPlan, boolean, single};
use crate::backend::aws::{AwsAuth, AwsConfig, AwsObject, FailoverMode, Service, VersionSelector};
use crate::backend::{BackendPlan, Plan};
use crate::plan::{Derived, Expand, ObjectSpec};
use crate::object_path::ObjectPath;
use crate::plan::kind_of;

/// Object fields this dialect reads.
const OBJECT_FIELDS: &[&str] = &[
    "objectName",
    "objectType",
    "objectAlias",
    "objectVersion",
    "objectVersionLabel",
    "filePermission",
    "jmesPath",
    "failoverObject",
    "encoding",
    "objectEncoding",
    "expandKeys",
    "render",
];

/// The object fields the AWS provider itself reads. Its decoder matches field
/// names case-insensitively, so these (and those of `jmesPath` entries and of
/// `failoverObject`) are folded to these spellings first. Courier's own fields
/// (`encoding`, `expandKeys`, `render`, ...) are matched exactly.
const ANCHOR_FIELDS: &[&str] = &[
    "objectName",
    "objectAlias",
    "objectVersion",
    "objectVersionLabel",
    "objectType",
    "filePermission",
    "jmesPath",
    "failoverObject",
];
/// Fields of each `jmesPath` entry, folded as [`ANCHOR_FIELDS`].
const JMES_FIELDS: &[&str] = &["path", "objectAlias", "filePermission"];
/// Fields of `failoverObject`, folded as [`ANCHOR_FIELDS`].
const FAILOVER_FIELDS: &[&str] = &["objectName", "objectVersion", "objectVersionLabel"];

/// Whether the native dialect may override the role (`roleArn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavor {
    /// The AWS provider's parameters exactly.
    Compatible,
    /// Courier's native parameters: also `roleArn`.
    Native,
}


/// Parses an AWS-provider SecretProviderClass.
pub(super) fn parse(attrs: &BTreeMap<String, String>, flavor: Flavor, defaults: &Defaults) -> Result<MountPlan, Error> {
    let region = single(attrs, "region").or_else(|| defaults.aws_region.clone()).ok_or_else(|| {
        Error::new(
            "region",
            "no region is known: set the SecretProviderClass 'region' parameter, or AWS_REGION (--aws-region) on the provider",
        )
    })?;
    let failover_region = single(attrs, "failoverRegion");
    if failover_region.as_deref() == Some(region.as_str()) {
        return Err(Error::new("failoverRegion", format!("{region:?} must differ from the primary region")));
    }
    let translate = match single(attrs, "pathTranslation") {
        None => Some('_'),
        Some(t) if t.eq_ignore_ascii_case("false") => None,
        Some(t) if t.chars().count() == 1 => t.chars().next(),
        Some(t) => {
            return Err(Error::new("pathTranslation", format!("{t:?} must be 'False' or a single character")));
        }
    };
    let use_pod_identity = boolean(attrs, "usePodIdentity")?.unwrap_or(false);
    let prefer_ipv6 = match single(attrs, "preferredAddressType").map(|v| v.to_ascii_lowercase()) {
        None => false,
        Some(v) if v == "ipv4" || v == "auto" => false,
        Some(v) if v == "ipv6" => true,
        // The AWS provider reads any other value as `auto`; so does its socket here.
        Some(v) if flavor == Flavor::Compatible => {
            tracing::debug!(value = %v, "preferredAddressType is not ipv4, ipv6 or auto; using auto");
            false
        }
        Some(v) => return Err(Error::new("preferredAddressType", format!("{v:?} must be ipv4, ipv6 or auto"))),
    };
    let role_arn = match flavor {
        Flavor::Native => single(attrs, "roleArn"),
        Flavor::Compatible => None,
    };
    if let Some(arn) = &role_arn
        && (!arn.starts_with("arn:") || arn.split(':').count() < 6) {
            return Err(Error::new("roleArn", format!("{arn:?} is not an IAM role ARN")));
        }
    let auth = if use_pod_identity {
        if role_arn.is_some() {
            return Err(Error::new("roleArn", "cannot be combined with usePodIdentity: \"true\""));
        }
        AwsAuth::PodIdentity { prefer_ipv6 }
    } else {
        AwsAuth::Irsa { role_arn }
    };

    let yaml = single(attrs, "objects").ok_or_else(|| Error::new("objects", "missing; list the secrets to mount"))?;
    // As the AWS provider: the same objectName may be listed again with another
    // alias or version label; aliases are unique; and no two files may collide.
    let mut combos: HashSet<(String, String, String)> = HashSet::new();
    let mut aliases: HashSet<String> = HashSet::new();
    let mut paths: HashSet<String> = HashSet::new();
    let mut objects = Vec::new();
    let mut sources = Vec::new();
    for mut raw in parse_list(&yaml)? {
        raw.fold_field_names(ANCHOR_FIELDS, &[("jmesPath", JMES_FIELDS), ("failoverObject", FAILOVER_FIELDS)]);
        let (spec, source) = object(&raw, &region, failover_region.as_deref(), translate)?;
        let name = raw.required("objectName")?;
        let alias = raw.string("objectAlias")?;
        let combo = (name.clone(), alias.clone().unwrap_or_default(), raw.string("objectVersionLabel")?.unwrap_or_default());
        if !combos.insert(combo) {
            return Err(Error::new(
                format!("objects[{}].objectName", raw.index),
                format!("{name:?} is already listed with the same objectAlias and objectVersionLabel"),
            ));
        }
        if let Some(alias) = &alias {
            claim(&mut aliases, &raw, "objectAlias", alias)?;
        }
        for (j, derived) in spec.derived.iter().enumerate() {
            claim(&mut aliases, &raw, &format!("jmesPath[{j}].objectAlias"), derived.path.as_str())?;
        }
        for path in std::iter::once(&spec.path).chain(spec.derived.iter().map(|d| &d.path)) {
            if !paths.insert(path.as_str().to_owned()) {
                let field = if alias.is_some() { "objectAlias" } else { "objectName" };
                return Err(Error::new(
                    format!("objects[{}].{field}", raw.index),
                    format!("file {:?} is written by another object too; names must be unique", path.as_str()),
                ));
            }
        }
        let unknown = raw.unknown_fields(OBJECT_FIELDS);
        if !unknown.is_empty() {
            tracing::debug!(object = raw.index, fields = ?unknown, "ignoring unknown object fields");
        }
        objects.push(spec);
        sources.push(source);
    }
    // The AWS provider asks every region and fails on a 4xx from any of them; the
    // native socket asks the failover region only when the primary cannot answer.
    let failover_mode = match flavor {
        Flavor::Compatible => FailoverMode::AskBoth,
        Flavor::Native => FailoverMode::OnUnavailable,
    };
    Ok(MountPlan {
        backend: Plan::Aws(BackendPlan {
            config: AwsConfig { region, failover_region, failover_mode, auth },
            objects: sources,
        }),
        objects,
        templates: Vec::new(),
    })
}

fn claim(names: &mut HashSet<String>, raw: &RawObject, field: &str, name: &str) -> Result<(), Error> {
    if names.insert(name.to_owned()) {
        Ok(())
    } else {
        Err(Error::new(format!("objects[{}].{field}", raw.index), format!("name {name:?} is already in use")))
    }
}

fn object(raw: &RawObject, region: &str, failover_region: Option<&str>, translate: Option<char>) -> Result<(ObjectSpec, AwsObject), Error> {
    let i = raw.index;
    let field = |f: &str| format!("objects[{i}].{f}");
    let name = raw.required("objectName")?;
    let declared = raw.string("objectType")?;
    let service = service_of(&name, declared.as_deref(), region).map_err(|p| Error::new(field("objectName"), p))?;
    let selector = VersionSelector { version: raw.string("objectVersion")?, label: raw.string("objectVersionLabel")? };
    if service == Service::Ssm && selector.version.is_some() && selector.label.is_some() {
        return Err(Error::new(
            field("objectVersionLabel"),
            "SSM parameters cannot set both objectVersion and objectVersionLabel",
        ));
    }
    let alias = raw.string("objectAlias")?;

    let failover = match raw.map("failoverObject")? {
        None => None,
        Some(map) => {
            let get = |k: &str| -> Result<Option<String>, Error> {
                match map.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) if s.is_empty() => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(Value::Number(n)) => Ok(Some(n.to_string())),
                    Some(other) => Err(Error::new(field(&format!("failoverObject.{k}")), format!("expected a string, found {}", kind_of(other)))),
                }
            };
            let Some(failover_name) = get("objectName")? else {
                return Err(Error::new(field("failoverObject.objectName"), "missing"));
            };
            if alias.is_none() {
                return Err(Error::new(field("objectAlias"), "must be set for objects with a failoverObject"));
            }
            let Some(fregion) = failover_region else {
                return Err(Error::new(field("failoverObject"), "is allowed only when failoverRegion is set"));
            };
            let fservice = service_of(&failover_name, declared.as_deref(), fregion)
                .map_err(|p| Error::new(field("failoverObject.objectName"), p))?;
            if fservice != service {
                return Err(Error::new(field("failoverObject.objectName"), "names another service than objectName"));
            }
            let fselector = VersionSelector { version: get("objectVersion")?, label: get("objectVersionLabel")? };
            if service == Service::Ssm && fselector.version.is_some() && fselector.label.is_some() {
                return Err(Error::new(
                    field("failoverObject.objectVersionLabel"),
                    "SSM parameters cannot set both objectVersion and objectVersionLabel",
                ));
            }
            if fselector.version != selector.version {
                return Err(Error::new(
                    field("failoverObject.objectVersion"),
                    "must equal objectVersion (versions must match between the primary and failover regions)",
                ));
            }
            Some((failover_name, fselector))
        }
    };

    // An SSM path listed without an alias writes nothing under its own name; its
    // id only has to be a valid name.
    let lists_path_at_root = service == Service::Ssm && name.ends_with('/') && alias.is_none();
    let file = if lists_path_at_root {
        file_name(name.trim_matches('/'), Some('_'))
    } else {
        file_name(alias.as_deref().unwrap_or(&name), translate)
    };
    let path = ObjectPath::parse(&file).map_err(|e| {
        let f = if alias.is_some() { "objectAlias" } else { "objectName" };
        Error::new(field(f), format!("file name {file:?} {e}"))
    })?;
    let mode = raw.file_mode("filePermission")?;
    let encoding = raw.encoding()?;

    let mut derived = Vec::new();
    match raw.value("jmesPath") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            for (j, entry) in entries.iter().enumerate() {
                let jf = |f: &str| field(&format!("jmesPath[{j}].{f}"));
                let Value::Object(entry) = entry else {
                    return Err(Error::new(field(&format!("jmesPath[{j}]")), format!("expected a map, found {}", kind_of(entry))));
                };
                let text = |k: &str| entry.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
                let expression = text("path").ok_or_else(|| Error::new(jf("path"), "missing"))?;
                jmespath::compile(expression)
                    .map_err(|e| Error::new(jf("path"), format!("{expression:?} is not a JMESPath expression: {}", first_line(&e.to_string()))))?;
                let alias = text("objectAlias").ok_or_else(|| Error::new(jf("objectAlias"), "missing"))?;
                let djfile = file_name(alias, translate);
                let dpath = ObjectPath::parse(&djfile).map_err(|e| Error::new(jf("objectAlias"), format!("{djfile:?} {e}")))?;
                let dmode = match entry.get("filePermission") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) if s.trim().is_empty() => None,
                    Some(Value::String(s)) => Some(
                        super::objects::parse_mode(s.trim()).ok_or_else(|| Error::new(jf("filePermission"), format!("{s:?} is not a file mode such as \"0644\"")))?,
                    ),
                    Some(Value::Number(n)) => Some(
                        n.as_u64()
                            .and_then(|v| u32::try_from(v).ok())
                            .filter(|v| *v <= 0o777)
                            .ok_or_else(|| Error::new(jf("filePermission"), "is not a file mode"))?,
                    ),
                    Some(other) => return Err(Error::new(jf("filePermission"), format!("expected a string, found {}", kind_of(other)))),
                };
                derived.push(Derived { path: dpath, mode: dmode, jmes_path: expression.to_owned() });
            }
        }
        Some(other) => return Err(Error::new(field("jmesPath"), format!("expected a list, found {}", kind_of(other)))),
    }

    // expandKeys: an SSM path ending in '/' lists every parameter under it (files named
    // relative to it, under objectAlias if set); otherwise the JSON value's keys become files.
    let expand_flag = raw.flag("expandKeys")?.unwrap_or(false);
    let list_path = expand_flag && service == Service::Ssm && name.ends_with('/');
    if name.ends_with('/') && service == Service::Ssm && !expand_flag {
        return Err(Error::new(field("objectName"), format!("{name:?} is a path; add expandKeys: true to mount every parameter under it")));
    }
    if list_path && (selector.version.is_some() || selector.label.is_some()) {
        return Err(Error::new(field("objectVersion"), "cannot pin a version when expanding an SSM path"));
    }
    let expand = match (expand_flag, list_path) {
        (false, _) => None,
        (true, true) => Some(Expand { base: alias.as_ref().map(|_| path.clone()) }),
        (true, false) => Some(Expand { base: Some(path.clone()) }),
    };
    let spec = ObjectSpec {
        index: i,
        name: alias.clone().unwrap_or_else(|| name.clone()),
        path,
        write: raw.flag("render")?.unwrap_or(true),
        expand,
        mode,
        encoding,
        descriptor: format!("aws|{region}|{}", raw.canonical()),
        derived,
    };
    Ok((spec, AwsObject { service, name, selector, failover, list_path }))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().chars().take(200).collect()
}

/// The file an object is written to: alias or name, with `/` translated (or a
/// leading `/` stripped when translation is off), as the AWS provider does.
fn file_name(name: &str, translate: Option<char>) -> String {
    match translate {
        Some(c) => name.replace('/', &c.to_string()),
        None => name.trim_start_matches('/').to_owned(),
    }
}

/// The service of `name` (a name with `objectType`, or an ARN), checking the ARN's region.
fn service_of(name: &str, declared: Option<&str>, region: &str) -> Result<Service, String> {
    let declared = match declared.map(str::to_ascii_lowercase).as_deref() {
        None => None,
        Some("secretsmanager") => Some(Service::SecretsManager),
        Some("ssmparameter") => Some(Service::Ssm),
        Some(other) => return Err(format!("objectType {other:?} is not supported; use secretsmanager or ssmparameter")),
    };
    if !name.starts_with("arn:") {
        return declared.ok_or_else(|| format!("{name:?}: set objectType (secretsmanager or ssmparameter) or use a full ARN"));
    }
    let parts: Vec<&str> = name.splitn(6, ':').collect();
    if parts.len() < 6 || parts[2].is_empty() || parts[5].is_empty() {
        return Err(format!("{name:?} is not a valid ARN"));
    }
    if parts[3] != region {
        return Err(format!("the ARN's region {:?} must match the region {region:?}", parts[3]));
    }
    let from_arn = match parts[2] {
        "secretsmanager" => Service::SecretsManager,
        "ssm" => Service::Ssm,
        other => return Err(format!("ARN service {other:?} is not supported (secretsmanager or ssm)")),
    };
    match declared {
        Some(d) if d != from_arn => Err(format!("objectType {:?} does not match the ARN's service", d.as_str())),
        _ => Ok(from_arn),
    }
}

#[cfg(test)]
mod tests;
