//! One cluster for the SecretSync tests: a fake Kubernetes API serving TokenRequests signed with the key
//! its JWKS publishes, the real provider verifying those tokens, the shared OpenBao trusting the same key,
//! and the controller process(es).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;
use courier_tests::{
    FakeKubeApi, JwtRole, KUBERNETES_ISSUER, KubeResource, OpenBao, ProviderBuilder, ProviderProcess,
    SecretSyncBuilder, SecretSyncProcess, TokenIssuer,
};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// Where JWT auth is mounted on the shared OpenBao.
pub(crate) const JWT_MOUNT: &str = "jwt";
/// The SecretProviderClass the tests use.
pub(crate) const SPC: &str = "db-secrets";
/// The service account whose identity may read the case's secrets.
pub(crate) const APP_SA: &str = "app";
/// Deadline of every wait.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// Base64, as Secret data holds values.
pub(crate) fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// The shared OpenBao with JWT auth trusting [`Bao::issuer`], which also signs the fake API's TokenRequests.
pub(crate) struct Bao {
    pub(crate) bao: OpenBao,
    pub(crate) issuer: Arc<TokenIssuer>,
}

static BAO: OnceCell<Bao> = OnceCell::const_new();

pub(crate) async fn bao() -> anyhow::Result<&'static Bao> {
    BAO.get_or_try_init(|| async {
        let bao = OpenBao::start().await.context("starting OpenBao")?;
        let issuer = Arc::new(TokenIssuer::new()?);
        bao.enable_jwt_auth(JWT_MOUNT, &[issuer.public_key_pem().to_owned()], KUBERNETES_ISSUER)
            .await
            .context("configuring JWT auth")?;
        Ok(Bao { bao, issuer })
    })
    .await
}

/// One test's cluster: its namespace, a Vault role bound to `namespace/app` reading `secret/<id>/*`.
pub(crate) struct Cluster {
    pub(crate) id: String,
    pub(crate) namespace: String,
    pub(crate) kube: FakeKubeApi,
    pub(crate) provider: ProviderProcess,
    pub(crate) providers_dir: PathBuf,
    pub(crate) bao: &'static Bao,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub(crate) async fn start(label: &str) -> anyhow::Result<Self> {
        let bao = bao().await?;
        let id = format!("{label}-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed));
        let namespace = format!("ns-{id}");
        let dir = tempfile::Builder::new().prefix("courier-secretsync-test-").tempdir()?;
        let providers_dir = dir.path().join("providers");
        std::fs::create_dir_all(&providers_dir)?;
        let kube = FakeKubeApi::start()?;
        kube.serve_token_requests(Arc::clone(&bao.issuer));
        kube.put_service_account(&namespace, APP_SA, std::iter::empty::<(String, String)>());
        bao.bao
            .read_only_policy(&id, &[&format!("secret/data/{id}/*")])
            .await?;
        bao.bao
            .jwt_role(
                JWT_MOUNT,
                &JwtRole {
                    name: id.clone(),
                    bound_audiences: vec!["vault".to_owned()],
                    namespace: namespace.clone(),
                    service_account: APP_SA.to_owned(),
                    policies: vec![id.clone()],
                },
            )
            .await?;
        // The provider verifies every token against the fake API's JWKS: a TokenRequest token, bound to no
        // pod, must pass as the service account's own.
        let provider = ProviderBuilder::new()
            .provider("vault")
            .providers_dir(&providers_dir)
            .vault_addr(bao.bao.addr())
            .static_reuse(Duration::ZERO)
            .kubeconfig(kube.kubeconfig_path())
            .token_verification("required")
            .log_level("info")
            .start()
            .await?;
        Ok(Self { id, namespace, kube, provider, providers_dir, bao, _dir: dir })
    }

    /// Writes `data` at `secret/<id>/<name>` (KV v2).
    pub(crate) async fn put(&self, name: &str, data: Value) -> anyhow::Result<u64> {
        self.bao.bao.kv2_put("secret", &format!("{}/{name}", self.id), data).await
    }

    /// Deletes `secret/<id>/<name>` with all its versions.
    pub(crate) async fn destroy(&self, name: &str) -> anyhow::Result<()> {
        self.bao
            .bao
            .api(reqwest::Method::DELETE, &format!("secret/metadata/{}/{name}", self.id), None)
            .await
            .map(|_| ())
    }

    /// Takes the role's read permission away.
    pub(crate) async fn revoke_read(&self) -> anyhow::Result<()> {
        self.bao
            .bao
            .write_policy(&self.id, &format!("path \"secret/data/{}/*\" {{ capabilities = [\"deny\"] }}", self.id))
            .await
    }

