//! Configuring a dev server through its API: secrets engines, policies, auth methods and roles.
//!
//! The request bodies are the ones known to work against OpenBao 2.7 (see docs/test-environment.md).

use anyhow::Context as _;
use reqwest::Method;
use serde_json::{Value, json};

use super::OpenBao;

impl OpenBao {
    /// Mounts a secrets engine of `engine_type` at `mount`.
    pub async fn enable_secrets_engine(
        &self,
        mount: &str,
        engine_type: &str,
        options: Value,
    ) -> anyhow::Result<()> {
        self.api(
            Method::POST,
            &format!("sys/mounts/{mount}"),
            Some(json!({"type": engine_type, "options": options})),
        )
        .await?;
        Ok(())
    }

    /// Mounts a KV version 1 engine at `mount`.
    pub async fn enable_kv1(&self, mount: &str) -> anyhow::Result<()> {
        self.enable_secrets_engine(mount, "kv", json!({"version": "1"}))
            .await
    }

    /// Mounts a KV version 2 engine at `mount` (the dev server already has one at `secret`).
    pub async fn enable_kv2(&self, mount: &str) -> anyhow::Result<()> {
        self.enable_secrets_engine(mount, "kv", json!({"version": "2"}))
            .await
    }

    /// Writes `data` to `key` in the KV v2 engine at `mount` and returns the new version number.
    pub async fn kv2_put(&self, mount: &str, key: &str, data: Value) -> anyhow::Result<u64> {
        let response = self
            .api(
                Method::POST,
                &format!("{mount}/data/{key}"),
                Some(json!({"data": data})),
            )
            .await?;
        response["data"]["version"]
            .as_u64()
            .with_context(|| format!("KV v2 write answered without data.version: {response}"))
    }

    /// Writes `data` to `key` in the KV v1 engine at `mount`.
    pub async fn kv1_put(&self, mount: &str, key: &str, data: Value) -> anyhow::Result<()> {
        self.api(Method::POST, &format!("{mount}/{key}"), Some(data))
            .await?;
        Ok(())
    }

    /// Mounts a PKI engine at `mount` with an internal EC P-256 root CA named `common_name`.
    pub async fn enable_pki(&self, mount: &str, common_name: &str) -> anyhow::Result<()> {
        self.enable_secrets_engine(mount, "pki", json!({})).await?;
        self.api(
            Method::POST,
            &format!("sys/mounts/{mount}/tune"),
            Some(json!({"max_lease_ttl": "87600h"})),
        )
        .await?;
        self.api(
            Method::POST,
            &format!("{mount}/root/generate/internal"),
            Some(json!({"common_name": common_name, "key_type": "ec", "key_bits": 256, "ttl": "87600h"})),
        )
        .await?;
        Ok(())
    }

    /// Creates a PKI role that issues EC certificates for `allowed_domain` and its subdomains. Certificates are
    /// then issued at `<mount>/issue/<role>`.
    pub async fn pki_role(
        &self,
        mount: &str,
        role: &str,
        allowed_domain: &str,
    ) -> anyhow::Result<()> {
        self.api(
            Method::POST,
            &format!("{mount}/roles/{role}"),
            Some(json!({
                "allowed_domains": [allowed_domain],
                "allow_subdomains": true,
                "key_type": "ec",
                "key_bits": 256,
                "max_ttl": "24h",
            })),
        )
        .await?;
        Ok(())
    }

    /// Writes the ACL policy `name`.
    pub async fn write_policy(&self, name: &str, hcl: &str) -> anyhow::Result<()> {
        self.api(
            Method::PUT,
            &format!("sys/policies/acl/{name}"),
            Some(json!({"policy": hcl})),
        )
        .await?;
        Ok(())
    }

    /// Enables the auth method `method_type` at `auth/<mount>`.
    pub async fn enable_auth(&self, mount: &str, method_type: &str) -> anyhow::Result<()> {
        self.api(
            Method::POST,
            &format!("sys/auth/{mount}"),
            Some(json!({"type": method_type})),
        )
        .await?;
        Ok(())
    }

