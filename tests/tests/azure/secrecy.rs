//! Secrecy at trace level: no secret value, pod token or Key Vault access token in the provider's logs.

use courier_tests::calls::{mount, text};
use courier_tests::{AZURE_TOKEN_AUDIENCE, CertFormat, TestCertificate};

use crate::support::{VAULT, case, obj};

#[tokio::test]
async fn trace_logs_hold_no_secret_or_token() -> anyhow::Result<()> {
    let case = case("secrecy").await?;
    let value = "azure-canary-value-6d02f1";
    case.secret("db", &format!(r#"{{"password":"{value}"}}"#));
    let cert = TestCertificate::generate("secrecy.example")?;
    case.standin
        .import_certificate(VAULT, "tls", &cert, CertFormat::Pfx);
    let provider = case
        .provider_builder(&["azure"])
        .log_level("trace")
        .env("RUST_LOG", "trace")
        .start()
        .await?;
    let mut client = provider.client("azure").await?;
    let token = case.issuer.token(&case.pod, AZURE_TOKEN_AUDIENCE)?;
    let request = case
        .request(&[
            obj("db", "secret"),
            obj("db", "secret")
                .field("objectAlias", "split")
                .field("expandKeys", "true"),
            obj("tls", "secret"),
        ])?
        .token(AZURE_TOKEN_AUDIENCE, token.clone());

    let response = mount(&mut client, request.build()?).await?;
    assert_eq!(text(&response, "split/password"), value);
    // A failing mount logs its error too: a value that is not base64.
    let _ = mount(
        &mut client,
        case.request(&[obj("db", "secret").field("objectEncoding", "base64")])?
            .build()?,
    )
    .await;

    let logs = provider.logs();
    assert!(logs.contains("azure"), "trace logs were captured");
    assert!(!logs.contains(value), "the secret value is in the logs");
    assert!(
        !logs.contains(token.jwt()),
        "the pod's token is in the logs"
    );
    let key_body: String = cert
        .private_key_pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .take(2)
        .collect();
    assert!(
        !logs.contains(&key_body),
        "the certificate's private key is in the logs"
    );
    let issued = case.standin.issued_tokens();
    assert_eq!(issued.len(), 1);
    for token in issued {
        assert!(!logs.contains(&token), "an access token is in the logs");
    }
    Ok(())
}
