//! The Key Vault access token: the pod's Kubernetes token for
//! `api://AzureADTokenExchange` sent to Entra as a client assertion (workload
//! identity), or, only where the operator allowed it, the service principal of
//! the volume's `nodePublishSecretRef`. Cached per verified identity until
//! shortly before it expires, and shared between concurrent mounts.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::cloud::Endpoints;
use super::rest;
use super::service_account::{self, Annotations};
use super::{AzureBackend, BACKEND, State, count};
use crate::backend::{Error, ErrorKind};
use crate::identity::{CredentialScope, PodIdentity};
use crate::metrics::LoginLabels;
use crate::secret::SecretString;
use crate::singleflight::Role;

/// Tokens are dropped this long before they expire, so a mount never starts with one about to lapse.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// The client assertion type of a federated (workload identity) token request.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Who a token is for.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) enum Principal {
    /// The pod's service account, as far as its token was verified.
    Pod {
        namespace: String,
        service_account: String,
        scope: CredentialScope,
    },
    /// A service principal of a `nodePublishSecretRef` Secret: the digest of its
    /// client secret, so a changed secret logs in again (never printed).
    ServicePrincipal([u8; 32]),
}

impl std::fmt::Debug for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pod {
                namespace,
                service_account,
                scope,
            } => f
                .debug_struct("Pod")
                .field("namespace", namespace)
                .field("service_account", service_account)
                .field("scope", scope)
                .finish(),
            Self::ServicePrincipal(_) => f.write_str("ServicePrincipal(<redacted>)"),
        }
    }
}

/// Cache key of an access token: the authority, tenant, application and
/// resource it is for, and whose credential obtained it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct TokenKey {
    authority: String,
    tenant: String,
    client_id: String,
    resource: String,
    principal: Principal,
}

impl TokenKey {
    #[cfg(test)]
    pub(super) fn for_test() -> Self {
        Self {
            authority: "https://login.microsoftonline.com".into(),
            tenant: "t".into(),
            client_id: "c".into(),
            resource: "https://vault.azure.net".into(),
            principal: Principal::Pod {
                namespace: "team-a".into(),
                service_account: "app".into(),
                scope: CredentialScope::ServiceAccount {
                    uid: "sa-uid".into(),
                },
            },
        }
    }
}

/// What proves the application's identity to Entra.
pub(super) enum Credential {
    /// The pod's token as a client assertion.
    Assertion(SecretString),
    /// A service principal's client secret.
    Secret(SecretString),
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<serde_json::Value>,
}

impl AzureBackend {
    /// A token for `ends.resource` as `client_id` in `tenant`, proven by
    /// `credential`, from the cache or a (shared) token request.
    pub(super) async fn access_token(
        &self,
        ends: &Endpoints,
        tenant: &str,
        client_id: &str,
        principal: Principal,
        credential: Credential,
    ) -> Result<(SecretString, TokenKey), Error> {
        let key = TokenKey {
            authority: ends.authority.clone(),
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            resource: ends.resource.clone(),
            principal,
        };
        if let Some(found) = self.state.tokens.get(&key) {
            self.state.metrics.cache("login", "hit");
            return Ok((found, key));
        }
        let returned = key.clone();
        let http = self.http().await?.clone();
        let state = Arc::clone(&self.state);
        let cache_key = key.clone();
        let (result, role) = self
            .state
            .logins
            .run(
                key,
                || async move {
                    // A login that ended between this mount's cache miss and its joining the flights has
                    // already cached the token: use it rather than asking Entra again.
                    if let Some(found) = state.tokens.get(&cache_key) {
                        return Ok(found);
                    }
                    let result = request_token(&state, &http, &cache_key, &credential).await;
                    let label = match &result {
                        Ok(_) => "ok",
                        Err(e) if e.kind == ErrorKind::Denied => "denied",
                        Err(_) => "error",
                    };
                    state
                        .metrics
                        .logins
                        .get_or_create(&LoginLabels {
                            backend: BACKEND,
                            result: label,
                        })
                        .inc();
                    let (token, expires) = result?;
                    let valid_for = expires
                        .duration_since(SystemTime::now())
                        .unwrap_or_default()
                        .saturating_sub(EXPIRY_MARGIN);
                    if !valid_for.is_zero() {
                        state.tokens.insert(cache_key, token.clone(), valid_for);
                    }
                    Ok(token)
                },
                || {
                    Err(Error::new(
                        ErrorKind::Unavailable,
                        BACKEND,
                        "a shared token request was aborted",
                    ))
                },
            )
            .await;
        self.state.metrics.cache(
            "login",
            if role == Role::Leader {
                "miss"
            } else {
                "shared"
            },
        );
        result.map(|token| (token, returned))
    }