    /// Enables JWT auth at `auth/<mount>`, trusting tokens signed by `public_keys_pem` from `bound_issuer`.
    pub async fn enable_jwt_auth(
        &self,
        mount: &str,
        public_keys_pem: &[String],
        bound_issuer: &str,
    ) -> anyhow::Result<()> {
        self.enable_auth(mount, "jwt").await?;
        self.api(
            Method::POST,
            &format!("auth/{mount}/config"),
            Some(json!({"jwt_validation_pubkeys": public_keys_pem, "bound_issuer": bound_issuer})),
        )
        .await?;
        Ok(())
    }

    /// Creates a JWT role that admits one service account of one namespace, for the given audiences.
    pub async fn jwt_role(&self, mount: &str, role: &JwtRole) -> anyhow::Result<()> {
        let subject = format!(
            "system:serviceaccount:{}:{}",
            role.namespace, role.service_account
        );
        self.api(
            Method::POST,
            &format!("auth/{mount}/role/{}", role.name),
            Some(json!({
                "role_type": "jwt",
                "bound_audiences": role.bound_audiences,
                "user_claim": "sub",
                "bound_subject": subject,
                "bound_claims": {
                    "/kubernetes.io/namespace": role.namespace,
                    "/kubernetes.io/serviceaccount/name": role.service_account,
                },
                "claim_mappings": {"/kubernetes.io/pod/name": "pod"},
                "token_policies": role.policies,
                "token_ttl": "10m",
            })),
        )
        .await?;
        Ok(())
    }

    /// Enables kubernetes auth at `auth/<mount>`, reviewing tokens at `kubernetes_host` (a [`TokenReviewServer`]).
    ///
    /// OpenBao authenticates its TokenReview calls with `token_reviewer_jwt`, as a cluster gives it a reviewer
    /// service account's token. `disable_local_ca_jwt` keeps it from looking for an in-pod service account; it
    /// then insists on a CA certificate, which plain HTTP never uses.
    ///
    /// [`TokenReviewServer`]: crate::TokenReviewServer
    pub async fn enable_kubernetes_auth(
        &self,
        mount: &str,
        kubernetes_host: &str,
        ca_pem: &str,
        token_reviewer_jwt: &str,
    ) -> anyhow::Result<()> {
        self.enable_auth(mount, "kubernetes").await?;
        self.api(
            Method::POST,
            &format!("auth/{mount}/config"),
            Some(json!({
                "kubernetes_host": kubernetes_host,
                "disable_local_ca_jwt": true,
                "kubernetes_ca_cert": ca_pem,
                "token_reviewer_jwt": token_reviewer_jwt,
            })),
        )
        .await?;
        Ok(())
    }

    /// Creates a kubernetes auth role.
    pub async fn kubernetes_role(&self, mount: &str, role: &KubernetesRole) -> anyhow::Result<()> {
        let mut body = json!({
            "bound_service_account_names": role.service_account_names,
            "bound_service_account_namespaces": role.namespaces,
            "token_policies": role.policies,
            "token_ttl": "10m",
        });
        if let Some(audience) = &role.audience {
            body["audience"] = json!(audience);
        }
        self.api(
            Method::POST,
            &format!("auth/{mount}/role/{}", role.name),
            Some(body),
        )
        .await?;
        Ok(())
    }
}

/// A JWT auth role for one service account.
#[derive(Debug, Clone)]
pub struct JwtRole {
    /// Role name, as SecretProviderClasses give it in `roleName`.
    pub name: String,
    /// Audiences the token must carry one of.
    pub bound_audiences: Vec<String>,
    /// The service account's namespace.
    pub namespace: String,
    /// The service account's name.
    pub service_account: String,
    /// Policies of the issued token.
    pub policies: Vec<String>,
}

/// A kubernetes auth role.
#[derive(Debug, Clone)]
pub struct KubernetesRole {
    /// Role name.
    pub name: String,
    /// Service accounts admitted.
    pub service_account_names: Vec<String>,
    /// Namespaces admitted.
    pub namespaces: Vec<String>,
    /// Audience OpenBao asks the TokenReview to check; `None` means the API server's own audiences.
    pub audience: Option<String>,
    /// Policies of the issued token.
    pub policies: Vec<String>,
}
