//! Azure's clouds: where each one's Entra authority and Key Vaults are, and the
//! custom cloud file of an Azure Stack Hub, read only from the directory the
//! operator allowed and bounded before it is parsed.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::io::AsyncReadExt as _;

use super::{AzureSettings, BACKEND, Cloud};
use crate::backend::{Error, ErrorKind};

/// Largest custom cloud file read; real ones are about 2 KiB.
const MAX_CLOUD_FILE_BYTES: u64 = 64 * 1024;
/// Longest endpoint or DNS suffix accepted from a cloud file.
const MAX_ENDPOINT_LEN: usize = 256;

/// One cloud's endpoints, as a mount uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Endpoints {
    /// Entra's authority host, without a trailing slash (`https://login.microsoftonline.com`).
    pub(super) authority: String,
    /// The vault's base URL, without a trailing slash (`https://kv1.vault.azure.net`).
    pub(super) vault: String,
    /// Key Vault's resource, asked for as `<resource>/.default` (`https://vault.azure.net`).
    pub(super) resource: String,
}

/// A built-in cloud: its authority, Key Vault DNS suffix and Key Vault resource.
struct Known {
    authority: &'static str,
    suffix: &'static str,
    resource: &'static str,
}

/// The built-in clouds' endpoints (those of the Azure SDKs' cloud tables).
fn known(cloud: &Cloud) -> Option<Known> {
    match cloud {
        Cloud::Public => Some(Known {
            authority: "https://login.microsoftonline.com",
            suffix: "vault.azure.net",
            resource: "https://vault.azure.net",
        }),
        Cloud::UsGovernment => Some(Known {
            authority: "https://login.microsoftonline.us",
            suffix: "vault.usgovcloudapi.net",
            resource: "https://vault.usgovcloudapi.net",
        }),
        Cloud::China => Some(Known {
            authority: "https://login.chinacloudapi.cn",
            suffix: "vault.azure.cn",
            resource: "https://vault.azure.cn",
        }),
        Cloud::Stack { .. } => None,
    }
}

/// Parses `cloudName` as the Azure provider does: case-insensitive, empty for
/// the public cloud; `Ok(None)` for `AzureStackCloud`, whose endpoints come
/// from `cloudEnvFileName`.
pub(crate) fn parse_cloud_name(name: &str) -> Result<Option<Cloud>, String> {
    match name.to_ascii_uppercase().as_str() {
        "" | "AZUREPUBLICCLOUD" | "AZURECLOUD" => Ok(Some(Cloud::Public)),
        "AZUREUSGOVERNMENTCLOUD" | "AZUREUSGOVERNMENT" => Ok(Some(Cloud::UsGovernment)),
        "AZURECHINACLOUD" => Ok(Some(Cloud::China)),
        "AZURESTACKCLOUD" => Ok(None),
        "AZUREGERMANCLOUD" => Err("AzureGermanCloud was retired; use AzurePublicCloud".to_owned()),
        _ => Err(format!(
            "{name:?} is not a known cloud; use AzurePublicCloud, AzureUSGovernmentCloud, AzureChinaCloud or \
             AzureStackCloud (with cloudEnvFileName)"
        )),
    }
}

/// The endpoints of `cloud` for `vault`, with the operator's overrides applied.
pub(super) async fn resolve(
    settings: &AzureSettings,
    cloud: &Cloud,
    vault: &str,
) -> Result<Endpoints, Error> {
    let (authority, suffix, resource) = match known(cloud) {
        Some(k) => (
            k.authority.to_owned(),
            k.suffix.to_owned(),
            k.resource.to_owned(),
        ),
        None => {
            let Cloud::Stack { file } = cloud else {
                return Err(Error::new(ErrorKind::Invalid, BACKEND, "unknown cloud"));
            };
            let custom = read_cloud_file(settings.cloud_env_dir.as_deref(), file).await?;
            (custom.authority, custom.suffix, custom.resource)
        }
    };
    let authority = settings.authority_host.clone().unwrap_or(authority);
    let vault_base = match &settings.keyvault_endpoint {
        Some(template) => template.replace("{vault}", vault),
        None => format!("https://{vault}.{suffix}"),
    };
    Ok(Endpoints {
        authority: authority.trim_end_matches('/').to_owned(),
        vault: vault_base.trim_end_matches('/').to_owned(),
        resource: resource.trim_end_matches('/').to_owned(),
    })
}

/// What a custom cloud file contributes.
#[derive(Debug)]
struct Custom {
    authority: String,
    suffix: String,
    resource: String,
}

