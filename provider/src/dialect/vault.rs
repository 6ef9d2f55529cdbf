//! Parameters of hashicorp/vault-csi-provider and its OpenBao fork.
//!
//! Each compatibility socket reads the keys its provider reads: `vault.sock` the
//! `vault*` keys; `openbao.sock` the `bao*`, `openbao*` and `vault*` spellings of
//! every key, the first present in that order winning (so `baoAddress` beats
//! `vaultAddress`). The native socket takes every spelling and refuses two
//! spellings of one key with different values. Only the default token audience
//! differs between the flavors (`vault` or `openbao`).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use super::objects::{RawObject, parse_list};
use super::{Defaults, Error, MountPlan, boolean, parse_bool, single};
use crate::backend::vault::{Fidelity, Flavor, LeasePolicy, Method, TlsSettings, TlsVerify, VaultConfig, VaultObject};
use crate::backend::{BackendPlan, Plan};
use crate::plan::{Encoding, Expand, ObjectSpec};

/// Auth mount used when the SecretProviderClass names none.
const DEFAULT_AUTH_MOUNT: &str = "kubernetes";

/// Object fields this dialect reads.
const OBJECT_FIELDS: &[&str] = &[
    "objectName",
    "secretPath",
    "secretKey",
    "method",
    "secretArgs",
    "encoding",
    "objectEncoding",
    "filePermission",
    "expandKeys",
    "render",
];

/// Which socket a SecretProviderClass arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Socket {
    /// `vault.sock` or `openbao.sock`: exactly as that provider.
    Compatible,
    /// Courier's own socket.
    Native,
}

/// How a key's spellings are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// `vault<Suffix>` only.
    Vault,
    /// `bao<Suffix>`, `openbao<Suffix>`, `vault<Suffix>`: the first present wins.
    OpenBao,
    /// Every spelling; two with different values are an error.
    Native,
}

impl Keys {
    fn of(socket: Socket, flavor: Flavor) -> Self {
        match (socket, flavor) {
            (Socket::Compatible, Flavor::Vault) => Self::Vault,
            (Socket::Compatible, Flavor::OpenBao) => Self::OpenBao,
            (Socket::Native, _) => Self::Native,
        }
    }

    /// The spellings of the key ending in `suffix`, in precedence order.
    fn spellings(self, suffix: &str) -> Vec<String> {
        match self {
            Self::Vault => vec![format!("vault{suffix}")],
            Self::OpenBao | Self::Native => {
                ["bao", "openbao", "vault"].iter().map(|prefix| format!("{prefix}{suffix}")).collect()
            }
        }
    }

    /// The key ending in `suffix`: its value (empty means unset) and the spelling
    /// it was given under, for messages.
    fn read(self, attrs: &BTreeMap<String, String>, suffix: &str) -> Result<Option<(String, String)>, Error> {
        let names = self.spellings(suffix);
        if self == Self::Native {
            return param(attrs, &names);
        }
        // As the anchor: the first spelling present decides, even when empty.
        for name in names {
            if let Some(value) = attrs.get(&name) {
                let value = value.trim();
                return Ok((!value.is_empty()).then(|| (name, value.to_owned())));
            }
        }
        Ok(None)
    }

    fn value(self, attrs: &BTreeMap<String, String>, suffix: &str) -> Result<Option<String>, Error> {
        Ok(self.read(attrs, suffix)?.map(|(_, v)| v))
    }
}

/// Reads a parameter given under any of `names`: its spelling and value. Empty
/// means unset; two spellings with different values are an error.
fn param(attrs: &BTreeMap<String, String>, names: &[String]) -> Result<Option<(String, String)>, Error> {
    let mut found: Option<(&str, &str)> = None;
    for name in names {
        let Some(value) = attrs.get(name.as_str()).map(|v| v.trim()).filter(|v| !v.is_empty()) else {
            continue;
        };
        match found {
            Some((first, previous)) if previous != value => {
                return Err(Error::new(
                    name.clone(),
                    format!("conflicts with {first}; set only one of them"),
                ));
            }
            Some(_) => {}
            None => found = Some((name.as_str(), value)),
        }
    }
    Ok(found.map(|(n, v)| (n.to_owned(), v.to_owned())))
}

