//! One provider, several sockets: `vault`, `openbao` and `courier` each take their own spelling of parameters.

use courier_tests::calls::{assert_status, mount, text};
use serde_json::json;
use tonic::Code;

use crate::support::{mount_on_socket, mount_on_vault, obj, plain, provider};

#[tokio::test]
async fn openbao_socket_takes_openbao_spellings_and_audience() -> anyhow::Result<()> {
    let case = plain()
        .await?
        .case_for_audiences("openbao-keys", &["openbao"])
        .await?;
    case.put("app", json!({"password": "from-openbao"})).await?;
    // No `audience`: the openbao dialect asks for a token for `openbao`.
    let request = case
        .openbao_request(&[obj("password", &case.secret_path("app")).key("password")])?
        .build()?;

    let response = mount_on_socket("openbao", request).await??;

    assert_eq!(text(&response, "password"), "from-openbao");
    Ok(())
}

#[tokio::test]
async fn openbao_socket_takes_vault_spellings_too() -> anyhow::Result<()> {
    let case = plain()
        .await?
        .case_for_audiences("openbao-vault-keys", &["openbao"])
        .await?;
    case.put("app", json!({"password": "vault-keys-on-openbao"}))
        .await?;
    let request = case
        .request(&[obj("password", &case.secret_path("app")).key("password")])?
        .without_tokens()
        .token("openbao", case.token("openbao")?)
        .build()?;

    let response = mount_on_socket("openbao", request).await??;

    assert_eq!(text(&response, "password"), "vault-keys-on-openbao");
    Ok(())
}

#[tokio::test]
async fn vault_socket_asks_for_the_vault_audience() -> anyhow::Result<()> {
    let case = plain().await?.case("vault-aud").await?;
    let request = case
        .request(&[obj("password", &case.secret_path("app")).key("password")])?
        .without_tokens()
        .token("openbao", case.token("openbao")?)
        .build()?;

    let result = mount_on_vault(request).await?;

    assert_status(result, Code::InvalidArgument, &["tokenRequests", "vault"]);
    Ok(())
}

#[tokio::test]
async fn courier_socket_with_openbao_backend() -> anyhow::Result<()> {
    let case = plain()
        .await?
        .case_for_audiences("courier-openbao", &["openbao"])
        .await?;
    case.put("app", json!({"password": "native-openbao"}))
        .await?;
    let request = case
        .openbao_request(&[obj("password", &case.secret_path("app")).key("password")])?
        .parameter("backend", "openbao")
        .parameter("audience", "openbao")
        .build()?;

    let response = mount_on_socket("courier", request).await??;

    assert_eq!(text(&response, "password"), "native-openbao");
    Ok(())
}

#[tokio::test]
async fn courier_socket_with_vault_backend_and_vault_parameters() -> anyhow::Result<()> {
    let case = plain().await?.case("courier-vault").await?;
    case.put("app", json!({"password": "native-vault"})).await?;
    let request = case
        .request(&[obj("password", &case.secret_path("app")).key("password")])?
        .parameter("backend", "vault")
        .build()?;

    let response = mount_on_socket("courier", request).await??;

    assert_eq!(text(&response, "password"), "native-vault");
    Ok(())
}

#[tokio::test]
async fn courier_socket_rejects_an_unknown_backend() -> anyhow::Result<()> {
    let case = plain().await?.case("courier-bad-backend").await?;
    let provider = provider(&["courier"]).await?;
    let request = case
        .request(&[obj("password", &case.secret_path("app")).key("password")])?
        .parameter("backend", "etcd")
        .build()?;

    let result = mount(&mut provider.client("courier").await?, request).await;

    assert_status(result, Code::InvalidArgument, &["backend", "etcd"]);
    Ok(())
}

#[tokio::test]
async fn vault_address_defaults_to_the_flag() -> anyhow::Result<()> {
    let case = plain().await?.case("default-addr").await?;
    case.put("app", json!({"password": "via-flag"})).await?;
    // `provider` passes the shared server's address as --vault-addr.
    let provider = provider(&["vault"]).await?;
    let request = case
        .request(&[obj("password", &case.secret_path("app")).key("password")])?
        .without_parameter("vaultAddress")
        .build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    assert_eq!(text(&response, "password"), "via-flag");
    Ok(())
}
