//! Who gets which dynamic secret: each pod its own unless `shareLeases`, never across identities, and never
//! to an identity whose role may not read the path, however recently someone else got one.

use courier_tests::PodFixture;
use courier_tests::calls::{assert_status, mount};
use tonic::Code;

use crate::support::{Provider, env, mount_creds, provider_builder};

#[tokio::test]
async fn pods_of_one_service_account_get_their_own_credentials_unless_shared() -> anyhow::Result<()>
{
    let case = env().await?.case("db-pods", "5m", "10m").await?;
    let provider = Provider::start(provider_builder().await?).await?;
    let mut client = provider.client().await?;
    let objects = case.creds_objects();
    let (pod1, pod2) = (case.pod.clone(), case.sibling_pod());

    let own1 = mount_creds(&mut client, &case.request_for(&pod1, &case.role, &objects)?).await?;
    let own2 = mount_creds(&mut client, &case.request_for(&pod2, &case.role, &objects)?).await?;
    assert_ne!(
        own1.username, own2.username,
        "two pods of one service account share credentials without shareLeases"
    );
    assert_ne!(own1.lease_id, own2.lease_id);
    for creds in [&own1, &own2] {
        case.assert_logs_in(creds, "a pod's own credentials do not log in")
            .await?;
    }
    assert_eq!(
        mount_creds(&mut client, &case.request_for(&pod1, &case.role, &objects)?).await?,
        own1,
        "pod 1 lost its own credentials after pod 2 mounted"
    );
    assert_eq!(case.db_leases().await?.len(), 2);

    let shared = |pod: &PodFixture| {
        case.request_for(pod, &case.role, &objects)
            .map(|request| request.parameter("shareLeases", "true"))
    };
    let (pod3, pod4) = (case.sibling_pod(), case.sibling_pod());
    let shared3 = mount_creds(&mut client, &shared(&pod3)?).await?;
    let shared4 = mount_creds(&mut client, &shared(&pod4)?).await?;
    assert_eq!(
        shared4, shared3,
        "pods of one service account with shareLeases got different credentials"
    );
    assert_ne!(
        shared3.username, own1.username,
        "a shared lease must not be a pod's own lease"
    );
    case.assert_logs_in(&shared3, "the shared credentials do not log in")
        .await?;
    assert_eq!(
        mount_creds(&mut client, &shared(&pod1)?).await?,
        shared3,
        "pod 1 with shareLeases gets the shared credentials"
    );
    assert_eq!(case.db_leases().await?.len(), 3);
    Ok(())
}

#[tokio::test]
async fn different_identities_never_share_credentials_and_each_logs_in_only_with_its_own_role()
-> anyhow::Result<()> {
    let case = env().await?.case("db-idents", "5m", "10m").await?;
    let other_role = format!("{}-other", case.id);
    case.add_role(&other_role, "other", &[&case.id]).await?;
    let other_pod = PodFixture::new(case.pod.namespace(), "other");
    let provider = Provider::start(provider_builder().await?).await?;
    let mut client = provider.client().await?;
    let objects = case.creds_objects();

    for share in ["false", "true"] {
        let mine = case.request(&objects)?.parameter("shareLeases", share);
        let theirs = case
            .request_for(&other_pod, &other_role, &objects)?
            .parameter("shareLeases", share);
        let a = mount_creds(&mut client, &mine).await?;
        let b = mount_creds(&mut client, &theirs).await?;
        assert_ne!(
            a.username, b.username,
            "two identities share credentials (shareLeases {share})"
        );
        assert_ne!(a.lease_id, b.lease_id);
        case.assert_logs_in(&a, "the first identity's credentials do not log in")
            .await?;
        case.assert_logs_in(&b, "the second identity's credentials do not log in")
            .await?;
    }

    // Each role admits only its own service account.
    let crossed = case
        .request_for(&other_pod, &case.role, &objects)?
        .build()?;
    assert_status(
        mount(&mut client, crossed).await,
        Code::PermissionDenied,
        &["login refused", &case.role],
    );
    let crossed = case
        .request_for(&case.pod, &other_role, &objects)?
        .build()?;
    assert_status(
        mount(&mut client, crossed).await,
        Code::PermissionDenied,
        &["login refused", &other_role],
    );
    Ok(())
}

/// Identity B mounts the same credentials path right after identity A got a lease for it, and also at the
/// same moment as A: B's role may not read the path, so B is refused, and never handed A's credentials.
#[tokio::test]
async fn an_identity_without_access_is_refused_even_right_after_another_got_a_lease()
-> anyhow::Result<()> {
    let case = env().await?.case("db-isolation", "5m", "10m").await?;
    let outsider_role = format!("{}-outsider", case.id);
    // Only the built-in default policy: it can renew and look up its own leases, but read no credentials.
    case.add_role(&outsider_role, "outsider", &[]).await?;
    let outsider = PodFixture::new(case.pod.namespace(), "outsider");
    let provider = Provider::start(provider_builder().await?).await?;
    let mut client = provider.client().await?;
    let objects = case.creds_objects();
    let theirs = case.request_for(&outsider, &outsider_role, &objects)?;

    let a = mount_creds(&mut client, &case.request(&objects)?).await?;
    let refused = assert_status(
        mount(&mut client, theirs.build()?).await,
        Code::PermissionDenied,
        &[&case.creds_path(), "403", &outsider_role],
    );
    assert!(
        !refused.message().contains(&a.username) && !refused.message().contains(&a.password),
        "the refusal leaks A's credentials: {}",
        refused.message()
    );

    // At the same moment: a fresh pod of A (so A issues a new lease) and B again.
    let mut client_b = provider.client().await?;
    let a2_request = case.request_for(&case.sibling_pod(), &case.role, &objects)?;
    let (a2, b) = tokio::join!(
        mount_creds(&mut client, &a2_request),
        mount(&mut client_b, theirs.build()?)
    );
    let a2 = a2?;
    assert_status(b, Code::PermissionDenied, &[&case.creds_path(), "403"]);
    assert_ne!(a2.username, a.username);

    let mut expected = vec![a.lease_id.clone(), a2.lease_id.clone()];
    expected.sort();
    assert_eq!(
        case.db_leases().await?,
        expected,
        "the refused identity must not have issued a lease"
    );
    assert_eq!(mount_creds(&mut client, &case.request(&objects)?).await?, a);
    Ok(())
}