/// Parses a vault-csi-provider SecretProviderClass for `flavor`.
pub(super) fn parse(
    attrs: &BTreeMap<String, String>,
    flavor: Flavor,
    socket: Socket,
    defaults: &Defaults,
) -> Result<MountPlan, Error> {
    let keys = Keys::of(socket, flavor);
    // The OpenBao provider also reads `baoRoleName`, `openbaoRoleName` and `vaultRoleName`.
    let role = match keys {
        Keys::Vault => None,
        Keys::OpenBao | Keys::Native => keys.value(attrs, "RoleName")?,
    };
    let role = role.or_else(|| single(attrs, "roleName")).ok_or_else(|| {
        Error::new("roleName", "missing; name the auth role to log in as")
    })?;
    let address = keys.value(attrs, "Address")?.unwrap_or_else(|| defaults.vault_address.clone());
    let address = address.trim_end_matches('/').to_owned();
    let namespace = keys.value(attrs, "Namespace")?;
    let auth_mount = keys.read(attrs, "AuthMountPath")?;
    let kubernetes_mount = keys.read(attrs, "KubernetesMountPath")?;
    let auth_mount = match (auth_mount, kubernetes_mount) {
        (Some((auth, _)), Some((kubernetes, _))) => {
            return Err(Error::new(
                auth,
                format!("cannot be combined with {kubernetes} (they are mutually exclusive); set only one"),
            ));
        }
        (Some((_, m)), None) | (None, Some((_, m))) => m,
        (None, None) => DEFAULT_AUTH_MOUNT.to_owned(),
    };
    let auth_mount = auth_mount.trim_matches('/').trim_start_matches("auth/").to_owned();
    if auth_mount.is_empty() || auth_mount.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(Error::new("vaultAuthMountPath", format!("{auth_mount:?} is not a valid mount path")));
    }
    let audience = single(attrs, "audience").unwrap_or_else(|| flavor.default_audience().to_owned());

    let skip_verify = match keys.read(attrs, "SkipTLSVerify")? {
        None => false,
        Some((name, v)) => parse_bool(&name, &v)?,
    };
    let tls = TlsSettings {
        ca_cert: keys.value(attrs, "CACertPath")?.map(PathBuf::from),
        ca_dir: keys.value(attrs, "CADirectory")?.map(PathBuf::from),
        server_name: keys.value(attrs, "TLSServerName")?,
        client_cert: keys.value(attrs, "TLSClientCertPath")?.map(PathBuf::from),
        client_key: keys.value(attrs, "TLSClientKeyPath")?.map(PathBuf::from),
        verify: if skip_verify { TlsVerify::DangerousDisabled } else { TlsVerify::Enabled },
    };
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        return Err(Error::new(
            "vaultTLSClientCertPath",
            "and vaultTLSClientKeyPath must be set together",
        ));
    }

    let leases = LeasePolicy {
        share: boolean(attrs, "shareLeases")?.unwrap_or(false),
        revoke_on_unmount: boolean(attrs, "revokeOnUnmount")?.unwrap_or(false),
    };

    let objects_yaml = single(attrs, "objects").ok_or_else(|| Error::new("objects", "missing; list the secrets to mount"))?;
    let backend_tag = format!("{}|{}|{}", flavor.name(), address, namespace.as_deref().unwrap_or(""));
    let mut objects = Vec::new();
    let mut sources = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for raw in parse_list(&objects_yaml)? {
        let (spec, source) = object(&raw, &backend_tag, socket)?;
        if !seen.insert(spec.path.as_str().to_owned()) {
            let first = objects.iter().position(|o: &ObjectSpec| o.path == spec.path).unwrap_or(0);
            return Err(Error::new(
                format!("objects[{}].objectName", raw.index),
                format!("{:?} is already used by objects[{first}]; file names must be unique", spec.path.as_str()),
            ));
        }
        let unknown = raw.unknown_fields(OBJECT_FIELDS);
        if !unknown.is_empty() {
            tracing::debug!(object = raw.index, fields = ?unknown, "ignoring unknown object fields");
        }
        objects.push(spec);
        sources.push(source);
    }

    Ok(MountPlan {
        backend: Plan::Vault(BackendPlan {
            config: VaultConfig {
            flavor,
            address,
            namespace,
            auth_mount,
            role,
            audience,
            tls,
            leases,
                fidelity: match socket {
                    Socket::Compatible => Fidelity::Anchor,
                    Socket::Native => Fidelity::Native,
                },
            },
            objects: sources,
        }),
        objects,
        templates: Vec::new(),
    })
}

