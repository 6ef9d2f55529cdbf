//! Reading Key Vault: one secret, key or certificate version written as the
//! Azure provider writes it, and the enabled versions of an object for
//! `objectVersionHistory`, paged with a bound.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::cloud::Endpoints;
use super::convert::{self, Jwk};
use super::rest::{self, Answer};
use super::{AzureBackend, AzureObject, BACKEND, ObjectType, count, valid_version};
use crate::backend::{Error, ErrorKind};
use crate::secret::{SecretBytes, SecretString};

/// The Key Vault REST API version asked for.
pub(super) const API_VERSION: &str = "7.4";
/// Versions asked for per page of a version listing (Key Vault's maximum).
const PAGE_SIZE: u32 = 25;
/// Most pages of versions read for one object: 1000 versions. An object with
/// more cannot be mounted with `objectVersionHistory` (the versions have to be
/// sorted by creation time, so all are read).
const MAX_VERSION_PAGES: usize = 40;
/// The content type of a certificate's secret stored as PEM.
const PEM_CONTENT_TYPE: &str = "application/x-pem-file";
/// The content type of a certificate's secret stored as PKCS#12.
const PKCS12_CONTENT_TYPE: &str = "application/x-pkcs12";

/// One read version: the bytes the file gets and Key Vault's version id.
pub(super) struct Value {
    pub(super) content: SecretBytes,
    pub(super) version: String,
}

/// One enabled version of an object and when it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct VersionInfo {
    pub(super) version: String,
    /// Unix seconds; 0 when Key Vault gives none (as the Azure provider reads it).
    pub(super) created: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SecretBundle {
    value: Option<String>,
    id: Option<String>,
    content_type: Option<String>,
    kid: Option<String>,
}

#[derive(Deserialize)]
struct KeyBundle {
    key: Option<KeyWithId>,
}

#[derive(Deserialize)]
struct KeyWithId {
    kid: Option<String>,
    #[serde(flatten)]
    jwk: Jwk,
}

