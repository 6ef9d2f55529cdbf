//! The parts of the fake the SecretSync controller relies on, through the real `kube` client: the
//! TokenRequest API, Leases, and a custom resource with a status subresource.

use std::sync::Arc;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use super::*;

async fn client(api: &FakeKubeApi) -> anyhow::Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(api.kubeconfig_path())?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(kube::Client::try_from(config)?)
}

fn code(error: &kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        _ => 0,
    }
}

fn token_request(audiences: &[&str], seconds: Option<i64>) -> TokenRequest {
    TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(audiences.iter().map(|a| (*a).to_owned()).collect()),
            expiration_seconds: seconds,
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    }
}

#[tokio::test]
async fn token_requests_are_signed_with_the_published_key_and_bound_to_no_pod() -> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    let client = client(&api).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client, "team-a");
    let pp = PostParams::default();
    api.put_service_account("team-a", "app", std::iter::empty::<(String, String)>());
    // Not served until a signer is set, as on a server without a service-account issuer.
    let refused = accounts
        .create_subresource::<_, TokenRequest>("token", "app", &pp, &token_request(&["vault"], Some(600)))
        .await;
    assert_eq!(refused.as_ref().map_err(code).err(), Some(404));

    let issuer = Arc::new(crate::TokenIssuer::new()?);
    api.serve_token_requests(Arc::clone(&issuer));
    let answer: TokenRequest = accounts
        .create_subresource("token", "app", &pp, &token_request(&["vault"], Some(600)))
        .await?;
    let token = answer.status.and_then(|s| s.token).unwrap_or_default();
    let claims = issuer.verifier().verify(&token).map_err(|e| anyhow!(e))?;
    assert_eq!(claims.sub, "system:serviceaccount:team-a:app");
    assert_eq!(claims.aud, ["vault"]);
    assert_eq!(claims.kubernetes_io.namespace, "team-a");
    assert!(claims.kubernetes_io.pod.name.is_empty(), "bound to no pod");
    assert!(claims.exp.saturating_sub(claims.iat) == 600);
    let (status, jwks) = {
        let response = reqwest::Client::builder()
            .no_proxy()
            .build()?
            .get(format!("{}{JWKS_PATH}", api.url()))
            .bearer_auth(api.token())
            .send()
            .await?;
        (response.status().as_u16(), response.json::<Value>().await?)
    };
    assert_eq!(status, 200);
    assert_eq!(jwks["keys"][0]["kid"], json!(issuer.key_id()));

    for (what, account, request, want) in [
        ("a missing service account", "nobody", token_request(&["vault"], Some(600)), 404),
        ("under ten minutes", "app", token_request(&["vault"], Some(60)), 422),
    ] {
        let result = accounts.create_subresource::<_, TokenRequest>("token", account, &pp, &request).await;
        assert_eq!(result.as_ref().map_err(code).err(), Some(want), "{what}");
    }
    let mut bound = token_request(&["vault"], Some(600));
    if let Some(spec) = bound.spec.as_mut() {
        spec.bound_object_ref = Some(k8s_openapi::api::authentication::v1::BoundObjectReference {
            kind: Some("Pod".to_owned()),
            name: Some("p".to_owned()),
            ..Default::default()
        });
    }
    let result = accounts.create_subresource::<_, TokenRequest>("token", "app", &pp, &bound).await;
    assert_eq!(result.as_ref().map_err(code).err(), Some(422));
    Ok(())
}

#[tokio::test]
async fn the_status_subresource_and_the_main_resource_write_their_own_halves() -> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(COURIER_GROUP, "v1alpha1", "SecretSync"),
        "secretsyncs",
    );
    let syncs: Api<DynamicObject> = Api::namespaced_with(client(&api).await?, "team-a", &resource);
    let pp = PostParams::default();
    let mut object = DynamicObject::new("db", &resource).within("team-a");
    object.data = json!({"spec": {"refreshInterval": "1h"}, "status": {"forged": true}});
    let created = syncs.create(&pp, &object).await?;
    assert!(created.data.get("status").is_none(), "create drops status");
    assert_eq!(created.metadata.generation, Some(1));

    let patched = syncs
        .patch_status("db", &PatchParams::default(), &Patch::Merge(json!({"status": {"ready": true}, "spec": {"refreshInterval": "1s"}})))
        .await?;
    assert_eq!(patched.data["status"], json!({"ready": true}));
    assert_eq!(patched.data["spec"]["refreshInterval"], "1h", "a status write leaves the spec");
    assert_eq!(patched.metadata.generation, Some(1));

    let mut main = patched.clone();
    main.data["status"] = json!({"ready": false});
    main.data["spec"]["refreshInterval"] = json!("2h");
    let replaced = syncs.replace("db", &pp, &main).await?;
    assert_eq!(replaced.data["status"], json!({"ready": true}), "a main write leaves the status");
    assert_eq!(replaced.metadata.generation, Some(2));
    // A stale resourceVersion is still a conflict on the status subresource.
    let stale = syncs.replace_status("db", &pp, &patched).await;
    assert_eq!(stale.as_ref().map_err(code).err(), Some(409));
    Ok(())
}

#[tokio::test]
async fn leases_are_taken_with_their_resource_version() -> anyhow::Result<()> {
    let api = FakeKubeApi::start()?;
    let leases: Api<Lease> = Api::namespaced(client(&api).await?, "courier-system");
    let pp = PostParams::default();
    let lease = Lease {
        metadata: kube::api::ObjectMeta { name: Some("leader".to_owned()), ..Default::default() },
        spec: Some(LeaseSpec { holder_identity: Some("a".to_owned()), ..Default::default() }),
    };
    let first = leases.create(&pp, &lease).await?;
    assert_eq!(leases.create(&pp, &lease).await.as_ref().map_err(code).err(), Some(409));
    let mut by_b = first.clone();
    by_b.spec = Some(LeaseSpec { holder_identity: Some("b".to_owned()), ..Default::default() });
    leases.replace("leader", &pp, &by_b).await?;
    let mut by_c = first;
    by_c.spec = Some(LeaseSpec { holder_identity: Some("c".to_owned()), ..Default::default() });
    assert_eq!(leases.replace("leader", &pp, &by_c).await.as_ref().map_err(code).err(), Some(409), "b won");
    let stored = api.get(KubeResource::LEASES, "courier-system", "leader").unwrap_or_default();
    assert_eq!(stored["spec"]["holderIdentity"], "b");
    Ok(())
}
