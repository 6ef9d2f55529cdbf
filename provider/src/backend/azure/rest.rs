//! Azure's REST calls (on the shared `backend::rest` transport: bounded answers,
//! retries that honour `Retry-After`), and the error shapes of Key Vault and of
//! Entra's token endpoint read as data.

use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;

use super::BACKEND;
use crate::backend::rest::{self, Policy};
pub(super) use crate::backend::rest::Answer;
use crate::backend::{Error, ErrorKind};

/// Largest answer read: a Key Vault secret is at most 25 KiB and a certificate
/// bundle a few KiB, so this leaves room for the envelope and a page of
/// versions, and refuses anything absurd before it is held in memory.
pub(super) const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// Longest piece of Azure's own error text repeated in our messages.
const MAX_ERROR_TEXT: usize = 300;

impl Answer {
    /// The error Azure put into a non-2xx answer.
    pub(super) fn azure_error(&self) -> AzureError {
        AzureError::read(self.status, &self.body)
    }
}

/// The error of a failed Azure call: the HTTP status, the error code
/// (`SecretNotFound`, `Forbidden`, `invalid_client`), Key Vault's inner code
/// (`AccessDenied`, `SecretDisabled`), Entra's `AADSTS` code and the message.
#[derive(Debug, Clone)]
pub(crate) struct AzureError {
    pub(crate) http: u16,
    pub(crate) code: Option<String>,
    pub(crate) inner: Option<String>,
    /// The first `AADSTS` number of a token endpoint refusal.
    pub(crate) aadsts: Option<u64>,
    pub(crate) message: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorBody {
    KeyVault {
        error: KeyVaultError,
    },
    Entra {
        error: String,
        error_description: Option<String>,
        error_codes: Option<Vec<u64>>,
    },
}

#[derive(Deserialize)]
struct KeyVaultError {
    code: Option<String>,
    message: Option<String>,
    innererror: Option<InnerError>,
}

#[derive(Deserialize)]
struct InnerError {
    code: Option<String>,
}

/// Azure's text, without control characters and cut to [`MAX_ERROR_TEXT`];
/// Entra's descriptions end in trace and correlation ids on later lines, which
/// are dropped.
fn clean(text: &str) -> String {
    let first = text.split(['\r', '\n']).next().unwrap_or_default();
    first
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_TEXT)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A short code from Azure, kept only when it looks like one.
fn code(text: Option<String>) -> Option<String> {
    text.filter(|c| {
        !c.is_empty()
            && c.len() <= 64
            && c.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    })
}

impl AzureError {
    pub(crate) fn read(status: StatusCode, body: &[u8]) -> Self {
        let mut error = Self {
            http: status.as_u16(),
            code: None,
            inner: None,
            aadsts: None,
            message: String::new(),
        };
        match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody::KeyVault { error: kv }) => {
                error.code = code(kv.code);
                error.inner = code(kv.innererror.and_then(|i| i.code));
                error.message = clean(&kv.message.unwrap_or_default());
            }
            Ok(ErrorBody::Entra {
                error: name,
                error_description,
                error_codes,
            }) => {
                error.code = code(Some(name));
                error.message = clean(&error_description.unwrap_or_default());
                error.aadsts = error_codes.and_then(|c| c.first().copied());
            }
            Err(_) => {}
        }
        error
    }

    /// `HTTP 403 Forbidden (AccessDenied): The user ... does not have secrets get permission`.
    pub(crate) fn describe(&self) -> String {
        let mut text = format!("HTTP {}", self.http);
        if let Some(code) = &self.code {
            text.push(' ');
            text.push_str(code);
        }
        if let Some(inner) = &self.inner {
            text.push_str(&format!(" ({inner})"));
        }
        if !self.message.is_empty() {
            text.push_str(": ");
            text.push_str(&self.message);
        } else if let Some(n) = self.aadsts {
            text.push_str(&format!(": AADSTS{n}"));
        }
        text
    }

    /// The kind of a refusal, by HTTP status.
    pub(crate) fn kind(&self) -> ErrorKind {
        match self.http {
            401 | 403 => ErrorKind::Denied,
            404 => ErrorKind::NotFound,
            429 | 500..=599 => ErrorKind::Unavailable,
            _ if self
                .code
                .as_deref()
                .is_some_and(|c| c.starts_with("invalid_") || c == "unauthorized_client") =>
            {
                ErrorKind::Denied
            }
            _ => ErrorKind::Invalid,
        }
    }
}

impl std::fmt::Display for AzureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl std::error::Error for AzureError {}

/// How Azure is called: a few more attempts than elsewhere, as Key Vault
/// throttles per vault and says for how long.
const POLICY: Policy = Policy {
    backend: BACKEND,
    max_answer_bytes: MAX_ANSWER_BYTES,
    attempts: 4,
    backoff: Duration::from_millis(200),
    unreachable_hint: "check the endpoint (cloudName, --azure-keyvault-endpoint, --azure-authority-host), its CA \
                       (--azure-ca-file) and that it is reachable from the node",
    too_large_hint: "the endpoint is not Azure's, or answered something else",
};

/// Sends the request `build` makes, retrying connect failures, 429 and 5xx
/// (after the pause Azure asks for, capped); `what` names the call in errors.
pub(super) async fn send(build: impl Fn() -> reqwest::RequestBuilder, what: &str) -> Result<Answer, Error> {
    rest::send(&POLICY, build, what).await
}

/// An `Authorization: Bearer` value that HTTP logs never print.
pub(super) fn bearer(token: &str) -> Result<reqwest::header::HeaderValue, Error> {
    rest::bearer(BACKEND, token)
}

#[cfg(test)]
mod tests;
