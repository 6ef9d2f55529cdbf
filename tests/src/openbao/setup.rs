//! Configuring a dev server through its API: secrets engines, policies, auth methods and roles.
//!
//! The request bodies are the ones known to work against OpenBao 2.7 (see docs/test-environment.md).

use anyhow::{Context as _, bail};
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

    /// Writes ACL policy `name` that may read `paths` (globs allowed) and nothing else.
    pub async fn read_only_policy(&self, name: &str, paths: &[&str]) -> anyhow::Result<()> {
        let hcl: String = paths
            .iter()
            .map(|path| format!("path {path:?} {{ capabilities = [\"read\"] }}\n"))
            .collect();
        self.write_policy(name, &hcl).await
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

impl OpenBao {
    /// Calls `/v1/<path>` with the root token inside `namespace` (sent as `X-Vault-Namespace`), or at the root
    /// namespace for `None`. Same answers as [`OpenBao::api`].
    pub async fn api_in_namespace(
        &self,
        namespace: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, text) = self.api_raw(namespace, method.clone(), path, body).await?;
        let where_ = namespace.map_or_else(String::new, |ns| format!(" (namespace {ns})"));
        if !status.is_success() {
            bail!("{method} /v1/{path}{where_} answered {status}: {text}");
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{method} /v1/{path}{where_}: body is not JSON: {text}"))
    }

    /// Calls `/v1/<path>` with the root token and returns the status and body text whatever the status.
    async fn api_raw(
        &self,
        namespace: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(reqwest::StatusCode, String)> {
        let path = path.trim_start_matches('/');
        let url = format!("{}/v1/{path}", self.addr());
        let mut request = self
            .http_client()?
            .request(method.clone(), &url)
            .header("X-Vault-Token", super::ROOT_TOKEN);
        if let Some(namespace) = namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .with_context(|| format!("{method} {url}: reading the body"))?;
        Ok((status, text))
    }

    /// Creates the child namespace `name` of the root namespace.
    pub async fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        self.api(Method::POST, &format!("sys/namespaces/{name}"), None)
            .await?;
        Ok(())
    }

    /// The ids of the leases OpenBao holds under `prefix` (e.g. `database/creds/app/`), as full lease ids
    /// (`<prefix><id>`), sorted. Empty when there are none.
    pub async fn lease_ids(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        self.lease_ids_in(None, prefix).await
    }

    /// Like [`lease_ids`](Self::lease_ids), inside `namespace` (`None`: the root namespace).
    pub async fn lease_ids_in(
        &self,
        namespace: Option<&str>,
        prefix: &str,
    ) -> anyhow::Result<Vec<String>> {
        let prefix = format!("{}/", prefix.trim_end_matches('/'));
        let path = format!("sys/leases/lookup/{prefix}?list=true");
        let (status, text) = self.api_raw(namespace, Method::GET, &path, None).await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        if !status.is_success() {
            bail!("listing leases under {prefix} answered {status}: {text}");
        }
        let body: Value = serde_json::from_str(&text)
            .with_context(|| format!("listing leases under {prefix}: body is not JSON: {text}"))?;
        let keys = body["data"]["keys"].as_array().with_context(|| {
            format!("listing leases under {prefix} answered without data.keys: {body}")
        })?;
        let mut ids = keys
            .iter()
            .map(|key| {
                key.as_str()
                    .map(|key| format!("{prefix}{key}"))
                    .with_context(|| format!("lease key {key} is not a string"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        ids.sort();
        Ok(ids)
    }

    /// `sys/leases/lookup` of one lease: `ttl` (seconds left), `expire_time`, `renewable`, ...
    pub async fn lease_lookup(&self, lease_id: &str) -> anyhow::Result<Value> {
        let response = self
            .api(
                Method::PUT,
                "sys/leases/lookup",
                Some(json!({"lease_id": lease_id})),
            )
            .await?;
        Ok(response["data"].clone())
    }

    /// Mounts the database secrets engine at `mount` with the connection `connection` to `postgres`, as its
    /// superuser, for every role.
    pub async fn enable_postgres_database(
        &self,
        mount: &str,
        connection: &str,
        postgres: &crate::postgres::Postgres,
    ) -> anyhow::Result<()> {
        self.enable_secrets_engine(mount, "database", json!({}))
            .await?;
        self.api(
            Method::POST,
            &format!("{mount}/config/{connection}"),
            Some(json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": postgres.connection_url_for_openbao(),
                "username": postgres.superuser(),
                "password": postgres.superuser_password(),
                "allowed_roles": "*",
            })),
        )
        .await?;
        Ok(())
    }

    /// Creates a database role on connection `connection` whose credentials are a PostgreSQL login role valid
    /// until its lease ends. Credentials are then read at `<mount>/creds/<role>`.
    pub async fn postgres_role(
        &self,
        mount: &str,
        connection: &str,
        role: &str,
        default_ttl: &str,
        max_ttl: &str,
    ) -> anyhow::Result<()> {
        self.api(
            Method::POST,
            &format!("{mount}/roles/{role}"),
            Some(json!({
                "db_name": connection,
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
                ],
                "default_ttl": default_ttl,
                "max_ttl": max_ttl,
            })),
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
