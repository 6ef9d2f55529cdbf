//! Forged tokens right after a genuine mount of the same identity: the login cached for the identity is never
//! handed to them. With the cluster's issuer keys (the fake API server's JWKS) the provider refuses them itself;
//! without (no API server, or verification off) every token gets its own login, which OpenBao refuses.

use std::time::{Duration, Instant};

use courier_proto::v1alpha1::MountResponse;
use courier_tests::calls::{assert_status, mount, text};
use courier_tests::{PodFixture, ProviderBuilder, TokenIssuer, forged_tokens};
use serde_json::json;
use tonic::{Code, Status};

use crate::support::{Case, obj, plain, provider_builder};

/// How the provider is started for one pass.
struct Setup {
    name: &'static str,
    /// Whether the provider can read the issuer's keys.
    verified: bool,
    static_reuse: Option<Duration>,
    extra: &'static [&'static str],
}

const SETUPS: &[Setup] = &[
    Setup { name: "verified, default reuse", verified: true, static_reuse: None, extra: &[] },
    Setup { name: "verified, --static-reuse 0s", verified: true, static_reuse: Some(Duration::ZERO), extra: &[] },
    Setup {
        name: "verification required, default reuse",
        verified: true,
        static_reuse: None,
        extra: &["--token-verification", "required"],
    },
    Setup { name: "no API server, default reuse", verified: false, static_reuse: None, extra: &[] },
    Setup {
        name: "no API server, --static-reuse 0s",
        verified: false,
        static_reuse: Some(Duration::ZERO),
        extra: &[],
    },
    Setup {
        name: "verification off, default reuse",
        verified: true,
        static_reuse: None,
        extra: &["--token-verification", "off"],
    },
];

async fn start(setup: &Setup, issuer: &TokenIssuer) -> anyhow::Result<courier_tests::ProviderProcess> {
    let mut builder: ProviderBuilder = provider_builder(&["vault"]).await?;
    if setup.verified {
        builder = builder.trust_issuer(issuer);
    }
    if let Some(window) = setup.static_reuse {
        builder = builder.static_reuse(window);
    }
    for arg in setup.extra {
        builder = builder.arg(*arg);
    }
    builder.start().await
}

/// Asserts that a forged mount was refused without a trace of the secret or the token in the message.
#[track_caller]
fn assert_refused(result: Result<MountResponse, Status>, secret: &str, jwt: &str, verifying: bool, what: &str) {
    let status = match result {
        Ok(response) => panic!("{what}: a forged token got a response: {response:?}"),
        Err(status) => status,
    };
    assert!(!status.message().contains(secret), "{what}: the secret is in {:?}", status.message());
    assert!(!status.message().contains(jwt), "{what}: the token is in {:?}", status.message());
    if verifying {
        assert_eq!(status.code(), Code::PermissionDenied, "{what}: {}", status.message());
    }
}

#[tokio::test]
async fn forged_tokens_after_a_genuine_mount_are_refused_in_every_cache_configuration() -> anyhow::Result<()> {
    let backend = plain().await?;
    let case: Case = backend.case("forged").await?;
    let secret = format!("forged-{}", case.id);
    case.put("app", json!({"password": secret})).await?;
    let objects = [obj("password", &case.secret_path("app")).key("password")];
    let forged = forged_tokens(&backend.issuer, &case.pod, "vault")?;
    // A genuine token of the same service account, bound to another pod.
    let sibling = PodFixture::new(case.pod.namespace(), case.pod.service_account())
        .with_service_account_uid(case.pod.service_account_uid());
    let sibling_token = backend.issuer.token(&sibling, "vault")?;

    for setup in SETUPS {
        let verifying = setup.verified && !setup.extra.contains(&"off");
        let provider = start(setup, &backend.issuer).await?;
        let mut client = provider.client("vault").await?;
        let genuine = mount(&mut client, case.request(&objects)?.build()?).await;
        let genuine = genuine.map_err(|s| anyhow::anyhow!("{}: genuine mount failed: {}", setup.name, s.message()))?;
        assert_eq!(text(&genuine, "password"), secret, "{}", setup.name);

        for (what, token) in &forged {
            let request = case.request(&objects)?.token("vault", token.clone()).build()?;
            let what = format!("{}: {what}", setup.name);
            assert_refused(mount(&mut client, request).await, &secret, token.jwt(), verifying, &what);
        }
        if verifying {
            let request = case.request(&objects)?.token("vault", sibling_token.clone()).build()?;
            assert_status(mount(&mut client, request).await, Code::PermissionDenied, &["another pod"]);
        }
        // The identity's own mounts still work.
        let again = mount(&mut client, case.request(&objects)?.build()?).await;
        let again = again.map_err(|s| anyhow::anyhow!("{}: genuine re-mount failed: {}", setup.name, s.message()))?;
        assert_eq!(text(&again, "password"), secret, "{}", setup.name);
        if verifying {
            let api = provider.kube_api().expect("the provider has an API server");
            assert_eq!(api.jwks_reads(), 1, "{}: the keys are read once and cached", setup.name);
        }
    }
    Ok(())
}