/// The fields of a custom cloud file this provider reads (the Azure SDKs'
/// environment file format).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudFile {
    active_directory_endpoint: Option<String>,
    key_vault_endpoint: Option<String>,
    #[serde(rename = "keyVaultDNSSuffix")]
    key_vault_dns_suffix: Option<String>,
    resource_identifiers: Option<ResourceIdentifiers>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceIdentifiers {
    key_vault: Option<String>,
}

/// Reads `file`, which must resolve below `allowed`: a SecretProviderClass
/// must not make the provider read any other file of the node.
async fn read_cloud_file(allowed: Option<&Path>, file: &str) -> Result<Custom, Error> {
    let invalid = |message: String| Error::new(ErrorKind::Invalid, BACKEND, message);
    // Which files may be read is the operator's policy, refused like other things only the operator can allow.
    let refused = |message: String| Error::new(ErrorKind::Denied, BACKEND, message);
    let Some(allowed) = allowed else {
        return Err(refused(format!(
            "cloudEnvFileName {file:?}: custom cloud files are off; the operator must start the provider with \
             --azure-cloud-env-dir naming the directory that holds them"
        )));
    };
    let joined: PathBuf = allowed.join(file);
    let outside = || {
        refused(format!(
            "cloudEnvFileName {file:?} is not a file below the directory the operator allowed ({})",
            allowed.display()
        ))
    };
    let (real_dir, real_file) = match (
        tokio::fs::canonicalize(allowed).await,
        tokio::fs::canonicalize(&joined).await,
    ) {
        (Ok(dir), Ok(path)) => (dir, path),
        (Err(e), _) => {
            return Err(Error::new(
                ErrorKind::Unavailable,
                BACKEND,
                format!(
                    "the custom cloud directory {} cannot be read",
                    allowed.display()
                ),
            )
            .caused_by(e));
        }
        (_, Err(e)) => {
            return Err(invalid(format!(
                "cloudEnvFileName {file:?} cannot be opened below {}",
                allowed.display()
            ))
            .caused_by(e));
        }
    };
    if !real_file.starts_with(&real_dir) || real_file == real_dir {
        return Err(outside());
    }
    let opened = tokio::fs::File::open(&real_file)
        .await
        .map_err(|e| invalid(format!("cloudEnvFileName {file:?} cannot be opened")).caused_by(e))?;
    let meta = opened
        .metadata()
        .await
        .map_err(|e| invalid(format!("cloudEnvFileName {file:?} cannot be read")).caused_by(e))?;
    if !meta.is_file() {
        return Err(outside());
    }
    let mut text = Vec::new();
    opened
        .take(MAX_CLOUD_FILE_BYTES + 1)
        .read_to_end(&mut text)
        .await
        .map_err(|e| invalid(format!("cloudEnvFileName {file:?} cannot be read")).caused_by(e))?;
    if text.len() as u64 > MAX_CLOUD_FILE_BYTES {
        return Err(invalid(format!(
            "cloudEnvFileName {file:?} is larger than {MAX_CLOUD_FILE_BYTES} bytes"
        )));
    }
    parse_cloud_file(&text)
        .map_err(|problem| invalid(format!("cloudEnvFileName {file:?}: {problem}")))
}

/// Reads a custom cloud file's Entra authority and Key Vault endpoints.
fn parse_cloud_file(text: &[u8]) -> Result<Custom, String> {
    let parsed: CloudFile =
        serde_json::from_slice(text).map_err(|_| "is not a JSON cloud environment".to_owned())?;
    let https = |field: &str, value: Option<String>| -> Result<String, String> {
        let value = value
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("{field} is missing"))?;
        let host = value
            .strip_prefix("https://")
            .ok_or_else(|| format!("{field} must be an https:// URL"))?;
        if value.len() > MAX_ENDPOINT_LEN
            || host.is_empty()
            || host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '@')
        {
            return Err(format!("{field} is not a usable URL"));
        }
        Ok(value)
    };
    let authority = https("activeDirectoryEndpoint", parsed.active_directory_endpoint)?;
    let resource_identifier = parsed.resource_identifiers.and_then(|r| r.key_vault);
    let resource = https(
        "keyVaultEndpoint",
        parsed.key_vault_endpoint.or(resource_identifier),
    )?;
    let suffix = parsed
        .key_vault_dns_suffix
        .map(|s| s.trim().trim_start_matches('.').to_owned())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| "keyVaultDNSSuffix is missing".to_owned())?;
    if suffix.len() > MAX_ENDPOINT_LEN
        || !suffix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err("keyVaultDNSSuffix is not a DNS suffix".to_owned());
    }
    Ok(Custom {
        authority,
        suffix,
        resource,
    })
}

#[cfg(test)]
mod tests;
