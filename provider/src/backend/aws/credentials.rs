//! The pod's AWS credentials: IRSA (AssumeRoleWithWebIdentity with the pod's
//! token) or EKS Pod Identity (the pod's token sent to the agent). Never the
//! node's or the provider's own credentials.

use std::time::{Duration, SystemTime};

use aws_sdk_secretsmanager::config::Credentials;
use serde::Deserialize;

use super::errors::classify;
use crate::backend::{Error, ErrorKind};
use crate::secret::SecretString;

/// Credentials are dropped this long before they expire.
pub(super) const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// Lifetime asked of STS.
const SESSION_SECONDS: i32 = 3600;
/// The Pod Identity agent's addresses (link-local, on every EKS node).
pub(super) const AGENT_URL_IPV4: &str = "http://169.254.170.23/v1/credentials";
/// See [`AGENT_URL_IPV4`].
pub(super) const AGENT_URL_IPV6: &str = "http://[fd00:ec2::23]/v1/credentials";
/// Time allowed for the agent to answer.
const AGENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Builds a provider-side session name from the pod identity: `[\w+=,.@-]{2,64}`.
pub(super) fn session_name(namespace: &str, service_account: &str) -> String {
    let raw = format!("courier-{namespace}-{service_account}");
    let cleaned: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) { c } else { '-' })
        .take(64)
        .collect();
    cleaned
}

/// AssumeRoleWithWebIdentity with the pod's token.
pub(super) async fn assume_role(
    sts: &aws_sdk_sts::Client,
    role_arn: &str,
    session: &str,
    token: &SecretString,
) -> Result<(Credentials, SystemTime), Error> {
    let output = sts
        .assume_role_with_web_identity()
        .role_arn(role_arn)
        .role_session_name(session)
        .web_identity_token(token.expose_secret())
        .duration_seconds(SESSION_SECONDS)
        .send()
        .await
        .map_err(|e| {
            let failure = classify(e);
            let kind = if failure.kind == ErrorKind::Unavailable { ErrorKind::Unavailable } else { ErrorKind::Denied };
            Error::new(
                kind,
                "aws",
                format!(
                    "AssumeRoleWithWebIdentity for role {role_arn} refused: {}. Check the role's trust policy admits \
                     this service account (sub system:serviceaccount:<namespace>:<name>) from the cluster's OIDC \
                     provider with audience sts.amazonaws.com",
                    failure.message
                ),
            )
            .with_cause(Some(failure.cause))
        })?;
    let creds = output.credentials().ok_or_else(|| {
        Error::new(ErrorKind::Unavailable, "aws", "AssumeRoleWithWebIdentity returned no credentials")
    })?;
    let expires = SystemTime::try_from(*creds.expiration()).unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(900));
    Ok((
        Credentials::new(
            creds.access_key_id(),
            creds.secret_access_key(),
            Some(creds.session_token().to_owned()),
            Some(expires),
            "courier-irsa",
        ),
        expires,
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AgentCredentials {
    access_key_id: String,
    secret_access_key: String,
    token: String,
    expiration: String,
}

/// The HTTP client for the EKS Pod Identity agent.
pub(super) fn agent_client() -> Result<reqwest::Client, Error> {
    reqwest::Client::builder().build().map_err(|e| {
        Error::new(ErrorKind::Unavailable, "aws", format!("cannot build an HTTP client for the EKS Pod Identity agent: {e}"))
    })
}

/// Asks the EKS Pod Identity agent for the pod's credentials.
pub(super) async fn pod_identity(
    http: &reqwest::Client,
    url: &str,
    token: &SecretString,
) -> Result<(Credentials, SystemTime), Error> {
    let mut auth = reqwest::header::HeaderValue::from_str(token.expose_secret())
        .map_err(|_| Error::new(ErrorKind::Invalid, "aws", "the pod token is not a valid header value"))?;
    auth.set_sensitive(true);
    let response = http
        .get(url)
        .header(reqwest::header::AUTHORIZATION, auth)
        .timeout(AGENT_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Unavailable,
                "aws",
                format!("the EKS Pod Identity agent at {url} is unreachable: {e}; check the eks-pod-identity-agent add-on runs on this node"),
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        let kind = if status.is_server_error() { ErrorKind::Unavailable } else { ErrorKind::Denied };
        return Err(Error::new(
            kind,
            "aws",
            format!(
                "the EKS Pod Identity agent refused the pod's token (HTTP {}); check a pod identity association \
                 exists for this service account and that the CSIDriver requests audience pods.eks.amazonaws.com",
                status.as_u16()
            ),
        ));
    }
    let body: AgentCredentials = response.json().await.map_err(|e| {
        Error::new(ErrorKind::Unavailable, "aws", format!("the EKS Pod Identity agent answered unreadable credentials: {e}"))
    })?;
    let expires = humantime::parse_rfc3339_weak(&body.expiration)
        .or_else(|_| humantime::parse_rfc3339(&body.expiration))
        .unwrap_or_else(|_| SystemTime::now() + Duration::from_secs(900));
    Ok((
        Credentials::new(body.access_key_id, body.secret_access_key, Some(body.token), Some(expires), "courier-pod-identity"),
        expires,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_are_valid() {
        assert_eq!(session_name("team-a", "app"), "courier-team-a-app");
        let long = session_name(&"n".repeat(60), "sa");
        assert_eq!(long.len(), 64);
        assert_eq!(session_name("a b", "c/d"), "courier-a-b-c-d");
    }
}
