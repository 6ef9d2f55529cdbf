//! Parameters of Azure/secrets-store-csi-driver-provider-azure, accepted
//! unchanged: `keyvaultName`, `tenantID` (or the older `tenantId`), `clientID`,
//! `cloudName`, `cloudEnvFileName`, the identity switches (`usePodIdentity`,
//! `useVMManagedIdentity`, `useAzureTokenProxy`, refused when on: only the pod's
//! workload identity reads), and `objects` as `array:` of YAML strings, each an
//! object with `objectName`, `objectType` (`secret`, `key`, `cert`),
//! `objectAlias`, `objectVersion`, `objectVersionHistory`, `objectFormat`,
//! `objectEncoding` and `filePermission`; plus Courier's own `encoding`,
//! `expandKeys`, `render` and `templates`. Field names are matched exactly, as
//! the Azure provider's YAML decoder does; fields it does not know are ignored.

use std::collections::{BTreeMap, HashSet};

use serde_json::Value;

use super::objects::RawObject;
use super::{Error, MountPlan, boolean, bounded_yaml, single};
use crate::backend::azure::{
    AzureAuth, AzureConfig, AzureObject, Cloud, MAX_HISTORY, ObjectType, parse_cloud_name,
    valid_client_id, valid_object_name, valid_tenant, valid_version, vault_name_problem,
};
use crate::backend::{BackendPlan, Plan};
use crate::object_path::ObjectPath;
use crate::plan::{Encoding, Expand, ObjectSpec, kind_of};

/// The list parameter.
const LIST: &str = "objects";
/// Longest `cloudEnvFileName` accepted.
const MAX_FILE_NAME_LEN: usize = 1024;

/// Parses an Azure-provider SecretProviderClass (also the native socket's `backend: azure`).
pub(super) fn parse(attrs: &BTreeMap<String, String>) -> Result<MountPlan, Error> {
    for (switch, why) in [
        (
            "usePodIdentity",
            "aad-pod-identity (its NMI on the node) is not supported",
        ),
        (
            "useVMManagedIdentity",
            "the node's managed identity is shared by every pod on the node and is never used",
        ),
        (
            "useAzureTokenProxy",
            "identity binding through the Azure token proxy is not supported",
        ),
    ] {
        if boolean(attrs, switch)? == Some(true) {
            return Err(Error::new(
                switch,
                format!(
                    "{why}; use Entra workload identity: set clientID (or annotate the service account with \
                     azure.workload.identity/client-id) and have the driver request tokens for api://AzureADTokenExchange"
                ),
            ));
        }
    }
    let vault = single(attrs, "keyvaultName")
        .ok_or_else(|| Error::new("keyvaultName", "is not provided; name the Key Vault"))?;
    if let Some(problem) = vault_name_problem(&vault) {
        return Err(Error::new("keyvaultName", problem));
    }
    // `tenantID` wins over the older `tenantId`, as in the Azure provider.
    let (tenant_field, tenant) = match (single(attrs, "tenantID"), single(attrs, "tenantId")) {
        (Some(t), _) => ("tenantID", Some(t)),
        (None, t) => ("tenantId", t),
    };
    if let Some(t) = &tenant
        && !valid_tenant(t)
    {
        return Err(Error::new(
            tenant_field,
            format!("{t:?} is not a tenant id (a GUID) or a tenant domain name"),
        ));
    }
    let client_id = single(attrs, "clientID");
    if let Some(c) = &client_id
        && !valid_client_id(c)
    {
        return Err(Error::new(
            "clientID",
            format!("{c:?} is not an application (client) id"),
        ));
    }
    let cloud_name = single(attrs, "cloudName").unwrap_or_default();
    let cloud =
        match parse_cloud_name(&cloud_name).map_err(|problem| Error::new("cloudName", problem))? {
            Some(cloud) => cloud,
            None => {
                let file = single(attrs, "cloudEnvFileName").ok_or_else(|| {
                    Error::new(
                        "cloudEnvFileName",
                        "is required with cloudName AzureStackCloud",
                    )
                })?;
                if file.len() > MAX_FILE_NAME_LEN || file.chars().any(char::is_control) {
                    return Err(Error::new(
                        "cloudEnvFileName",
                        format!("must be at most {MAX_FILE_NAME_LEN} printable characters"),
                    ));
                }
                Cloud::Stack { file }
            }
        };
    let config = AzureConfig {
        vault,
        tenant,
        auth: AzureAuth::Pod { client_id },
        cloud,
    };

    let yaml = single(attrs, LIST)
        .ok_or_else(|| Error::new(LIST, "is not set; list the Key Vault objects to mount"))?;
    let mut paths: HashSet<String> = HashSet::new();
    let mut objects = Vec::new();
    let mut sources = Vec::new();
    for raw in entries(&yaml)? {
        let (spec, source) = object(&raw, &config)?;
        if !paths.insert(spec.path.as_str().to_owned()) {
            return Err(Error::new(
                format!("{LIST}[{}].objectAlias", raw.index),
                format!(
                    "file {:?} is written by another object too; set a distinct objectAlias",
                    spec.path.as_str()
                ),
            ));
        }
        objects.push(spec);
        sources.push(source);
    }
    Ok(MountPlan {
        backend: Plan::Azure(BackendPlan {
            config,
            objects: sources,
        }),
        objects,
        templates: Vec::new(),
    })
}

