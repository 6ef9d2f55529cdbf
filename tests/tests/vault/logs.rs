//! The canary: at the most verbose log level, no secret value and no token reaches the provider's logs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use courier_tests::calls::{mount, text};
use rand::Rng as _;
use serde_json::json;

use crate::support::{obj, plain, provider_builder};

#[tokio::test]
async fn trace_logs_carry_no_secret_values_or_tokens() -> anyhow::Result<()> {
    let case = plain().await?.case("canary").await?;
    let canary = format!("canary-{:016x}", rand::rng().random::<u64>());
    case.put("app", json!({"password": canary})).await?;
    let mut provider = provider_builder(&["vault"])
        .await?
        .log_level("trace")
        // Every crate, HTTP and TLS libraries included, not only Courier's own targets.
        .arg("--log-filter=trace")
        .log_format("json")
        .start()
        .await?;
    let mut client = provider.client("vault").await?;
    let token = case.token("vault")?;
    let good = case
        .request(&[
            obj("password", &case.secret_path("app")).key("password"),
            obj("whole.json", &case.secret_path("app")),
        ])?
        .token("vault", token.clone())
        .build()?;
    // A failing mount too: error paths are where values tend to slip into messages.
    let failing = case
        .request(&[
            obj("password", &case.secret_path("app")).key("password"),
            obj("missing", &case.secret_path("missing")).key("password"),
        ])?
        .token("vault", token.clone())
        .build()?;

    let response = mount(&mut client, good).await?;
    assert_eq!(text(&response, "password"), canary);
    let _ = mount(&mut client, failing).await;
    drop(client);
    assert!(provider.terminate().await?.success());

    let logs = provider.logs();
    assert!(
        logs.contains(case.pod.name()),
        "the mount's log lines should name the pod (and prove logging was on):\n{logs}"
    );
    let signature = token.jwt().rsplit('.').next().unwrap_or_default();
    for (what, needle) in [
        ("secret value", canary.clone()),
        ("secret value in base64", STANDARD.encode(&canary)),
        ("the pod's token", token.jwt().to_owned()),
        ("the token's signature", signature.to_owned()),
    ] {
        assert!(!needle.is_empty());
        assert!(
            !logs.contains(&needle),
            "{what} appears in the provider's logs:\n{logs}"
        );
    }
    Ok(())
}
