//! Parameters of GoogleCloudPlatform/secrets-store-csi-driver-provider-gcp,
//! accepted unchanged: `secrets` (a YAML list of `resourceName`, `path` or the
//! older `fileName`, `mode`, `extractJSONKey`, `extractYAMLKey`) and `auth`;
//! plus Courier's own `audience`, `encoding`, `expandKeys`, `render` and
//! `templates`. Field names are matched exactly, as the GCP provider's decoder
//! does; fields it does not know are ignored, as there.

use std::collections::{BTreeMap, HashSet};

use super::objects::{RawObject, parse_named_list};
use super::{Error, MountPlan, single};
use crate::backend::gcp::{Extract, GcpAuth, GcpConfig, GcpObject, Resource};
use crate::backend::{BackendPlan, Plan};
use crate::object_path::ObjectPath;
use crate::plan::{Expand, ObjectSpec};

/// The list parameter, as the GCP provider names it.
const LIST: &str = "secrets";
/// Longest `audience` accepted.
const MAX_AUDIENCE_LEN: usize = 512;

/// Parses a GCP-provider SecretProviderClass (also the native socket's `backend: gcp`).
pub(super) fn parse(attrs: &BTreeMap<String, String>) -> Result<MountPlan, Error> {
    let audience = single(attrs, "audience");
    if let Some(audience) = &audience
        && (audience.len() > MAX_AUDIENCE_LEN || audience.chars().any(char::is_control))
    {
        return Err(Error::new("audience", format!("must be at most {MAX_AUDIENCE_LEN} printable characters")));
    }
    // The GCP provider compares `auth` exactly: no trimming, no case folding.
    let auth = match attrs.get("auth").map(String::as_str) {
        None | Some("" | "pod-adc") => GcpAuth::Pod { audience: audience.clone() },
        Some("provider-adc") => {
            if audience.is_some() {
                return Err(Error::new("audience", "applies only to the pod's identity, not to auth: provider-adc"));
            }
            GcpAuth::ProviderAdc
        }
        Some(other) => {
            return Err(Error::new("auth", format!("unknown auth configuration {other:?}; use pod-adc or provider-adc")));
        }
    };
    let Some(yaml) = attrs.get(LIST) else {
        return Err(Error::new(LIST, "missing required 'secrets' attribute; list the secret versions to mount"));
    };
    let mut paths: HashSet<String> = HashSet::new();
    let mut objects = Vec::new();
    let mut sources = Vec::new();
    for raw in parse_named_list(LIST, yaml)? {
        let (spec, source) = object(&raw, audience.as_deref())?;
        if !paths.insert(spec.path.as_str().to_owned()) {
            return Err(Error::new(
                format!("{LIST}[{}].path", raw.index),
                format!("file {:?} is written by another secret too; paths must be unique", spec.path.as_str()),
            ));
        }
        objects.push(spec);
        sources.push(source);
    }
    Ok(MountPlan {
        backend: Plan::Gcp(BackendPlan { config: GcpConfig { auth }, objects: sources }),
        objects,
        templates: Vec::new(),
    })
}

fn object(raw: &RawObject, audience: Option<&str>) -> Result<(ObjectSpec, GcpObject), Error> {
    let i = raw.index;
    let field = |f: &str| format!("{LIST}[{i}].{f}");
    let name = raw.required("resourceName")?;
    let resource = Resource::parse(&name).map_err(|problem| Error::new(field("resourceName"), problem))?;
    // `path` wins over the older `fileName`, as in the GCP provider.
    let (path_field, file) = match (raw.string("path")?, raw.string("fileName")?) {
        (Some(path), _) => ("path", path),
        (None, Some(file)) => ("fileName", file),
        (None, None) => return Err(Error::new(field("path"), "missing; set path (or the older fileName)")),
    };
    let path = ObjectPath::parse(&file).map_err(|e| Error::new(field(path_field), format!("{file:?} {e}")))?;
    let extract = match (raw.string("extractJSONKey")?, raw.string("extractYAMLKey")?) {
        (Some(_), Some(_)) => {
            return Err(Error::new(field("extractYAMLKey"), "cannot be combined with extractJSONKey; set one"));
        }
        (Some(key), None) => Some(Extract::Json(key)),
        (None, Some(key)) => Some(Extract::Yaml(key)),
        (None, None) => None,
    };
    let expand = raw.flag("expandKeys")?.unwrap_or(false);
    if expand && extract.is_some() {
        return Err(Error::new(field("expandKeys"), "cannot be combined with extractJSONKey or extractYAMLKey"));
    }
    let spec = ObjectSpec {
        index: i,
        name: path.as_str().to_owned(),
        write: raw.flag("render")?.unwrap_or(true),
        expand: expand.then(|| Expand { base: Some(path.clone()) }),
        mode: raw.file_mode("mode")?,
        encoding: raw.encoding()?,
        descriptor: format!("gcp|{}|{}", audience.unwrap_or_default(), raw.canonical()),
        derived: Vec::new(),
        path,
    };
    Ok((spec, GcpObject { resource, extract }))
}

#[cfg(test)]
mod tests;
