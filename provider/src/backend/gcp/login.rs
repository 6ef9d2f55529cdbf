//! The pod's Google access token: its Kubernetes token exchanged at STS for a
//! federated token, then, when the service account names a Google service
//! account, that account impersonated through IAM Credentials. Cached per
//! verified identity and shared between concurrent mounts.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::json;

use super::rest::{self, Answer};
use super::service_account::{self, Impersonation};
use super::{BACKEND, GcpBackend, State, count};
use crate::backend::{Error, ErrorKind};
use crate::identity::{CredentialScope, PodIdentity};
use crate::metrics::LoginLabels;
use crate::secret::SecretString;
use crate::singleflight::Role;

/// Tokens are dropped this long before they expire, so a mount never starts with one about to lapse.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// The scope every token is asked for (what Secret Manager's clients ask for).
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Lifetime asked of IAM Credentials (its default, and the most without an org policy change).
const IMPERSONATION_LIFETIME: &str = "3600s";
/// An audience of this form is a full workload identity pool provider, sent to STS as is.
const POOL_PROVIDER_PREFIX: &str = "//iam.googleapis.com/";

/// Cache key of an access token: the audience, the impersonated account and the
/// pod identity, scoped to the service account only for a verified token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct TokenKey {
    audience: String,
    impersonation: Option<Impersonation>,
    namespace: String,
    service_account: String,
    /// `None` only for the provider's own credentials.
    scope: Option<CredentialScope>,
}

impl TokenKey {
    #[cfg(test)]
    pub(super) fn for_test() -> Self {
        Self {
            audience: "p1.svc.id.goog".into(),
            impersonation: None,
            namespace: "team-a".into(),
            service_account: "app".into(),
            scope: Some(CredentialScope::ServiceAccount { uid: "sa-uid".into() }),
        }
    }
}

#[derive(Deserialize)]
struct StsAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IamAnswer {
    access_token: String,
    expire_time: Option<String>,
}

impl GcpBackend {
    /// The pod's access token, from the cache or a (shared) exchange.
    pub(super) async fn pod_token(
        &self,
        audience: &str,
        identity: &PodIdentity,
        token: &SecretString,
        scope: CredentialScope,
    ) -> Result<SecretString, Error> {
        let impersonation = self.impersonation(identity).await?;
        let key = TokenKey {
            audience: audience.to_owned(),
            impersonation: impersonation.clone(),
            namespace: identity.namespace().to_owned(),
            service_account: identity.service_account().to_owned(),
            scope: Some(scope),
        };
        let sts_audience = self.sts_audience(audience)?;
        let token = token.clone();
        self.cached_or(key, move |state, http| async move {
            let (federated, expires) = exchange(&state, &http, &sts_audience, &token).await?;
            match impersonation {
                None => Ok((federated, expires)),
                Some(target) => impersonate(&state, &http, &federated, &target).await,
            }
        })
        .await
    }

    /// The provider's own token from the metadata server (`auth: provider-adc`, when allowed).
    pub(super) async fn provider_token(&self) -> Result<SecretString, Error> {
        let key = TokenKey {
            audience: String::new(),
            impersonation: None,
            namespace: String::new(),
            service_account: String::new(),
            scope: None,
        };
        self.cached_or(key, |state, http| async move { metadata_token(&state, &http).await }).await
    }

    /// A cached token for `key`, or the result of `work` shared with every
    /// concurrent mount asking for the same key.
    async fn cached_or<F, Fut>(&self, key: TokenKey, work: F) -> Result<SecretString, Error>
    where
        F: FnOnce(Arc<State>, reqwest::Client) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(SecretString, SystemTime), Error>> + Send + 'static,
    {
        if let Some(found) = self.state.tokens.get(&key) {
            self.state.metrics.cache("login", "hit");
            return Ok(found);
        }
        let http = self.http().await?.clone();
        let state = Arc::clone(&self.state);
        let cache = Arc::clone(&self.state);
        let cache_key = key.clone();
        let (result, role) = self
            .state
            .exchanges
            .run(
                key,
                || async move {
                    // A flight that ended between this mount's cache miss and its joining the flights has
                    // already cached the token: use it rather than exchanging again.
                    if let Some(found) = cache.tokens.get(&cache_key) {
                        return Ok(found);
                    }
                    let result = work(Arc::clone(&state), http).await;
                    let label = match &result {
                        Ok(_) => "ok",
                        Err(e) if e.kind == ErrorKind::Denied => "denied",
                        Err(_) => "error",
                    };
                    state.metrics.logins.get_or_create(&LoginLabels { backend: BACKEND, result: label }).inc();
                    let (token, expires) = result?;
                    let valid_for =
                        expires.duration_since(SystemTime::now()).unwrap_or_default().saturating_sub(EXPIRY_MARGIN);
                    if !valid_for.is_zero() {
                        cache.tokens.insert(cache_key, token.clone(), valid_for);
                    }
                    Ok(token)
                },
                || Err(Error::new(ErrorKind::Unavailable, BACKEND, "a shared token exchange was aborted")),
            )
            .await;
        self.state.metrics.cache("login", if role == Role::Leader { "miss" } else { "shared" });
        result
    }

