//! Forged tokens right after a genuine mount that leased database credentials: neither the pod's own lease nor
//! the identity's shared lease (`shareLeases`) is handed to them, and no login is made for them.

use courier_tests::calls::mount;
use courier_tests::{PodFixture, forged_tokens};
use tonic::Code;

use crate::support::{Provider, env, mount_creds, provider_builder};

#[tokio::test]
async fn forged_tokens_never_get_a_leased_secret_with_or_without_shared_leases() -> anyhow::Result<()> {
    let case = env().await?.case("db-forged", "5m", "10m").await?;
    let forged = forged_tokens(&case.env.issuer, &case.pod, "vault")?;
    let sibling = PodFixture::new(case.pod.namespace(), case.pod.service_account())
        .with_service_account_uid(case.pod.service_account_uid());
    let sibling_token = case.env.issuer.token(&sibling, "vault")?;
    let provider = Provider::start(provider_builder().await?).await?;
    let mut client = provider.client().await?;
    let objects = case.creds_objects();

    for share in ["false", "true"] {
        let request = || case.request(&objects).map(|r| r.parameter("shareLeases", share));
        let genuine = mount_creds(&mut client, &request()?).await?;
        let leases = case.db_leases().await?.len();
        let mut tokens: Vec<(&str, _)> = forged.iter().map(|(what, token)| (*what, token.clone())).collect();
        tokens.push(("a token of the same service account bound to another pod", sibling_token.clone()));
        for (what, token) in tokens {
            let forged = request()?.token("vault", token.clone()).build()?;
            match mount(&mut client, forged).await {
                Ok(response) => panic!("shareLeases {share}, {what}: a forged token got {response:?}"),
                Err(status) => {
                    assert_eq!(status.code(), Code::PermissionDenied, "shareLeases {share}, {what}: {}", status.message());
                    for secret in [&genuine.username, &genuine.password, &genuine.lease_id] {
                        assert!(!status.message().contains(secret.as_str()), "{what}: {}", status.message());
                    }
                    assert!(!status.message().contains(token.jwt()));
                }
            }
        }
        assert_eq!(case.db_leases().await?.len(), leases, "shareLeases {share}: a forged token got a lease issued");
        assert_eq!(
            mount_creds(&mut client, &request()?).await?,
            genuine,
            "shareLeases {share}: the pod keeps its lease after the forged mounts"
        );
    }
    Ok(())
}