#[derive(Deserialize)]
struct CertificateBundle {
    id: Option<String>,
    cer: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionPage {
    #[serde(default)]
    value: Vec<VersionItem>,
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct VersionItem {
    id: Option<String>,
    kid: Option<String>,
    attributes: Option<Attributes>,
}

#[derive(Deserialize)]
struct Attributes {
    enabled: Option<bool>,
    created: Option<i64>,
}

impl AzureBackend {
    /// Reads `object` at `version` (`None`: the current one) with `token`.
    pub(super) async fn read(
        &self,
        ends: &Endpoints,
        token: &SecretString,
        object: &AzureObject,
        version: Option<&str>,
    ) -> Result<Value, Error> {
        let collection = object.kind.collection();
        let url = match version {
            Some(v) => format!(
                "{}/{collection}/{}/{v}?api-version={API_VERSION}",
                ends.vault, object.name
            ),
            None => format!(
                "{}/{collection}/{}?api-version={API_VERSION}",
                ends.vault, object.name
            ),
        };
        let answer = self
            .get(&url, token, "get", &format!("get {}", object.describe()))
            .await?;
        if !answer.status.is_success() {
            return Err(refusal(object, version, &answer, ends));
        }
        let bad = |what: &str| {
            Error::new(
                ErrorKind::Unavailable,
                BACKEND,
                format!("failed to get {}: the answer {what}", object.describe()),
            )
        };
        match object.kind {
            ObjectType::Secret => {
                let bundle: SecretBundle = serde_json::from_slice(&answer.body)
                    .map_err(|_| bad("is not a secret bundle"))?;
                let value = Zeroizing::new(
                    bundle
                        .value
                        .ok_or_else(|| bad("has no value (secret value is nil)"))?,
                );
                let version = id_version(bundle.id.as_deref())
                    .ok_or_else(|| bad("has no id with a version"))?;
                let content = if bundle.kid.as_deref().is_some_and(|k| !k.is_empty()) {
                    self.certificate_secret(object, value, bundle.content_type.as_deref())?
                } else {
                    SecretBytes::new(value.as_bytes().to_vec())
                };
                Ok(Value { content, version })
            }
            ObjectType::Key => {
                let bundle: KeyBundle =
                    serde_json::from_slice(&answer.body).map_err(|_| bad("is not a key bundle"))?;
                let key = bundle
                    .key
                    .ok_or_else(|| bad("has no key (key value is nil)"))?;
                let version = id_version(key.kid.as_deref())
                    .ok_or_else(|| bad("has no kid with a version"))?;
                let pem =
                    convert::public_key_pem(&key.jwk).map_err(|e| convert_error(object, e))?;
                Ok(Value {
                    content: SecretBytes::new(pem.into_bytes()),
                    version,
                })
            }
            ObjectType::Cert => {
                let bundle: CertificateBundle = serde_json::from_slice(&answer.body)
                    .map_err(|_| bad("is not a certificate bundle"))?;
                let version = id_version(bundle.id.as_deref())
                    .ok_or_else(|| bad("has no id with a version"))?;
                let der = BASE64
                    .decode(
                        bundle
                            .cer
                            .ok_or_else(|| bad("has no cer (certificate value is nil)"))?
                            .trim(),
                    )
                    .map_err(|_| bad("has a cer that is not base64"))?;
                Ok(Value {
                    content: SecretBytes::new(
                        convert::pem("CERTIFICATE", &der).as_bytes().to_vec(),
                    ),
                    version,
                })
            }
        }
    }

    /// The file content of a certificate's secret: PEM as stored, PKCS#12 as
    /// stored with `objectFormat: pfx`, else PKCS#12 converted to PEM.
    fn certificate_secret(
        &self,
        object: &AzureObject,
        value: Zeroizing<String>,
        content_type: Option<&str>,
    ) -> Result<SecretBytes, Error> {
        match content_type {
            Some(PEM_CONTENT_TYPE) => Ok(SecretBytes::new(value.as_bytes().to_vec())),
            Some(PKCS12_CONTENT_TYPE) if object.pfx => {
                Ok(SecretBytes::new(value.as_bytes().to_vec()))
            }
            Some(PKCS12_CONTENT_TYPE) => {
                let pem = convert::pkcs12_to_pem(&value, self.state.settings.construct_pem_chain)
                    .map_err(|e| convert_error(object, e))?;
                Ok(SecretBytes::new(pem.as_bytes().to_vec()))
            }
            other => {
                let shown: String = other
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(64)
                    .collect();
                Err(Error::new(
                    ErrorKind::Invalid,
                    BACKEND,
                    format!(
                        "failed to get {}: failed to get certificate. unknown content type {shown:?}",
                        object.describe()
                    ),
                ))
            }
        }
    }

    /// The enabled versions of `object`, as listed (unsorted).
    pub(super) async fn versions(
        &self,
        ends: &Endpoints,
        token: &SecretString,
        object: &AzureObject,
    ) -> Result<Vec<VersionInfo>, Error> {
        let first = format!(
            "{}/{}/{}/versions?api-version={API_VERSION}&maxresults={PAGE_SIZE}",
            ends.vault,
            object.kind.collection(),
            object.name
        );
        let mut next = Some(first);
        let mut versions = Vec::new();
        for _ in 0..MAX_VERSION_PAGES {
            let Some(url) = next.take() else {
                return Ok(versions);
            };
            let answer = self
                .get(
                    &url,
                    token,
                    "list",
                    &format!("list versions of {}", object.describe()),
                )
                .await?;
            if !answer.status.is_success() {
                return Err(refusal(object, None, &answer, ends));
            }
            let page: VersionPage = serde_json::from_slice(&answer.body).map_err(|_| {
                Error::new(
                    ErrorKind::Unavailable,
                    BACKEND,
                    format!(
                        "the versions of {} are not a version list",
                        object.describe()
                    ),
                )
            })?;
            for item in page.value {
                let Some(attributes) = item.attributes else {
                    continue;
                };
                if attributes.enabled == Some(false) {
                    continue;
                }
                if let Some(version) = id_version(item.id.as_deref().or(item.kid.as_deref())) {
                    versions.push(VersionInfo {
                        version,
                        created: attributes.created.unwrap_or(0),
                    });
                }
            }
            // The next page must be on the same vault: the bearer token goes with it.
            next = match page.next_link.filter(|l| !l.is_empty()) {
                None => None,
                Some(link) if link.starts_with(&format!("{}/", ends.vault)) => Some(link),
                Some(_) => {
                    return Err(Error::new(
                        ErrorKind::Unavailable,
                        BACKEND,
                        format!(
                            "the versions of {} continue at another address than the vault's; not followed",
                            object.describe()
                        ),
                    ));
                }
            };
        }
        if next.is_none() {
            return Ok(versions);
        }
        Err(Error::new(
            ErrorKind::Invalid,
            BACKEND,
            format!(
                "{} has more than {} versions; objectVersionHistory cannot be served for it (purge old versions)",
                object.describe(),
                MAX_VERSION_PAGES * PAGE_SIZE as usize
            ),
        ))
    }

    /// One GET to Key Vault with the bearer token, within the backend's concurrency limit.
    async fn get(
        &self,
        url: &str,
        token: &SecretString,
        operation: &'static str,
        what: &str,
    ) -> Result<Answer, Error> {
        let http = self.http().await?;
        let auth = rest::bearer(token.expose_secret())?;
        let _permit = self.permit().await?;
        let started = std::time::Instant::now();
        let answer = rest::send(
            || {
                http.get(url)
                    .header(reqwest::header::AUTHORIZATION, auth.clone())
            },
            what,
        )
        .await;
        count(
            &self.state,
            operation,
            answer.as_ref().is_ok_and(|a| a.status.is_success()),
            started,
        );
        answer
    }
}

/// The version of a Key Vault id (`https://kv.vault.azure.net/secrets/name/VERSION`).
pub(super) fn id_version(id: Option<&str>) -> Option<String> {
    let id = id?;
    let path = id.split(['?', '#']).next().unwrap_or_default();
    let version = path.trim_end_matches('/').rsplit('/').next()?;
    valid_version(version).then(|| version.to_owned())
}

fn convert_error(object: &AzureObject, e: convert::ConvertError) -> Error {
    Error::new(
        ErrorKind::Invalid,
        BACKEND,
        format!("failed to get {}: {e}", object.describe()),
    )
    .caused_by(e)
}

/// The error for a refused read, named as Key Vault named it.
fn refusal(
    object: &AzureObject,
    version: Option<&str>,
    answer: &Answer,
    ends: &Endpoints,
) -> Error {
    let azure = answer.azure_error();
    let what = match version {
        Some(v) if object.version.as_deref() != Some(v) => {
            format!("{} (version {v})", object.describe())
        }
        _ => object.describe(),
    };
    let disabled = azure
        .inner
        .as_deref()
        .is_some_and(|c| c.ends_with("Disabled"));
    let (kind, message) = match azure.http {
        404 => (
            ErrorKind::NotFound,
            format!(
                "failed to get {what}: not found in {} ({}); check the name and version",
                ends.vault,
                azure.describe()
            ),
        ),
        403 if disabled => (
            ErrorKind::NotFound,
            format!(
                "failed to get {what}: the version is disabled ({}); enable it, or name another version",
                azure.describe()
            ),
        ),
        403 => (
            ErrorKind::Denied,
            format!(
                "failed to get {what}: Key Vault refused the identity ({}); grant it get (and list, for \
                 objectVersionHistory) on {} through an access policy or the Key Vault Secrets/Certificates/Crypto \
                 User role",
                azure.describe(),
                object.kind.collection()
            ),
        ),
        401 => (
            ErrorKind::Denied,
            format!(
                "failed to get {what}: Key Vault did not accept the access token ({}); check tenantID is the vault's \
                 tenant and cloudName matches the vault",
                azure.describe()
            ),
        ),
        _ => (
            azure.kind(),
            format!("failed to get {what}: {}", azure.describe()),
        ),
    };
    Error::new(kind, BACKEND, message).caused_by(azure)
}

/// Newest first, as the Azure provider orders them. Key Vault's creation
/// times are whole seconds; versions created in the same second are taken to
/// be listed oldest first, as Key Vault lists them, so the later one wins.
pub(super) fn newest_first(versions: Vec<VersionInfo>) -> Vec<VersionInfo> {
    let mut indexed: Vec<(usize, VersionInfo)> = versions.into_iter().enumerate().collect();
    indexed.sort_by(|(i, a), (j, b)| b.created.cmp(&a.created).then(j.cmp(i)));
    indexed.into_iter().map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests;