    /// The STS audience for a token of `audience`.
    fn sts_audience(&self, audience: &str) -> Result<String, Error> {
        if audience.starts_with(POOL_PROVIDER_PREFIX) {
            return Ok(audience.to_owned());
        }
        let provider = self.state.settings.identity_provider.as_deref().ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                BACKEND,
                "the cluster's identity provider is not configured: start the provider with --gcp-identity-provider \
                 https://container.googleapis.com/v1/projects/PROJECT/locations/LOCATION/clusters/CLUSTER, or set \
                 the 'audience' parameter to a full workload identity pool provider (//iam.googleapis.com/...)",
            )
        })?;
        Ok(format!("identitynamespace:{audience}:{provider}"))
    }

    /// The service account's impersonation target, from its annotation (cached briefly).
    async fn impersonation(&self, identity: &PodIdentity) -> Result<Option<Impersonation>, Error> {
        let kube = Arc::clone(&self.state.kube);
        self.state
            .annotations
            .get(identity.namespace(), identity.service_account(), self.state.settings.annotation_cache, |ns, sa| async move {
                service_account::impersonation(&kube, &ns, &sa).await
            })
            .await
    }
}

/// The pod's token exchanged at STS for a federated access token.
async fn exchange(state: &State, http: &reqwest::Client, audience: &str, token: &SecretString) -> Result<(SecretString, SystemTime), Error> {
    let url = format!("{}/v1/token", state.settings.endpoints.sts.trim_end_matches('/'));
    let body = json!({
        "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
        "audience": audience,
        "scope": CLOUD_PLATFORM,
        "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
        "subjectToken": token.expose_secret(),
        "subjectTokenType": "urn:ietf:params:oauth:token-type:jwt",
    });
    let started = std::time::Instant::now();
    let answer = rest::send(|| http.post(&url).json(&body), "the STS token exchange").await;
    count(state, "token_exchange", answer.as_ref().is_ok_and(|a| a.status.is_success()), started);
    let answer = answer?;
    if !answer.status.is_success() {
        return Err(refused(&answer, |google| {
            format!(
                "Google's STS refused the pod's token for audience {audience:?} ({google}); check the workload pool \
                 ('audience' parameter or --gcp-workload-pool) and --gcp-identity-provider match the cluster"
            )
        }));
    }
    let parsed: StsAnswer = parse(&answer, "STS")?;
    let expires = SystemTime::now() + Duration::from_secs(parsed.expires_in.unwrap_or(0));
    Ok((SecretString::new(parsed.access_token), expires))
}

/// A refusal by STS or IAM Credentials: unavailable if Google said so, else
/// denied; `message` gets Google's own description.
fn refused(answer: &Answer, message: impl FnOnce(String) -> String) -> Error {
    let google = answer.google_error();
    let kind = if google.kind() == ErrorKind::Unavailable { ErrorKind::Unavailable } else { ErrorKind::Denied };
    Error::new(kind, BACKEND, message(google.describe())).caused_by(google)
}

/// The Google service account `target` impersonated with the federated token.
async fn impersonate(
    state: &State,
    http: &reqwest::Client,
    federated: &SecretString,
    target: &Impersonation,
) -> Result<(SecretString, SystemTime), Error> {
    let url = format!(
        "{}/v1/projects/-/serviceAccounts/{}:generateAccessToken",
        state.settings.endpoints.iam_credentials.trim_end_matches('/'),
        target.target
    );
    let delegates: Vec<String> = target.delegates.iter().map(|d| format!("projects/-/serviceAccounts/{d}")).collect();
    let body = json!({ "scope": [CLOUD_PLATFORM], "delegates": delegates, "lifetime": IMPERSONATION_LIFETIME });
    let auth = rest::bearer(federated.expose_secret())?;
    let started = std::time::Instant::now();
    let answer = rest::send(|| http.post(&url).header(reqwest::header::AUTHORIZATION, auth.clone()).json(&body), "IAM Credentials generateAccessToken").await;
    count(state, "impersonate", answer.as_ref().is_ok_and(|a| a.status.is_success()), started);
    let answer = answer?;
    if !answer.status.is_success() {
        return Err(refused(&answer, |google| {
            format!(
                "impersonating {} was refused ({google}); check the Google service account grants \
                 roles/iam.workloadIdentityUser to this Kubernetes service account's principal",
                target.target
            )
        }));
    }
    let parsed: IamAnswer = parse(&answer, "IAM Credentials")?;
    // An unreadable expiry is not cached: the next mount asks again.
    let expires = parsed
        .expire_time
        .as_deref()
        .and_then(|t| humantime::parse_rfc3339_weak(t).ok())
        .unwrap_or_else(SystemTime::now);
    Ok((SecretString::new(parsed.access_token), expires))
}

/// The provider's own token from the metadata server.
async fn metadata_token(state: &State, http: &reqwest::Client) -> Result<(SecretString, SystemTime), Error> {
    let url = format!(
        "{}/computeMetadata/v1/instance/service-accounts/default/token",
        state.settings.endpoints.metadata.trim_end_matches('/')
    );
    let answer = rest::send(|| http.get(&url).header("Metadata-Flavor", "Google"), "the metadata server's token").await?;
    if !answer.status.is_success() {
        return Err(Error::new(
            ErrorKind::Unavailable,
            BACKEND,
            format!("the metadata server refused a token (HTTP {}); check the node's service account", answer.status.as_u16()),
        ));
    }
    let parsed: StsAnswer = parse(&answer, "the metadata server")?;
    let expires = SystemTime::now() + Duration::from_secs(parsed.expires_in.unwrap_or(0));
    Ok((SecretString::new(parsed.access_token), expires))
}

fn parse<T: serde::de::DeserializeOwned>(answer: &Answer, who: &str) -> Result<T, Error> {
    serde_json::from_slice(&answer.body)
        .map_err(|_| Error::new(ErrorKind::Unavailable, BACKEND, format!("{who} answered something that is not a token response")))
}
