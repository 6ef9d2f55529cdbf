//! Dynamic secrets: PKI certificates issued by a write (`method: PUT|POST` with `secretArgs`).

use courier_tests::calls::text;
use courier_tests::tools::openssl_on;
use serde_json::json;

use crate::support::{Case, mount_on_vault, obj, plain};

const DOMAIN: &str = "example.internal";

async fn pki_case(label: &str) -> anyhow::Result<(Case, String)> {
    let case = plain().await?.case(label).await?;
    let mount_path = format!("pki-{}", case.id);
    case.bao()
        .enable_pki(&mount_path, "Courier Test Root")
        .await?;
    case.bao().pki_role(&mount_path, "web", DOMAIN).await?;
    let issue_path = format!("{mount_path}/issue/web");
    Ok((case, issue_path))
}

#[tokio::test]
async fn certificate_is_issued_by_put_with_secret_args() -> anyhow::Result<()> {
    let (case, issue_path) = pki_case("pki-put").await?;
    let args = json!({"common_name": format!("app.{DOMAIN}"), "ttl": "1h"});
    let request = case
        .request(&[
            obj("tls.crt", &issue_path)
                .key("certificate")
                .method("PUT")
                .args(args.clone()),
            obj("ca.crt", &issue_path)
                .key("issuing_ca")
                .method("PUT")
                .args(args),
        ])?
        .build()?;

    let response = mount_on_vault(request).await??;

    let cert = text(&response, "tls.crt");
    assert!(cert.contains("-----BEGIN CERTIFICATE-----"), "{cert}");
    let subject = openssl_on(&cert, &["x509", "-noout", "-subject"])?;
    assert!(subject.contains(&format!("app.{DOMAIN}")), "{subject}");
    let issuer = openssl_on(&text(&response, "ca.crt"), &["x509", "-noout", "-subject"])?;
    assert!(issuer.contains("Courier Test Root"), "{issuer}");
    Ok(())
}

#[tokio::test]
async fn post_method_sends_secret_args_as_the_body() -> anyhow::Result<()> {
    let (case, issue_path) = pki_case("pki-post").await?;
    let request = case
        .request(&[obj("tls.crt", &issue_path)
            .key("certificate")
            .method("POST")
            .args(json!({"common_name": format!("api.{DOMAIN}"), "ttl": "30m"}))])?
        .build()?;

    let response = mount_on_vault(request).await??;

    let subject = openssl_on(&text(&response, "tls.crt"), &["x509", "-noout", "-subject"])?;
    assert!(subject.contains(&format!("api.{DOMAIN}")), "{subject}");
    Ok(())
}

/// The certificate and its key come from two objects with the same path and arguments; only one issue call
/// makes them a pair, so this shows identical requests within a mount are fetched once.
#[tokio::test]
async fn identical_requests_in_one_mount_are_fetched_once() -> anyhow::Result<()> {
    let (case, issue_path) = pki_case("pki-pair").await?;
    let args = json!({"common_name": format!("pair.{DOMAIN}"), "ttl": "1h"});
    let request = case
        .request(&[
            obj("tls.crt", &issue_path)
                .key("certificate")
                .method("PUT")
                .args(args.clone()),
            obj("tls.key", &issue_path)
                .key("private_key")
                .method("PUT")
                .args(args),
        ])?
        .build()?;

    let response = mount_on_vault(request).await??;

    let key = text(&response, "tls.key");
    assert!(
        key.contains("PRIVATE KEY-----"),
        "the key file holds a PEM private key"
    );
    let cert_public = openssl_on(&text(&response, "tls.crt"), &["x509", "-noout", "-pubkey"])?;
    let key_public = openssl_on(&key, &["pkey", "-pubout"])?;
    assert_eq!(
        cert_public, key_public,
        "certificate and key come from different issue calls"
    );
    Ok(())
}