/// `objects`: a YAML map whose `array` lists one YAML string per object.
fn entries(yaml: &str) -> Result<Vec<RawObject>, Error> {
    let limits = RawObject::limits();
    if yaml.len() > limits.max_text_bytes {
        return Err(Error::new(
            LIST,
            format!("is {} bytes; at most {}", yaml.len(), limits.max_text_bytes),
        ));
    }
    let syntax = |field: String, failure: bounded_yaml::ParseFailure| match failure {
        bounded_yaml::ParseFailure::Budget(limit) => Error::new(field, limit),
        bounded_yaml::ParseFailure::Syntax(line) => {
            Error::new(field, format!("is not valid YAML: {line}"))
        }
    };
    let outer =
        bounded_yaml::parse(yaml, RawObject::limits()).map_err(|f| syntax(LIST.to_owned(), f))?;
    let items = match outer {
        Value::Object(mut map) => match map.remove("array") {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => {
                return Err(Error::new(
                    LIST,
                    "has no 'array' list; write objects: |\\n  array:\\n    - |\\n      objectName: ...",
                ));
            }
            Some(other) => {
                return Err(Error::new(
                    format!("{LIST}.array"),
                    format!("expected a list, found {}", kind_of(&other)),
                ));
            }
        },
        other => {
            return Err(Error::new(
                LIST,
                format!(
                    "expected a map with an 'array' list, found {}",
                    kind_of(&other)
                ),
            ));
        }
    };
    if items.is_empty() {
        return Err(Error::new(
            format!("{LIST}.array"),
            "is an empty list; list at least one object",
        ));
    }
    if items.len() > super::MAX_OBJECTS {
        return Err(Error::new(
            format!("{LIST}.array"),
            format!(
                "lists {} objects; at most {}",
                items.len(),
                super::MAX_OBJECTS
            ),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| {
            let field = format!("{LIST}[{index}]");
            let text = match item {
                Value::String(text) => text,
                other => {
                    return Err(Error::new(
                        field,
                        format!(
                            "expected a YAML string holding the object, found {}",
                            kind_of(&other)
                        ),
                    ));
                }
            };
            match bounded_yaml::parse(&text, RawObject::limits())
                .map_err(|f| syntax(field.clone(), f))?
            {
                Value::Object(fields) => Ok(RawObject::from_fields(LIST, index, fields)),
                other => Err(Error::new(
                    field,
                    format!("expected a map, found {}", kind_of(&other)),
                )),
            }
        })
        .collect()
}

/// A trimmed optional text field (the Azure provider trims every string field).
fn text(raw: &RawObject, name: &str) -> Result<Option<String>, Error> {
    Ok(raw
        .string(name)?
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty()))
}

fn object(raw: &RawObject, config: &AzureConfig) -> Result<(ObjectSpec, AzureObject), Error> {
    let i = raw.index;
    let field = |f: &str| format!("{LIST}[{i}].{f}");
    let name =
        text(raw, "objectName")?.ok_or_else(|| Error::new(field("objectName"), "missing"))?;
    if !valid_object_name(&name) {
        return Err(Error::new(
            field("objectName"),
            format!("{name:?} is not a Key Vault object name (1-127 of [0-9a-zA-Z-])"),
        ));
    }
    let type_text = text(raw, "objectType")?.unwrap_or_default();
    let kind = ObjectType::parse(&type_text).ok_or_else(|| {
        Error::new(
            field("objectType"),
            format!("{type_text:?}: Invalid vaultObjectTypes. Should be secret, key, or cert"),
        )
    })?;
    let version = match text(raw, "objectVersion")? {
        None => None,
        Some(v) if v == "latest" => None,
        Some(v) if valid_version(&v) => Some(v),
        Some(v) => {
            return Err(Error::new(
                field("objectVersion"),
                format!("{v:?} is not a Key Vault version id"),
            ));
        }
    };
    let history = match raw.value("objectVersionHistory") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| Error::new(field("objectVersionHistory"), "must be an integer"))?,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(
            s.trim()
                .parse::<i64>()
                .map_err(|_| Error::new(field("objectVersionHistory"), "must be an integer"))?,
        ),
        Some(other) => {
            return Err(Error::new(
                field("objectVersionHistory"),
                format!("expected an integer, found {}", kind_of(other)),
            ));
        }
    };
    // 1 or less is one version written as one file, as in the Azure provider.
    let history = match history {
        Some(n) if n > i64::from(MAX_HISTORY) => {
            return Err(Error::new(
                field("objectVersionHistory"),
                format!("{n} is more than {MAX_HISTORY} versions"),
            ));
        }
        Some(n) if n > 1 => Some(u32::try_from(n).unwrap_or(MAX_HISTORY)),
        _ => None,
    };
    let format = text(raw, "objectFormat")?;
    if let Some(f) = &format
        && !f.eq_ignore_ascii_case("pem")
        && !f.eq_ignore_ascii_case("pfx")
    {
        return Err(Error::new(
            field("objectFormat"),
            format!("invalid objectFormat: {f}, should be PEM or PFX"),
        ));
    }
    if format.as_deref() == Some("pfx") && kind != ObjectType::Secret {
        return Err(Error::new(
            field("objectFormat"),
            "PFX format only supported for objectType: secret",
        ));
    }
    let pfx = kind == ObjectType::Secret
        && format
            .as_deref()
            .is_some_and(|f| f.eq_ignore_ascii_case("pfx"));
    if kind != ObjectType::Secret && text(raw, "objectEncoding")?.is_some() {
        return Err(Error::new(
            field("objectEncoding"),
            "objectEncoding only supported for objectType: secret",
        ));
    }
    let encoding = raw.encoding()?;
    if kind != ObjectType::Secret && encoding != Encoding::Utf8 {
        return Err(Error::new(
            field("encoding"),
            "only a secret's value can be decoded; keys and certificates are written as PEM",
        ));
    }
    let file = text(raw, "objectAlias")?.unwrap_or_else(|| name.clone());
    let path_field = if text(raw, "objectAlias")?.is_some() {
        "objectAlias"
    } else {
        "objectName"
    };
    let path = ObjectPath::parse(&file)
        .map_err(|e| Error::new(field(path_field), format!("{file:?} {e}")))?;
    let expand_keys = raw.flag("expandKeys")?.unwrap_or(false);
    if expand_keys && history.is_some() {
        return Err(Error::new(
            field("expandKeys"),
            "cannot be combined with objectVersionHistory",
        ));
    }
    let expand = (expand_keys || history.is_some()).then(|| Expand {
        base: Some(path.clone()),
    });
    let cloud = match &config.cloud {
        Cloud::Public => "public".to_owned(),
        Cloud::UsGovernment => "usgov".to_owned(),
        Cloud::China => "china".to_owned(),
        Cloud::Stack { file } => format!("stack:{file}"),
    };
    let spec = ObjectSpec {
        index: i,
        name: path.as_str().to_owned(),
        write: raw.flag("render")?.unwrap_or(true),
        expand,
        mode: raw.file_mode("filePermission")?,
        encoding,
        descriptor: format!("azure|{}|{cloud}|{}", config.vault, raw.canonical()),
        derived: Vec::new(),
        path,
    };
    Ok((
        spec,
        AzureObject {
            name,
            kind,
            version,
            history,
            pfx,
        },
    ))
}

#[cfg(test)]
mod tests;
