//! The pod's AWS credentials: IRSA (the service account's role, assumed with
//! its token) or EKS Pod Identity (the agent's credentials for the pod), cached
//! per identity and shared between concurrent mounts.

use std::sync::Arc;
use std::time::SystemTime;

use aws_sdk_secretsmanager::config::Credentials;

use super::credentials::{self, AGENT_URL_IPV4, AGENT_URL_IPV6, EXPIRY_MARGIN};
use super::{AwsAuth, AwsBackend, AwsConfig, BACKEND, CredentialKey, service_account};
use crate::backend::{Error, ErrorKind};
use crate::identity::{CredentialScope, PodIdentity};
use crate::metrics::{LoginLabels, OperationLabels, RequestLabels};
use crate::singleflight::Role;

impl AwsBackend {
    /// The pod's credentials, from the cache or a (shared) exchange.
    pub(super) async fn credentials(
        &self,
        cfg: &AwsConfig,
        identity: &PodIdentity,
        token: &crate::secret::SecretString,
        scope: CredentialScope,
    ) -> Result<Credentials, Error> {
        let (method, role_arn) = match &cfg.auth {
            AwsAuth::Irsa { role_arn: Some(arn) } => ("irsa", arn.clone()),
            AwsAuth::Irsa { role_arn: None } => ("irsa", self.role_of(identity).await?),
            AwsAuth::PodIdentity { .. } => ("pod_identity", String::new()),
        };
        let key = CredentialKey {
            method,
            role_arn: role_arn.clone(),
            sa_namespace: identity.namespace().to_owned(),
            sa_name: identity.service_account().to_owned(),
            scope,
        };
        if let Some(found) = self.state.credentials.get(&key) {
            self.state.metrics.cache("login", "hit");
            return Ok(found);
        }
        let state = Arc::clone(&self.state);
        let token = token.clone();
        let auth = cfg.auth.clone();
        let session = credentials::session_name(identity.namespace(), identity.service_account());
        let base = self.base(&cfg.region).await;
        let (result, role) = self
            .state
            .inflight
            .run(
                key.clone(),
                || async move {
                    let started = std::time::Instant::now();
                    let result = match &auth {
                        AwsAuth::Irsa { .. } => {
                            let sts = aws_sdk_sts::Client::new(&base);
                            credentials::assume_role(&sts, &role_arn, &session, &token).await
                        }
                        AwsAuth::PodIdentity { prefer_ipv6 } => {
                            let url = state.settings.pod_identity_agent_url.clone().unwrap_or_else(|| {
                                if *prefer_ipv6 { AGENT_URL_IPV6.to_owned() } else { AGENT_URL_IPV4.to_owned() }
                            });
                            match state.http.get_or_try_init(|| async { credentials::agent_client() }).await {
                                Ok(http) => credentials::pod_identity(http, &url, &token).await,
                                Err(e) => Err(e),
                            }
                        }
                    };
                    let operation = "login";
                    let status = if result.is_ok() { "2xx" } else { "error" };
                    state.metrics.backend_requests.get_or_create(&RequestLabels { backend: BACKEND, operation, status }).inc();
                    state
                        .metrics
                        .backend_seconds
                        .get_or_create(&OperationLabels { backend: BACKEND, operation })
                        .observe(started.elapsed().as_secs_f64());
                    let label = match &result {
                        Ok(_) => "ok",
                        Err(e) if e.kind == ErrorKind::Denied => "denied",
                        Err(_) => "error",
                    };
                    state.metrics.logins.get_or_create(&LoginLabels { backend: BACKEND, result: label }).inc();
                    result
                },
                || Err(Error::new(ErrorKind::Unavailable, BACKEND, "a shared credential exchange was aborted")),
            )
            .await;
        self.state.metrics.cache("login", if role == Role::Leader { "miss" } else { "shared" });
        let (creds, expires) = result?;
        let valid_for = expires
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .saturating_sub(EXPIRY_MARGIN);
        if !valid_for.is_zero() {
            self.state.credentials.insert(key, creds.clone(), valid_for);
        }
        Ok(creds)
    }

    /// The IAM role of the pod's service account, from its annotation (cached briefly).
    async fn role_of(&self, identity: &PodIdentity) -> Result<String, Error> {
        let kube = Arc::clone(&self.state.kube);
        let role = self
            .state
            .roles
            .get(identity.namespace(), identity.service_account(), self.state.settings.role_cache, |ns, sa| async move {
                service_account::role_arn(&kube, &ns, &sa).await
            })
            .await?;
        role.ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                BACKEND,
                format!(
                    "service account {}/{} has no {} annotation; annotate it with the IAM role to assume, or use \
                     usePodIdentity: \"true\"",
                    identity.namespace(),
                    identity.service_account(),
                    service_account::ROLE_ARN_ANNOTATION
                ),
            )
        })
    }
}