    /// Drops the cached token for `key`: Key Vault no longer accepts it.
    pub(super) fn forget_token(&self, key: &TokenKey) {
        self.state.tokens.remove(key);
    }

    /// The service account's workload identity annotations (cached briefly).
    pub(super) async fn annotations(&self, identity: &PodIdentity) -> Result<Annotations, Error> {
        let kube = Arc::clone(&self.state.kube);
        self.state
            .annotations
            .get(identity.namespace(), identity.service_account(), self.state.settings.annotation_cache, |ns, sa| async move {
                service_account::annotations(&kube, &ns, &sa).await
            })
            .await
    }
}

/// The principal of a service principal's client secret.
pub(super) fn secret_principal(client_secret: &SecretString) -> Principal {
    Principal::ServicePrincipal(Sha256::digest(client_secret.expose_secret().as_bytes()).into())
}

/// One request to `{authority}/{tenant}/oauth2/v2.0/token`.
async fn request_token(
    state: &State,
    http: &reqwest::Client,
    key: &TokenKey,
    credential: &Credential,
) -> Result<(SecretString, SystemTime), Error> {
    let url = format!("{}/{}/oauth2/v2.0/token", key.authority, key.tenant);
    let scope = format!("{}/.default", key.resource);
    // The serializer is not Send: finish it before the first await.
    let body = Zeroizing::new({
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        form.append_pair("client_id", &key.client_id);
        form.append_pair("scope", &scope);
        match credential {
            Credential::Assertion(token) => {
                form.append_pair("client_assertion_type", JWT_BEARER);
                form.append_pair("client_assertion", token.expose_secret());
            }
            Credential::Secret(secret) => {
                form.append_pair("client_secret", secret.expose_secret());
            }
        }
        form.finish()
    });
    let started = std::time::Instant::now();
    let answer = rest::send(
        || {
            http.post(&url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body.as_bytes().to_vec())
        },
        "the Entra token request",
    )
    .await;
    count(
        state,
        "token",
        answer.as_ref().is_ok_and(|a| a.status.is_success()),
        started,
    );
    let answer = answer?;
    if !answer.status.is_success() {
        let azure = answer.azure_error();
        let kind = if azure.kind() == ErrorKind::Unavailable {
            ErrorKind::Unavailable
        } else {
            ErrorKind::Denied
        };
        let hint = match credential {
            Credential::Assertion(_) => format!(
                "check application {} has a federated identity credential for this service account (issuer: the \
                 cluster's, subject: system:serviceaccount:NAMESPACE:NAME, audience: api://AzureADTokenExchange) and \
                 that tenant {} is its tenant",
                key.client_id, key.tenant
            ),
            Credential::Secret(_) => format!(
                "check the nodePublishSecretRef Secret's clientid and clientsecret for tenant {}",
                key.tenant
            ),
        };
        return Err(Error::new(
            kind,
            BACKEND,
            format!(
                "Entra refused a Key Vault token ({}); {hint}",
                azure.describe()
            ),
        )
        .caused_by(azure));
    }
    let parsed: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|_| {
        Error::new(
            ErrorKind::Unavailable,
            BACKEND,
            "Entra answered something that is not a token response",
        )
    })?;
    // `expires_in` is a number, or a string of one from older endpoints; unreadable means not cached.
    let seconds = match &parsed.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(0);
    Ok((
        SecretString::new(parsed.access_token),
        SystemTime::now() + Duration::from_secs(seconds),
    ))
}
