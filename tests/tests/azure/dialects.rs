//! The native socket's `backend: azure`, Courier's additions on `azure.sock` (`expandKeys`, templates), and the
//! offline `courier-provider check` of the Azure example.

use std::process::Command;

use anyhow::Context;
use courier_tests::calls::{assert_status, file_paths, mount, object_version, text};
use courier_tests::tools;
use tonic::Code;

use crate::support::{case, obj};

#[tokio::test]
async fn native_socket_and_courier_additions() -> anyhow::Result<()> {
    let case = case("native").await?;
    case.secret("db-config", r#"{"username":"app","password":"pw"}"#);
    let provider = case.provider_builder(&["azure", "courier"]).start().await?;
    let objects = [obj("db-config", "secret")
        .field("objectAlias", "db")
        .field("expandKeys", "true")];
    let templates = "- path: url\n  template: \"postgres://{{ objects.db.username }}@db\"\n";

    for socket in ["azure", "courier"] {
        let mut request = case.request(&objects)?.parameter("templates", templates);
        if socket == "courier" {
            request = request.parameter("backend", "azure");
        }
        let response = mount(&mut provider.client(socket).await?, request.build()?).await?;
        let mut paths = file_paths(&response);
        paths.sort();
        assert_eq!(paths, ["db/password", "db/username", "url"], "{socket}");
        assert_eq!(text(&response, "db/username"), "app");
        assert_eq!(text(&response, "url"), "postgres://app@db");
        assert!(!object_version(&response, "url").is_empty());
    }
    // Without `backend: azure` the native socket reads Vault parameters.
    let result = mount(
        &mut provider.client("courier").await?,
        case.request(&objects)?.build()?,
    )
    .await;
    assert_status(result, Code::InvalidArgument, &["roleName"]);
    Ok(())
}

#[tokio::test]
async fn the_example_checks_offline() -> anyhow::Result<()> {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/azure-keyvault.yaml"
    );
    let output = Command::new(tools::provider_binary()?)
        .args(["check", "--output", "json", example])
        .output()
        .context("running courier-provider check")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let classes = report["classes"].as_array().context("classes")?;
    assert_eq!(classes.len(), 2, "{report}");
    let compat = &classes[0];
    assert_eq!(compat["dialect"], "azure");
    assert_eq!(compat["backend"]["name"], "azure");
    assert_eq!(
        compat["audiences"],
        serde_json::json!(["api://AzureADTokenExchange"])
    );
    let files: Vec<&str> = compat["files"]
        .as_array()
        .context("files")?
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(
        files,
        [
            "db-password",
            "signing-key",
            "web-tls",
            "web-tls.key-and-chain",
            "api-token/*"
        ]
    );
    assert_eq!(classes[1]["dialect"], "native");
    assert_eq!(classes[1]["backend"]["name"], "azure");
    Ok(())
}

#[tokio::test]
async fn azure_stack_cloud_reads_its_endpoints_from_the_allowed_directory_only()
-> anyhow::Result<()> {
    let case = case("stack").await?;
    case.secret("db", "from-the-stack");
    let dir = tempfile::tempdir()?;
    // The cloud file names the stand-in as the authority; Key Vault's address comes from the endpoint flag.
    let cloud = serde_json::json!({
        "name": "AzureStackCloud",
        "activeDirectoryEndpoint": case.standin.authority_host(),
        "keyVaultEndpoint": "https://vault.azure.net/",
        "keyVaultDNSSuffix": "vault.stack.example",
    });
    std::fs::write(dir.path().join("stack.json"), cloud.to_string())?;
    let provider = crate::support::provider_without_authority(&case)
        .arg("--azure-cloud-env-dir")
        .arg(dir.path())
        .start()
        .await?;
    let mut client = provider.client("azure").await?;
    let stack = |file: &str| {
        case.request(&[obj("db", "secret")]).and_then(|r| {
            r.parameter("cloudName", "AzureStackCloud")
                .parameter("cloudEnvFileName", file)
                .build()
        })
    };

    let response = mount(&mut client, stack("stack.json")?).await?;
    assert_eq!(text(&response, "db"), "from-the-stack");
    // A file outside the directory is never read, whatever its name.
    let result = mount(&mut client, stack("../../../../etc/passwd")?).await;
    assert_status(
        result,
        Code::PermissionDenied,
        &["cloudEnvFileName", "not a file below"],
    );
    Ok(())
}
