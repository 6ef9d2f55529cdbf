//! Whose Key Vault token a mount uses: the pod's workload identity (the
//! SecretProviderClass's `clientID` and tenant, else the service account's
//! annotations), or, only where the operator allows it, the service principal
//! of the volume's `nodePublishSecretRef`.

use super::cloud::Endpoints;
use super::login::{self, Credential, Principal, TokenKey};
use super::service_account::{self, Annotations};
use super::{AUDIENCE, AzureAuth, AzureBackend, AzureConfig, BACKEND, valid_client_id};
use crate::backend::token::{TokenAdvice, token_error};
use crate::backend::{Error, ErrorKind};
use crate::identity::PodIdentity;
use crate::secret::SecretString;

impl AzureBackend {
    /// The Key Vault token for the mount's identity.
    pub(super) async fn token(
        &self,
        config: &AzureConfig,
        ends: &Endpoints,
        identity: &PodIdentity,
    ) -> Result<(SecretString, TokenKey), Error> {
        let AzureAuth::Pod { client_id } = &config.auth;
        let publish = (
            identity.publish_secret("clientid"),
            identity.publish_secret("clientsecret"),
        );
        if client_id.is_none()
            && let (Some(sp_id), Some(sp_secret)) = publish
        {
            return self
                .service_principal_token(config, ends, sp_id, sp_secret)
                .await;
        }
        // The token first: nothing is read for a pod whose token is not verified.
        let checked = self
            .state
            .verifier
            .check(identity, AUDIENCE)
            .await
            .map_err(|problem| {
                token_error(
                    problem,
                    BACKEND,
                    AUDIENCE,
                    identity,
                    TokenAdvice {
                        missing_also: "",
                        pod: "this pod".to_owned(),
                    },
                )
            })?;
        // Annotations are read only when the SecretProviderClass leaves something out.
        let annotations = if client_id.is_none() || config.tenant.is_none() {
            self.annotations(identity).await?
        } else {
            Annotations::default()
        };
        let client_id = client_id.clone().or(annotations.client_id).ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                BACKEND,
                format!(
                    "no clientID: set clientID in the SecretProviderClass, or annotate service account {}/{} with {}",
                    identity.namespace(),
                    identity.service_account(),
                    service_account::CLIENT_ID_ANNOTATION
                ),
            )
        })?;
        let tenant = config.tenant.clone().or(annotations.tenant_id).ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                BACKEND,
                format!(
                    "tenantId is not provided: set tenantID in the SecretProviderClass, or annotate service account \
                     {}/{} with {}",
                    identity.namespace(),
                    identity.service_account(),
                    service_account::TENANT_ID_ANNOTATION
                ),
            )
        })?;
        let principal = Principal::Pod {
            namespace: identity.namespace().to_owned(),
            service_account: identity.service_account().to_owned(),
            scope: checked.scope,
        };
        self.access_token(
            ends,
            &tenant,
            &client_id,
            principal,
            Credential::Assertion(checked.token.clone()),
        )
        .await
    }

    /// The token of the volume's `nodePublishSecretRef` service principal, if the operator allows it.
    async fn service_principal_token(
        &self,
        config: &AzureConfig,
        ends: &Endpoints,
        client_id: &SecretString,
        client_secret: &SecretString,
    ) -> Result<(SecretString, TokenKey), Error> {
        if !self.state.settings.allow_node_publish_secret {
            return Err(Error::new(
                ErrorKind::Denied,
                BACKEND,
                "the volume's nodePublishSecretRef holds a service principal (clientid/clientsecret), which would read \
                 with credentials stored in the cluster instead of the pod's identity; use workload identity \
                 (clientID), or ask the operator to start the provider with --azure-allow-node-publish-secret",
            ));
        }
        let id = client_id.expose_secret().trim();
        if !valid_client_id(id) {
            return Err(Error::new(
                ErrorKind::Invalid,
                BACKEND,
                "nodePublishSecretRef: clientid is not an application id",
            ));
        }
        let tenant = config.tenant.clone().ok_or_else(|| {
            Error::new(
                ErrorKind::Invalid,
                BACKEND,
                "tenantId is not provided: set tenantID in the SecretProviderClass",
            )
        })?;
        let principal = login::secret_principal(client_secret);
        self.access_token(
            ends,
            &tenant,
            id,
            principal,
            Credential::Secret(client_secret.clone()),
        )
        .await
    }
}