    /// The SecretProviderClass `SPC` reading `secret/<id>/app` keys `username` and `password`, mirrored into
    /// the Opaque Secret `secret_name`.
    pub(crate) fn put_spc(&self, secret_name: &str) {
        let path = format!("secret/data/{}/app", self.id);
        let objects = format!(
            "- objectName: \"username\"\n  secretPath: \"{path}\"\n  secretKey: \"username\"\n\
             - objectName: \"password\"\n  secretPath: \"{path}\"\n  secretKey: \"password\"\n"
        );
        self.kube.put_secret_provider_class_spec(
            &self.namespace,
            SPC,
            json!({
                "provider": "vault",
                "parameters": {
                    "roleName": self.id,
                    "vaultAddress": self.bao.bao.addr(),
                    "vaultAuthMountPath": JWT_MOUNT,
                    "objects": objects,
                },
                "secretObjects": [{
                    "secretName": secret_name,
                    "type": "Opaque",
                    "data": [{"objectName": "username", "key": "user"}, {"objectName": "password", "key": "pass"}],
                }],
            }),
        );
    }

    /// Creates the SecretSync `name` with `spec` over the defaults (the SPC, the app service account,
    /// refresh every second).
    pub(crate) fn create_sync(&self, name: &str, spec: Value) -> anyhow::Result<Value> {
        let mut full = json!({
            "secretProviderClassName": SPC,
            "serviceAccountRef": {"name": APP_SA},
            "refreshInterval": "1s",
        });
        if let (Some(base), Some(extra)) = (full.as_object_mut(), spec.as_object()) {
            base.extend(extra.clone());
        }
        self.kube.create(
            KubeResource::SECRET_SYNCS,
            &self.namespace,
            json!({
                "apiVersion": "courier.dev/v1alpha1",
                "kind": "SecretSync",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": full,
            }),
        )
    }

    /// A controller replica named `identity`.
    pub(crate) async fn controller(&self, identity: &str) -> anyhow::Result<SecretSyncProcess> {
        SecretSyncBuilder::new(identity, &self.providers_dir, self.kube.kubeconfig_path())
            .start()
            .await
    }

    /// The real `kube` client's view of the SecretSyncs of the namespace.
    pub(crate) async fn secret_syncs_api(&self) -> anyhow::Result<kube::Api<kube::api::DynamicObject>> {
        use kube::config::{Config, KubeConfigOptions, Kubeconfig};
        let config = Config::from_custom_kubeconfig(
            Kubeconfig::read_from(self.kube.kubeconfig_path())?,
            &KubeConfigOptions::default(),
        )
        .await?;
        let client = kube::Client::try_from(config)?;
        let resource = kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("courier.dev", "v1alpha1", "SecretSync"),
            "secretsyncs",
        );
        Ok(kube::Api::namespaced_with(client, &self.namespace, &resource))
    }

    pub(crate) fn secret(&self, name: &str) -> Option<Value> {
        self.kube.get(KubeResource::SECRETS, &self.namespace, name)
    }

    pub(crate) fn sync_object(&self, name: &str) -> Option<Value> {
        self.kube.get(KubeResource::SECRET_SYNCS, &self.namespace, name)
    }

    /// Waits until Secret `name`'s key `key` decodes to `value`.
    pub(crate) async fn wait_secret_value(&self, name: &str, key: &str, value: &str) -> anyhow::Result<Value> {
        let wanted = b64(value.as_bytes());
        self.kube
            .wait_for(WAIT, &format!("secret {name} with {key}"), |kube| {
                kube.get(KubeResource::SECRETS, &self.namespace, name)
                    .filter(|s| s["data"][key].as_str() == Some(wanted.as_str()))
            })
            .await
    }

    /// Waits until SecretSync `name`'s Ready condition has `status` and `reason`; returns the object.
    pub(crate) async fn wait_ready(&self, name: &str, status: &str, reason: &str) -> anyhow::Result<Value> {
        self.kube
            .wait_for(WAIT, &format!("secretsync {name} Ready={status} ({reason})"), |kube| {
                kube.get(KubeResource::SECRET_SYNCS, &self.namespace, name).filter(|o| {
                    let ready = &o["status"]["conditions"][0];
                    ready["status"] == status && ready["reason"] == reason
                })
            })
            .await
    }

    /// Events about SecretSync `name` with `reason`.
    pub(crate) fn events(&self, name: &str, reason: &str) -> Vec<Value> {
        self.kube
            .events_about(&self.namespace, name)
            .into_iter()
            .filter(|e| e["reason"] == reason && e["involvedObject"]["kind"] == "SecretSync")
            .collect()
    }

    /// Asserts no status, Event or log holds `value` (nor its base64).
    pub(crate) fn assert_never_shown(&self, value: &str, logs: &[String]) {
        let encoded = b64(value.as_bytes());
        let mut places: Vec<(String, String)> = self
            .kube
            .list(KubeResource::SECRET_SYNCS, Some(&self.namespace))
            .into_iter()
            .map(|o| ("secretsync status".to_owned(), o["status"].to_string()))
            .collect();
        places.extend(self.kube.events().into_iter().map(|e| ("event".to_owned(), e.to_string())));
        places.extend(logs.iter().map(|l| ("controller log".to_owned(), l.clone())));
        places.push(("provider log".to_owned(), self.provider.logs()));
        for (place, text) in places {
            assert!(!text.contains(value) && !text.contains(&encoded), "{place} shows the value: {text}");
        }
    }
}
