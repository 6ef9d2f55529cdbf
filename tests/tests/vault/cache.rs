//! What the provider reuses between mounts: static reads for a short window, only within one identity, and
//! never for a token whose claims name another identity.

use std::time::Duration;

use courier_tests::calls::{assert_status, mount, object_version, text};
use serde_json::json;
use tonic::Code;

use crate::support::{obj, plain, provider_builder};

/// A reuse window no test outlives: a re-mount right after an update falls inside it however busy the machine.
const LONG_WINDOW: Duration = Duration::from_secs(3600);
/// A window short enough to see run out.
const SHORT_WINDOW: Duration = Duration::from_secs(2);
/// How long past the short window a fresh read may take to show up: a hang guard for the polling loop.
const SETTLE: Duration = Duration::from_secs(10);
/// How often the expiry is polled for.
const POLL: Duration = Duration::from_millis(200);

#[tokio::test]
async fn static_reads_are_reused_only_within_the_window() -> anyhow::Result<()> {
    let case = plain().await?.case("reuse-window").await?;
    case.put("app", json!({"password": "old"})).await?;
    let request = case
        .request(&[obj("password", &case.secret_path("app")).key("password")])?
        .build()?;

    // Inside the window: an update is not seen, and the version stays. With an hour-long window this holds
    // without any assumption about how fast the machine is.
    let long = provider_builder(&["vault"])
        .await?
        .static_reuse(LONG_WINDOW)
        .start()
        .await?;
    let mut client = long.client("vault").await?;
    let first = mount(&mut client, request.clone()).await?;
    case.put("app", json!({"password": "new"})).await?;
    let within = mount(&mut client, request.clone()).await?;
    assert_eq!(
        text(&within, "password"),
        "old",
        "a read inside the window is reused"
    );
    assert_eq!(
        object_version(&within, "password"),
        object_version(&first, "password")
    );

    // Past the window: a short-window provider reads the update once its window has run out. Its first mount
    // fills its reuse entry with the current value; a later update shows up only through a fresh read.
    let short = provider_builder(&["vault"])
        .await?
        .static_reuse(SHORT_WINDOW)
        .start()
        .await?;
    let mut client = short.client("vault").await?;
    let before = mount(&mut client, request.clone()).await?;
    assert_eq!(text(&before, "password"), "new");
    case.put("app", json!({"password": "newer"})).await?;
    let deadline = tokio::time::Instant::now() + SHORT_WINDOW + SETTLE;
    let mut reused = 0_u32;
    let fresh = loop {
        let response = mount(&mut client, request.clone()).await?;
        if text(&response, "password") == "newer" {
            break response;
        }
        assert_eq!(
            object_version(&response, "password"),
            object_version(&before, "password"),
            "a reused read keeps its version"
        );
        reused += 1;
        assert!(
            tokio::time::Instant::now() < deadline,
            "the update never showed up after the reuse window ({reused} mounts reused)"
        );
        tokio::time::sleep(POLL).await;
    };
    assert_ne!(
        object_version(&fresh, "password"),
        object_version(&before, "password")
    );
    assert_ne!(
        object_version(&fresh, "password"),
        object_version(&first, "password")
    );
    Ok(())
}

#[tokio::test]
async fn reads_are_not_shared_across_identities() -> anyhow::Result<()> {
    let case = plain().await?.case("reuse-identity").await?;
    let (other_pod, other_role) = case.second_identity("other").await?;
    case.put("app", json!({"password": "old"})).await?;
    // The default window (seconds) easily covers this test's mounts.
    let provider = provider_builder(&["vault"]).await?.start().await?;
    let mut client = provider.client("vault").await?;
    let objects = [obj("password", &case.secret_path("app")).key("password")];
    let mine = case.request(&objects)?.build()?;
    let theirs = case
        .request_for(&other_pod, &other_role, &objects)?
        .build()?;

    assert_eq!(
        text(&mount(&mut client, mine.clone()).await?, "password"),
        "old"
    );
    case.put("app", json!({"password": "new"})).await?;
    let other = mount(&mut client, theirs).await?;

    assert_eq!(
        text(&other, "password"),
        "new",
        "another identity must read OpenBao itself, not my cached read"
    );
    Ok(())
}

/// The driver is trusted to say which pod is mounting (the socket is root-only), and the cached login is
/// keyed by that identity. The token's own claims must agree with it: a token for another service
/// account, or an expired one, never rides on the login cached for this identity.
#[tokio::test]
async fn cached_login_is_not_reused_for_a_token_of_another_identity_or_an_expired_one() -> anyhow::Result<()> {
    let case = plain().await?.case("foreign-token").await?;
    case.put("app", json!({"password": "only-for-this-identity"})).await?;
    let provider = provider_builder(&["vault"]).await?.start().await?;
    let mut client = provider.client("vault").await?;
    let objects = [obj("password", &case.secret_path("app")).key("password")];
    mount(&mut client, case.request(&objects)?.build()?).await?;

    // This pod's attributes, with a token minted for another service account in the same namespace.
    let stranger = courier_tests::PodFixture::new(case.pod.namespace(), "stranger");
    let foreign = case
        .request(&objects)?
        .token("vault", case.backend.issuer.token(&stranger, "vault")?)
        .build()?;
    assert_status(mount(&mut client, foreign).await, Code::PermissionDenied, &["belongs to", "stranger"]);

    // This pod's own service account, but a token that has expired.
    let expired_token = case.backend.issuer.token_with(
        &case.pod,
        &courier_tests::TokenOptions::new(["vault"])
            .issued_ago(Duration::from_secs(7200))
            .lifetime(Duration::from_secs(3600)),
    )?;
    let expired = case.request(&objects)?.token("vault", expired_token).build()?;
    assert_status(mount(&mut client, expired).await, Code::PermissionDenied, &["expired"]);
    Ok(())
}