#[tokio::test]
async fn refusals_name_the_reason_never_the_token() -> anyhow::Result<()> {
    let backend = plain().await?;
    let case = backend.case("forged-reasons").await?;
    case.put("app", json!({"password": "reasons"})).await?;
    let objects = [obj("password", &case.secret_path("app")).key("password")];
    let provider = provider_builder(&["vault"]).await?.trust_issuer(&backend.issuer).start().await?;
    let mut client = provider.client("vault").await?;
    let reasons: &[&[&str]] = &[
        &["algorithm"],
        &["key the cluster does not publish"],
        &["signature does not verify"],
        &["not valid yet"],
        &["expired"],
        &["audiences", "another-audience"],
        &["belongs to", "stranger"],
    ];
    for ((_, token), words) in forged_tokens(&backend.issuer, &case.pod, "vault")?.iter().zip(reasons) {
        let request = case.request(&objects)?.token("vault", token.clone()).build()?;
        let status = assert_status(mount(&mut client, request).await, Code::PermissionDenied, words);
        assert!(!status.message().contains(token.jwt()));
    }
    Ok(())
}

#[tokio::test]
async fn required_verification_refuses_while_no_keys_can_be_read() -> anyhow::Result<()> {
    let backend = plain().await?;
    let case = backend.case("forged-required").await?;
    case.put("app", json!({"password": "required"})).await?;
    let objects = [obj("password", &case.secret_path("app")).key("password")];
    // No API server at all.
    let provider = provider_builder(&["vault"]).await?.token_verification("required").start().await?;
    let mut client = provider.client("vault").await?;
    assert_status(
        mount(&mut client, case.request(&objects)?.build()?).await,
        Code::Unavailable,
        &["issuer keys", "Kubernetes API"],
    );
    Ok(())
}

#[tokio::test]
async fn a_flood_of_unknown_key_ids_reads_the_keys_at_most_once_per_interval() -> anyhow::Result<()> {
    /// The provider's shortest interval between two key fetches.
    const FETCH_INTERVAL: Duration = Duration::from_secs(10);
    let backend = plain().await?;
    let case = backend.case("forged-flood").await?;
    case.put("app", json!({"password": "flood"})).await?;
    let objects = [obj("password", &case.secret_path("app")).key("password")];
    let provider = provider_builder(&["vault"]).await?.trust_issuer(&backend.issuer).start().await?;
    let api = provider.kube_api().expect("the provider has an API server");
    let mut client = provider.client("vault").await?;
    mount(&mut client, case.request(&objects)?.build()?).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    let started = Instant::now();

    let strangers: Vec<TokenIssuer> = (0..4).map(|_| TokenIssuer::new()).collect::<anyhow::Result<_>>()?;
    for round in 0..10 {
        let stranger = &strangers[round % strangers.len()];
        let request = case.request(&objects)?.token("vault", stranger.token(&case.pod, "vault")?).build()?;
        assert_status(mount(&mut client, request).await, Code::PermissionDenied, &["does not publish"]);
    }

    // One fetch at start-up, then at most one per interval that began during the flood.
    let intervals = usize::try_from(started.elapsed().as_secs() / FETCH_INTERVAL.as_secs()).unwrap_or(usize::MAX);
    let reads = api.jwks_reads();
    assert!(reads <= 2 + intervals, "{reads} key reads in {:?}:\n{}", started.elapsed(), api.request_log());
    Ok(())
}

#[tokio::test]
async fn by_default_the_first_mounts_read_the_keys_once_and_forgeries_among_them_are_refused() -> anyhow::Result<()> {
    let backend = plain().await?;
    let case = backend.case("forged-lazy").await?;
    let secret = format!("lazy-{}", case.id);
    case.put("app", json!({"password": secret})).await?;
    let objects = [obj("password", &case.secret_path("app")).key("password")];
    let provider = provider_builder(&["vault"])
        .await?
        .trust_issuer(&backend.issuer)
        .lazy_issuer_keys()
        .metrics_addr("127.0.0.1:0")
        .start()
        .await?;
    let api = provider.kube_api().expect("the provider has an API server");
    // Started and answering Version: nothing read from the API yet.
    assert_eq!(api.jwks_reads(), 0, "keys read before any mount:\n{}", api.request_log());

    // A cold burst of one identity's mounts with every forgery mixed in: each waits for the one key load.
    let client = provider.client("vault").await?;
    let mut burst = tokio::task::JoinSet::new();
    let forged = forged_tokens(&backend.issuer, &case.pod, "vault")?;
    let genuine = (0..8).map(|_| ("genuine", None));
    for (what, token) in genuine.chain(forged.into_iter().map(|(what, token)| (what, Some(token)))) {
        let mut request = case.request(&objects)?;
        let jwt = token.as_ref().map(|t| t.jwt().to_owned());
        if let Some(token) = token {
            request = request.token("vault", token);
        }
        let request = request.build()?;
        let mut client = client.clone();
        burst.spawn(async move { (what, jwt, mount(&mut client, request).await) });
    }
    let mut served = 0;
    while let Some(joined) = burst.join_next().await {
        let (what, jwt, result) = joined?;
        match jwt {
            None => {
                let response = result.map_err(|s| anyhow::anyhow!("a genuine mount failed: {}", s.message()))?;
                assert_eq!(text(&response, "password"), secret);
                served += 1;
            }
            Some(jwt) => assert_refused(result, &secret, &jwt, true, what),
        }
    }
    assert_eq!(served, 8);
    assert_eq!(api.jwks_reads(), 1, "the keys are read once for the whole burst:\n{}", api.request_log());
    let logins = provider.metrics().await?.count("courier_backend_requests_total", &[("operation", "login")]);
    assert_eq!(logins, 1, "one login for the identity, none for a forgery");
    Ok(())
}
