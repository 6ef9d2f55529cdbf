//! HTTPS to OpenBao (`-dev-tls`): a CA from `vaultCACertPath`, the loud skip-verify switch, and refusals.

use anyhow::Context;
use courier_proto::v1alpha1::MountResponse;
use courier_tests::calls::{assert_status, text};
use serde_json::json;
use tonic::{Code, Status};

use crate::support::{Case, mount_on_socket, mount_on_vault, obj, tls};

async fn tls_case(label: &str) -> anyhow::Result<(Case, String)> {
    let case = tls().await?.case(label).await?;
    assert!(
        case.bao().addr().starts_with("https://"),
        "{}",
        case.bao().addr()
    );
    case.put("app", json!({"password": format!("tls-{label}")}))
        .await?;
    let ca = ca_of(&case)?;
    Ok((case, ca))
}

/// The TLS server's CA file.
fn ca_of(case: &Case) -> anyhow::Result<String> {
    Ok(case
        .bao()
        .ca_path()
        .context("the TLS server has a CA")?
        .display()
        .to_string())
}

/// Stands for the TLS server's CA file among the parameters of [`mount_over_tls`].
const THE_CA: &str = "<the server's CA file>";

/// Mounts `password` from a fresh TLS case on the `vault` socket, with `parameters` added ([`THE_CA`] stands for
/// the server's CA file). The secret's value is `tls-<label>`.
async fn mount_over_tls(
    label: &str,
    parameters: &[(&str, &str)],
) -> anyhow::Result<Result<MountResponse, Status>> {
    let (case, ca) = tls_case(label).await?;
    let mut request = case.request(&[obj("password", &case.secret_path("app")).key("password")])?;
    for (name, value) in parameters {
        let value = if *value == THE_CA { ca.as_str() } else { value };
        request = request.parameter(*name, value);
    }
    mount_on_vault(request.build()?).await
}

#[tokio::test]
async fn ca_cert_path_verifies_the_server() -> anyhow::Result<()> {
    let response = mount_over_tls("tls-ca", &[("vaultCACertPath", THE_CA)]).await??;

    assert_eq!(text(&response, "password"), "tls-tls-ca");
    Ok(())
}

#[tokio::test]
async fn unknown_server_certificate_is_refused() -> anyhow::Result<()> {
    let result = mount_over_tls("tls-no-ca", &[]).await?;

    let status = result.expect_err("a server certificate from an unknown CA must not be trusted");
    eprintln!("{:?}: {}", status.code(), status.message());
    let message = status.message().to_lowercase();
    assert!(
        status.code() == Code::Unavailable
            || message.contains("certificate")
            || message.contains("tls"),
        "{:?}: {}",
        status.code(),
        status.message()
    );
    assert!(
        message.contains("certificate") || message.contains("tls"),
        "the message should say it is a TLS problem: {}",
        status.message()
    );
    // Recognised as a certificate problem (by the error's type), so not retried as if the server were down.
    assert!(
        message.contains("tls verification") && !message.contains("attempts"),
        "{}",
        status.message()
    );
    Ok(())
}

#[tokio::test]
async fn skip_tls_verify_true_connects_without_a_ca() -> anyhow::Result<()> {
    let response = mount_over_tls("tls-skip", &[("vaultSkipTLSVerify", "true")]).await??;

    assert_eq!(text(&response, "password"), "tls-tls-skip");
    Ok(())
}

#[tokio::test]
async fn skip_tls_verify_must_be_a_boolean() -> anyhow::Result<()> {
    let result = mount_over_tls("tls-maybe", &[("vaultSkipTLSVerify", "maybe")]).await?;

    assert_status(
        result,
        Code::InvalidArgument,
        &["vaultSkipTLSVerify", "maybe"],
    );
    Ok(())
}

#[tokio::test]
async fn missing_ca_file_is_invalid_argument() -> anyhow::Result<()> {
    let result = mount_over_tls(
        "tls-ca-missing",
        &[("vaultCACertPath", "/nonexistent/courier-ca.pem")],
    )
    .await?;

    let status = result.expect_err("an unreadable CA file must fail the mount");
    eprintln!("{:?}: {}", status.code(), status.message());
    assert_ne!(status.code(), Code::Ok);
    assert!(
        status.message().contains("vaultCACertPath")
            || status.message().contains("/nonexistent/courier-ca.pem"),
        "the message should name the CA parameter or file: {}",
        status.message()
    );
    Ok(())
}

#[tokio::test]
async fn openbao_ca_cert_path_spelling_on_the_openbao_socket() -> anyhow::Result<()> {
    let case = tls()
        .await?
        .case_for_audiences("tls-openbao", &["openbao"])
        .await?;
    case.put("app", json!({"password": "tls-openbao"})).await?;
    let ca = ca_of(&case)?;
    let request = case
        .openbao_request(&[obj("password", &case.secret_path("app")).key("password")])?
        .parameter("openbaoCACertPath", ca)
        .build()?;

    let response = mount_on_socket("openbao", request).await??;

    assert_eq!(text(&response, "password"), "tls-openbao");
    Ok(())
}
