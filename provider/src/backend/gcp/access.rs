//! Reading one secret version (`:access`) or parameter version (`:render`),
//! checking the payload's CRC32C, and cutting a key out of the value.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::crc32c::crc32c;
use super::rest::{self, Answer};
use super::{BACKEND, Extract, GcpBackend, GcpObject, Resource, ResourceKind, count};
use crate::backend::{Error, ErrorKind};
use crate::plan::{Fetched, kind_of};
use crate::secret::{SecretBytes, SecretString};

/// A read version: its bytes and the resolved version name.
pub(super) struct Value {
    content: SecretBytes,
    /// `projects/p/secrets/s/versions/3` for `.../versions/latest`.
    version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccessAnswer {
    name: Option<String>,
    payload: Option<Payload>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    data: Option<String>,
    /// An int64 in JSON: a string, though a number is read too.
    data_crc32c: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RenderAnswer {
    rendered_payload: Option<String>,
}

#[derive(Deserialize)]
struct VersionState {
    state: Option<String>,
}

impl GcpBackend {
    /// Reads `resource` with `token`.
    pub(super) async fn read(&self, resource: &Resource, token: &SecretString) -> Result<Value, Error> {
        let endpoints = &self.state.settings.endpoints;
        let (global, regional, verb, operation) = match resource.kind {
            ResourceKind::Secret => (&endpoints.secret_manager, &endpoints.secret_manager_regional, "access", "access"),
            ResourceKind::Parameter => (&endpoints.parameter_manager, &endpoints.parameter_manager_regional, "render", "render"),
        };
        let base = match &resource.location {
            None => global.trim_end_matches('/').to_owned(),
            Some(location) => regional.replace("{location}", location).trim_end_matches('/').to_owned(),
        };
        let url = format!("{base}/v1/{}:{verb}", resource.name);
        let http = self.http().await?;
        let auth = rest::bearer(token.expose_secret())?;
        let answer = {
            let _permit = self.permit().await?;
            let started = std::time::Instant::now();
            let answer = rest::send(|| http.get(&url).header(reqwest::header::AUTHORIZATION, auth.clone()), &format!("{operation} of {}", resource.name)).await;
            count(&self.state, operation, answer.as_ref().is_ok_and(|a| a.status.is_success()), started);
            answer?
        };
        if !answer.status.is_success() {
            return Err(self.refusal(resource, &answer, &base, &auth).await);
        }
        match resource.kind {
            ResourceKind::Secret => secret_value(resource, &answer),
            ResourceKind::Parameter => parameter_value(resource, &answer),
        }
    }

    /// The error for a refused read; a version that cannot be accessed is named by its state.
    async fn refusal(&self, resource: &Resource, answer: &Answer, base: &str, auth: &reqwest::header::HeaderValue) -> Error {
        let google = answer.google_error();
        let what = match resource.kind {
            ResourceKind::Secret => "secret version",
            ResourceKind::Parameter => "parameter version",
        };
        let (kind, message) = match google.kind() {
            ErrorKind::NotFound => (ErrorKind::NotFound, format!("{what} {} does not exist ({}); check the name and version", resource.name, google.describe())),
            ErrorKind::Denied => (
                ErrorKind::Denied,
                format!(
                    "reading {} was refused ({}); check the pod's Google identity has roles/secretmanager.secretAccessor \
                     (or parametermanager.parameterAccessor) on it",
                    resource.name,
                    google.describe()
                ),
            ),
            ErrorKind::Unavailable => (ErrorKind::Unavailable, format!("Google could not serve {} ({})", resource.name, google.describe())),
            _ if resource.kind == ResourceKind::Secret && google.status.as_deref() == Some("FAILED_PRECONDITION") => {
                match self.version_state(base, resource, auth).await {
                    Some(state) => (
                        ErrorKind::NotFound,
                        format!(
                            "secret version {} is {state} and cannot be read; enable it, or name another version",
                            resource.name
                        ),
                    ),
                    None => (ErrorKind::NotFound, format!("secret version {} cannot be read ({})", resource.name, google.describe())),
                }
            }
            other => (other, format!("reading {} failed ({})", resource.name, google.describe())),
        };
        Error::new(kind, BACKEND, message).caused_by(google)
    }

    /// The state (`DISABLED`, `DESTROYED`) of a secret version, if it can be read.
    async fn version_state(&self, base: &str, resource: &Resource, auth: &reqwest::header::HeaderValue) -> Option<String> {
        let http = self.http().await.ok()?;
        let url = format!("{base}/v1/{}", resource.name);
        let answer = rest::send(|| http.get(&url).header(reqwest::header::AUTHORIZATION, auth.clone()), "get").await.ok()?;
        if !answer.status.is_success() {
            return None;
        }
        let state: VersionState = serde_json::from_slice(&answer.body).ok()?;
        state.state.filter(|s| s.len() <= 32 && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
    }
}

fn unreadable(resource: &Resource, what: &str) -> Error {
    Error::new(ErrorKind::Unavailable, BACKEND, format!("the answer for {} {what}", resource.name))
}

fn decode(resource: &Resource, data: Option<String>) -> Result<SecretBytes, Error> {
    let text = Zeroizing::new(data.unwrap_or_default());
    let bytes = BASE64.decode(text.as_bytes()).map_err(|_| unreadable(resource, "holds a payload that is not base64"))?;
    Ok(SecretBytes::new(bytes))
}

fn secret_value(resource: &Resource, answer: &Answer) -> Result<Value, Error> {
    let parsed: AccessAnswer =
        serde_json::from_slice(&answer.body).map_err(|_| unreadable(resource, "is not a secret version"))?;
    let payload = parsed.payload.ok_or_else(|| unreadable(resource, "has no payload"))?;
    let expected = payload.data_crc32c.clone();
    let content = decode(resource, payload.data)?;
    if let Some(expected) = expected {
        let expected = match &expected {
            serde_json::Value::String(s) => s.parse::<u64>().ok(),
            serde_json::Value::Number(n) => n.as_u64(),
            _ => None,
        }
        .ok_or_else(|| unreadable(resource, "has a dataCrc32c that is not a number"))?;
        if u64::from(crc32c(content.expose_secret())) != expected {
            return Err(Error::new(
                ErrorKind::Unavailable,
                BACKEND,
                format!("the payload of {} does not match its dataCrc32c checksum; it was corrupted on the way", resource.name),
            ));
        }
    }
    Ok(Value { content, version: parsed.name.unwrap_or_else(|| resource.name.clone()) })
}

fn parameter_value(resource: &Resource, answer: &Answer) -> Result<Value, Error> {
    let parsed: RenderAnswer =
        serde_json::from_slice(&answer.body).map_err(|_| unreadable(resource, "is not a rendered parameter version"))?;
    let content = decode(resource, parsed.rendered_payload)?;
    Ok(Value { content, version: resource.name.clone() })
}

/// The object's bytes from `value`: all of it, or the string under a key.
pub(super) fn select(value: &Value, object: &GcpObject) -> Result<Fetched, Error> {
    let version = Some(value.version.clone());
    let Some(extract) = &object.extract else {
        return Ok(Fetched::value(SecretBytes::new(value.content.to_vec()), version));
    };
    let bad = |message: String| Error::new(ErrorKind::Invalid, BACKEND, message);
    let (format, key, map) = match extract {
        Extract::Json(key) => {
            let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(value.content.expose_secret())
                .map_err(|_| bad(format!("extractJSONKey {key:?}: the value of {} is not a JSON object", object.resource.name)))?;
            ("JSON", key, map)
        }
        Extract::Yaml(key) => {
            let text = std::str::from_utf8(value.content.expose_secret())
                .map_err(|_| bad(format!("extractYAMLKey {key:?}: the value of {} is not UTF-8 text", object.resource.name)))?;
            let mut options = serde_saphyr::Options::default();
            // No value text in errors.
            options.with_snippet = false;
            let map: BTreeMap<String, serde_json::Value> = serde_saphyr::from_str_with_options(text, options)
                .map_err(|_| bad(format!("extractYAMLKey {key:?}: the value of {} is not a YAML map", object.resource.name)))?;
            ("YAML", key, map)
        }
    };
    match map.get(key) {
        Some(serde_json::Value::String(s)) => Ok(Fetched::value(SecretBytes::new(s.as_bytes().to_vec()), version)),
        Some(other) => Err(bad(format!(
            "key {key:?} in the {format} value of {} is {}; only a string can be written to a file",
            object.resource.name,
            kind_of(other)
        ))),
        None => Err(Error::new(
            ErrorKind::NotFound,
            BACKEND,
            format!("key {key:?} not found in the {format} value of {}", object.resource.name),
        )),
    }
}
