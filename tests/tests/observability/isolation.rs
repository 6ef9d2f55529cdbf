//! Caching never crosses identities: while an allowed identity mounts a secret (concurrently, or just before),
//! identities whose roles cannot read it are refused every time, whatever the static reuse window.

use std::time::Duration;

use courier_proto::v1alpha1::{MountRequest, MountResponse};
use courier_tests::calls::{assert_status, text};
use tonic::{Code, Status};

use crate::support::{Access, Case, Obj, mount_concurrently, provider_builder, random_value};

/// Rounds of concurrent mounts.
const ROUNDS: usize = 4;

async fn allowed_identity_never_shares_with_refused_ones(
    label: &str,
    static_reuse: Option<Duration>,
) -> anyhow::Result<()> {
    let case = Case::shared(label).await?;
    let value = random_value("isolated");
    case.put("app", serde_json::json!({"password": value}))
        .await?;
    let objects = [Obj::new("password", &case.secret_path("app")).key("password")];
    let allowed = case.identity("app", Access::Allowed).await?;
    // Three ways of not being allowed: another service account of the namespace with a role that reads
    // elsewhere, the same service-account name in another namespace, and a stranger asking for the allowed
    // role (which OpenBao refuses at login).
    let other_sa = case.identity("other", Access::Denied).await?;
    let other_ns = case
        .identity_in(&format!("ns2-{}", case.id), "app", Access::Denied)
        .await?;
    let impostor = case.identity("impostor", Access::Denied).await?;
    let refused_request = |n: usize| -> anyhow::Result<MountRequest> {
        match n % 3 {
            0 => other_sa.request(&objects)?.build(),
            1 => other_ns.request(&objects)?.build(),
            _ => impostor.request_as(&allowed.role, &objects)?.build(),
        }
    };

    let mut builder = provider_builder(&["vault"]).await?;
    if let Some(window) = static_reuse {
        builder = builder.static_reuse(window);
    }
    let provider = builder.start().await?;
    let check_allowed = |result: Result<MountResponse, Status>| -> anyhow::Result<()> {
        let response =
            result.map_err(|s| anyhow::anyhow!("the allowed identity was refused: {s:?}"))?;
        assert_eq!(text(&response, "password"), value);
        Ok(())
    };
    let check_refused = |result: Result<MountResponse, Status>| {
        if let Ok(response) = &result {
            // Name the leak plainly: a refused identity received data.
            let leaked = response
                .files
                .iter()
                .any(|f| f.contents == value.as_bytes());
            panic!(
                "a refused identity got a response (secret value leaked: {leaked}): {response:?}"
            );
        }
        assert_status(result, Code::PermissionDenied, &["vault backend"]);
    };

    let (mut allowed_mounts, mut refused_mounts) = (0_u64, 0_u64);
    // Concurrent: allowed and refused mounts released together, the refused ones first in the list.
    for round in 0..ROUNDS {
        let requests = vec![
            refused_request(round)?,
            allowed.request(&objects)?.build()?,
            refused_request(round + 1)?,
            allowed.request(&objects)?.build()?,
            refused_request(round + 2)?,
        ];
        let mut results = mount_concurrently(&provider, "vault", requests)
            .await?
            .into_iter();
        for i in 0..5 {
            let result = results.next().expect("five results");
            if i % 2 == 0 {
                check_refused(result);
                refused_mounts += 1;
            } else {
                check_allowed(result)?;
                allowed_mounts += 1;
            }
        }
    }
    // Sequential, each right after the other: the allowed identity's fresh login and reads are cached now.
    let mut client = provider.client("vault").await?;
    for n in 0..6 {
        check_allowed(
            courier_tests::calls::mount(&mut client, allowed.request(&objects)?.build()?).await,
        )?;
        allowed_mounts += 1;
        check_refused(courier_tests::calls::mount(&mut client, refused_request(n)?).await);
        refused_mounts += 1;
    }

    let metrics = provider.metrics().await?;
    assert_eq!(
        metrics.count("courier_mounts_total", &[("result", "ok")]),
        allowed_mounts
    );
    assert_eq!(
        metrics.count("courier_mounts_total", &[("result", "denied")]),
        refused_mounts
    );
    Ok(())
}

#[tokio::test]
async fn refused_identities_stay_refused_with_the_default_reuse_window() -> anyhow::Result<()> {
    allowed_identity_never_shares_with_refused_ones("iso-default", None).await
}

#[tokio::test]
async fn refused_identities_stay_refused_without_static_reuse() -> anyhow::Result<()> {
    allowed_identity_never_shares_with_refused_ones("iso-zero", Some(Duration::ZERO)).await
}

#[tokio::test]
async fn refused_identities_stay_refused_with_a_long_reuse_window() -> anyhow::Result<()> {
    allowed_identity_never_shares_with_refused_ones("iso-long", Some(Duration::from_secs(30))).await
}