fn object(raw: &RawObject, backend_tag: &str, socket: Socket) -> Result<(ObjectSpec, VaultObject), Error> {
    let i = raw.index;
    let path = raw.path("objectName")?;
    let secret_path = raw.required("secretPath")?;
    let (api_path, query) = split_secret_path(&secret_path)
        .map_err(|problem| Error::new(format!("objects[{i}].secretPath"), problem))?;
    let method = match raw.string("method")?.map(|m| m.to_ascii_uppercase()) {
        None => Method::Get,
        Some(m) if m == "GET" => Method::Get,
        Some(m) if m == "PUT" => Method::Put,
        Some(m) if m == "POST" => Method::Post,
        Some(m) => {
            return Err(Error::new(format!("objects[{i}].method"), format!("{m:?} is not supported; use GET, PUT or POST")));
        }
    };
    let args = raw.map("secretArgs")?;
    if args.is_some() && method == Method::Get {
        tracing::debug!(object = i, "secretArgs are only sent with PUT or POST; ignored for GET");
    }
    let secret_key = raw.string("secretKey")?;
    let expand = raw.flag("expandKeys")?.unwrap_or(false);
    // The anchors write a whole response as it is and never read `encoding` for
    // it; their sockets do the same. The native socket refuses the combination.
    let encoding = match (&secret_key, expand, socket) {
        (None, false, Socket::Compatible) => Encoding::Utf8,
        (None, false, Socket::Native) => match raw.encoding()? {
            Encoding::Utf8 => Encoding::Utf8,
            _ => {
                return Err(Error::new(
                    format!("objects[{i}].encoding"),
                    "applies to a secretKey's value; the whole response (no secretKey) is JSON",
                ));
            }
        },
        _ => raw.encoding()?,
    };
    let mode = raw.file_mode("filePermission")?;
    let spec = ObjectSpec {
        index: i,
        name: path.as_str().to_owned(),
        write: raw.flag("render")?.unwrap_or(true),
        expand: expand.then(|| Expand { base: Some(path.clone()) }),
        path,
        mode,
        encoding,
        descriptor: format!("{backend_tag}|{}", raw.canonical()),
        derived: Vec::new(),
    };
    Ok((spec, VaultObject { path: api_path, query, method, args, secret_key, expand }))
}

/// `v1/secret/data/app?version=2` -> (`secret/data/app`, `version=2`).
fn split_secret_path(raw: &str) -> Result<(String, Option<String>), String> {
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned()).filter(|q| !q.is_empty())),
        None => (raw, None),
    };
    let path = path.trim_start_matches('/');
    let path = path.strip_prefix("v1/").unwrap_or(path).trim_end_matches('/');
    if path.is_empty() {
        return Err(format!("{raw:?} names no path"));
    }
    if path.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!("{raw:?} has an empty, '.' or '..' segment"));
    }
    if path.chars().any(|c| c.is_control() || c == '#') {
        return Err(format!("{raw:?} has a control character or '#'"));
    }
    Ok((path.to_owned(), query))
}

#[cfg(test)]
mod tests;
