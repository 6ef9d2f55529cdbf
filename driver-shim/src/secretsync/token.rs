//! Short-lived service-account tokens from the TokenRequest API, shaped as kubelet hands them to a driver
//! (`csi.storage.k8s.io/serviceAccount.tokens`: `{"<audience>": {"token", "expirationTimestamp"}}`).
//!
//! The tokens are bound to no object: the TokenRequest API binds only to Pods, Secrets and Nodes, and a
//! SecretSync is none of them. A provider therefore sees a token without a `kubernetes.io.pod` claim; the
//! service account (namespace, name, uid) is what identifies the reader, as for any unbound token.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};
use zeroize::Zeroizing;

/// Why no token was issued.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed the request.
    #[error("TokenRequest for service account {namespace}/{name} (audience {audience:?})")]
    Request {
        /// Namespace.
        namespace: String,
        /// Service account.
        name: String,
        /// Audience asked for.
        audience: String,
        /// What the API server answered.
        #[source]
        source: kube::Error,
    },
    /// The answer held no token.
    #[error("TokenRequest for service account {namespace}/{name} answered without a token")]
    Empty {
        /// Namespace.
        namespace: String,
        /// Service account.
        name: String,
    },
}

impl Error {
    /// Whether the service account does not exist (a spec problem, not an outage).
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Request { source: kube::Error::Api(s), .. } if s.code == 404)
    }
}

/// The `serviceAccount.tokens` attribute value; zeroized on drop, never printed.
pub struct Tokens(Zeroizing<String>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

impl Tokens {
    /// The JSON, for the Mount request only.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

/// Asks for one token per audience for `namespace/name`, valid `lifetime`.
pub async fn request(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    audiences: &[String],
    lifetime: Duration,
) -> Result<Tokens, Error> {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let mut entries: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
    for audience in audiences {
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![audience.clone()]),
                expiration_seconds: Some(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let answer: TokenRequest = api
            .create_subresource("token", name, &PostParams::default(), &request)
            .await
            .map_err(|source| Error::Request {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                audience: audience.clone(),
                source,
            })?;
        let Some((token, expiration)) = answer
            .status
            .and_then(|s| s.token.filter(|t| !t.is_empty()).map(|t| (t, s.expiration_timestamp)))
        else {
            return Err(Error::Empty {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
        };
        let token = Zeroizing::new(token);
        entries.insert(
            audience,
            serde_json::json!({
                "token": token.as_str(),
                "expirationTimestamp": expiration.map(|t| t.0.to_string()).unwrap_or_default(),
            }),
        );
    }
    let object: serde_json::Map<String, serde_json::Value> = entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    Ok(Tokens(Zeroizing::new(
        serde_json::Value::Object(object).to_string(),
    )))
}
