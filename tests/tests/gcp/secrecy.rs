//! Secrecy at trace level: no secret value, pod token or Google access token in the provider's logs.

use courier_tests::GcpApi;
use courier_tests::calls::{mount, text};

use crate::support::{POOL, case, sec};

#[tokio::test]
async fn trace_logs_hold_no_secret_or_token() -> anyhow::Result<()> {
    let case = case("secrecy").await?;
    let value = "gcp-canary-value-8c41d2";
    case.secret("s", format!(r#"{{"password":"{value}"}}"#)).await?;
    let provider = case.provider_builder(&["gcp"]).log_level("trace").env("RUST_LOG", "trace").start().await?;
    let mut client = provider.client("gcp").await?;
    let token = case.issuer.token(&case.pod, POOL)?;
    let request = courier_tests::MountRequestBuilder::new(&case.pod)
        .parameter("secrets", crate::support::secrets_yaml(&[
            sec(&case.version("s", "1"), "whole"),
            sec(&case.version("s", "1"), "password").field("extractJSONKey", "password"),
        ]))
        .token(POOL, token.clone());

    let response = mount(&mut client, request.build()?).await?;
    assert_eq!(text(&response, "password"), value);
    // A failing mount logs its error too.
    let _ = mount(&mut client, case.request(&[sec(&case.version("s", "7"), "f").field("extractJSONKey", "password")])?.build()?).await;

    let logs = provider.logs();
    assert!(logs.contains("gcp"), "trace logs were captured");
    assert!(!logs.contains(value), "the secret value is in the logs");
    assert!(!logs.contains(token.jwt()), "the pod's token is in the logs");
    let issued = case.standin.issued_tokens();
    assert_eq!(issued.len(), 2, "a federated and an impersonated token: {:?}", case.calls(GcpApi::Sts));
    for token in issued {
        assert!(!logs.contains(&token), "an access token is in the logs");
    }
    Ok(())
}
