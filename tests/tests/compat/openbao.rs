//! `openbao.sock`: SecretProviderClasses of the OpenBao CSI provider (openbao/openbao-csi-provider
//! `test/bats/configs/openbao-*.yaml` and `internal/config`) mount as they mount there: `bao*`, `openbao*` and
//! `vault*` spellings of every key, `bao*` first; audience `openbao` by default.

use courier_tests::MountRequestBuilder;
use courier_tests::calls::{assert_status, file, file_paths, mount, text};
use serde_json::{Value, json};
use tonic::Code;

use crate::vault::{DOMAIN, kv2_document, openssl_on, pki_case, top_level_keys};
use crate::vault_support::{Case, JWT_MOUNT, Obj, obj, objects_yaml, plain, provider};

/// An address where nothing answers (port 9, discard, is never served here).
const NOWHERE: &str = "http://127.0.0.1:9";

async fn bao_case(label: &str) -> anyhow::Result<Case> {
    plain().await?.case_for_audiences(label, &["openbao"]).await
}

/// The request an OpenBao SecretProviderClass makes with only `roleName`, `objects` and the given keys: no
/// address (the provider's flag) and the driver's token for the audience `openbao`.
fn bao_request(case: &Case, objects: &[Obj], keys: &[(&str, &str)]) -> anyhow::Result<MountRequestBuilder> {
    let mut request = MountRequestBuilder::new(&case.pod)
        .parameter("roleName", &case.role)
        .parameter("objects", objects_yaml(objects))
        .token("openbao", case.token("openbao")?);
    for (key, value) in keys {
        request = request.parameter(*key, *value);
    }
    Ok(request)
}

// openbao-csi-provider test/bats/configs/openbao-kv-secretproviderclass-jwt-auth.yaml: `baoAuthMountPath: "jwt"`,
// `filePermission: 0600`.
#[tokio::test]
async fn kv_secretproviderclass_jwt_auth() -> anyhow::Result<()> {
    let case = bao_case("bao-jwt").await?;
    case.put("kv1", json!({"bar1": "hello1"})).await?;
    let provider = provider(&["openbao"]).await?;
    let request = bao_request(
        &case,
        &[obj("secret-1", &case.secret_path("kv1")).key("bar1").file_permission("0600")],
        &[("baoAuthMountPath", JWT_MOUNT)],
    )?
    .build()?;

    let response = mount(&mut provider.client("openbao").await?, request).await?;

    assert_eq!(file_paths(&response), ["secret-1"]);
    assert_eq!((file(&response, "secret-1").mode, text(&response, "secret-1").as_str()), (0o600, "hello1"));
    Ok(())
}

// openbao-csi-provider test/bats/configs/openbao-kv-sync-secretproviderclass.yaml: `baoAddress`, `/v1/`-prefixed
// paths and `encoding: "base64"`.
#[tokio::test]
async fn kv_sync_secretproviderclass_with_bao_address() -> anyhow::Result<()> {
    let case = bao_case("bao-sync").await?;
    case.put("kv-sync1", json!({"bar1": "hello-sync1"})).await?;
    case.put("kv-sync3", json!({"bar3": "aGVsbG8tc3luYzM="})).await?;
    // The flag's address leads nowhere: only `baoAddress` reaches the server.
    let provider = crate::vault_support::provider_builder(&["openbao"]).await?.vault_addr(NOWHERE).start().await?;
    let request = bao_request(
        &case,
        &[
            obj("secret-1", &format!("/v1/{}", case.secret_path("kv-sync1"))).key("bar1"),
            obj("secret-3", &format!("v1/{}", case.secret_path("kv-sync3"))).key("bar3").encoding("base64"),
        ],
        &[("baoAddress", &case.bao().addr()), ("baoAuthMountPath", JWT_MOUNT)],
    )?
    .build()?;

    let response = mount(&mut provider.client("openbao").await?, request).await?;

    assert_eq!(text(&response, "secret-1"), "hello-sync1");
    assert_eq!(text(&response, "secret-3"), "hello-sync3");
    Ok(())
}

// openbao-csi-provider internal/config parseParametersPrefix: prefixes are tried in the order bao, openbao, vault
// and the first present wins, without a conflict error.
#[tokio::test]
async fn prefix_precedence() -> anyhow::Result<()> {
    let case = bao_case("bao-order").await?;
    case.put("app", json!({"password": "precedence"})).await?;
    let provider = crate::vault_support::provider_builder(&["openbao"]).await?.vault_addr(NOWHERE).start().await?;
    let addr = case.bao().addr();
    let objects = [obj("password", &case.secret_path("app")).key("password")];
    let spellings: [&[(&str, &str)]; 3] = [
        &[("baoAddress", &addr), ("openbaoAddress", NOWHERE), ("vaultAddress", NOWHERE), ("baoAuthMountPath", JWT_MOUNT), ("vaultAuthMountPath", "nowhere")],
        &[("openbaoAddress", &addr), ("vaultAddress", NOWHERE), ("openbaoAuthMountPath", JWT_MOUNT), ("vaultAuthMountPath", "nowhere")],
        &[("vaultAddress", &addr), ("vaultAuthMountPath", JWT_MOUNT)],
    ];
    for keys in spellings {
        let request = bao_request(&case, &objects, keys)?.build()?;
        let response = mount(&mut provider.client("openbao").await?, request).await?;
        assert_eq!(text(&response, "password"), "precedence", "{keys:?}");
    }
    Ok(())
}

// openbao-csi-provider internal/config: `baoRoleName` (and the other spellings) name the role before `roleName`.
#[tokio::test]
async fn bao_role_name() -> anyhow::Result<()> {
    let case = bao_case("bao-role").await?;
    case.put("app", json!({"password": "by-bao-role"})).await?;
    let provider = provider(&["openbao"]).await?;
    let request = bao_request(&case, &[obj("password", &case.secret_path("app")).key("password")], &[("baoAuthMountPath", JWT_MOUNT)])?
        .parameter("roleName", "no-such-role")
        .parameter("baoRoleName", &case.role)
        .build()?;

    let response = mount(&mut provider.client("openbao").await?, request).await?;

    assert_eq!(text(&response, "password"), "by-bao-role");
    Ok(())
}

// openbao-csi-provider internal/config: `baoNamespace` is read (a namespace that does not exist fails the login
// instead of silently reading the root namespace).
#[tokio::test]
async fn bao_namespace_is_read() -> anyhow::Result<()> {
    let case = bao_case("bao-ns").await?;
    case.put("app", json!({"password": "root-namespace"})).await?;
    let provider = provider(&["openbao"]).await?;
    let request = bao_request(
        &case,
        &[obj("password", &case.secret_path("app")).key("password")],
        &[("baoAuthMountPath", JWT_MOUNT), ("baoNamespace", "no-such-namespace")],
    )?
    .build()?;

    let result = mount(&mut provider.client("openbao").await?, request).await;

    let status = result.expect_err("a missing namespace must not fall back to the root namespace");
    assert_ne!(status.code(), Code::Ok);
    Ok(())
}

// openbao-csi-provider internal/config: `baoSkipTLSVerify` through strconv.ParseBool, and the mutually exclusive
// mount paths across spellings.
#[tokio::test]
async fn bao_booleans_and_exclusive_mounts() -> anyhow::Result<()> {
    let case = bao_case("bao-bool").await?;
    case.put("app", json!({"password": "p"})).await?;
    let provider = provider(&["openbao"]).await?;
    let objects = [obj("password", &case.secret_path("app")).key("password")];
    for spelling in ["True", "1", "t", "FALSE", "0", "f"] {
        let request = bao_request(&case, &objects, &[("baoAuthMountPath", JWT_MOUNT), ("baoSkipTLSVerify", spelling)])?.build()?;
        assert_eq!(text(&mount(&mut provider.client("openbao").await?, request).await?, "password"), "p", "{spelling}");
    }
    let request = bao_request(&case, &objects, &[("baoAuthMountPath", JWT_MOUNT), ("baoSkipTLSVerify", "maybe")])?.build()?;
    assert_status(mount(&mut provider.client("openbao").await?, request).await, Code::InvalidArgument, &["baoSkipTLSVerify"]);
    let request = bao_request(&case, &objects, &[("baoKubernetesMountPath", "kubernetes"), ("vaultAuthMountPath", JWT_MOUNT)])?.build()?;
    assert_status(mount(&mut provider.client("openbao").await?, request).await, Code::InvalidArgument, &["baoKubernetesMountPath", "vaultAuthMountPath"]);
    Ok(())
}

// openbao-csi-provider test/bats/configs/openbao-pki-secretproviderclass.yaml: the whole response as OpenBao's
// Go client marshals it, which has no mount_type field.
#[tokio::test]
async fn pki_secretproviderclass_writes_the_whole_response() -> anyhow::Result<()> {
    let case = bao_case("bao-pki").await?;
    let issue = pki_case(&case).await?;
    let provider = provider(&["openbao"]).await?;
    let request = bao_request(
        &case,
        &[obj("certs", &issue).args(json!({"common_name": format!("test.{DOMAIN}"), "ttl": "24h"})).method("PUT")],
        &[("baoAuthMountPath", JWT_MOUNT)],
    )?
    .build()?;

    let response = mount(&mut provider.client("openbao").await?, request).await?;

    let document = text(&response, "certs");
    assert_eq!(top_level_keys(&document), ["request_id", "lease_id", "lease_duration", "renewable", "data", "warnings"]);
    let parsed: Value = serde_json::from_str(&document)?;
    let subject = openssl_on(parsed["data"]["certificate"].as_str().unwrap_or_default(), &["x509", "-noout", "-subject"])?;
    assert!(subject.contains(&format!("test.{DOMAIN}")), "{subject}");
    Ok(())
}

// openbao-csi-provider internal/provider: a whole KV v2 response, byte for byte (no mount_type).
#[tokio::test]
async fn whole_kv2_response_byte_for_byte() -> anyhow::Result<()> {
    let case = bao_case("bao-whole").await?;
    case.put("app", json!({"b": "x\u{2028}y", "a": [1, "<"]})).await?;
    let provider = provider(&["openbao"]).await?;
    let request = bao_request(&case, &[obj("app.json", &case.secret_path("app"))], &[("baoAuthMountPath", JWT_MOUNT)])?.build()?;

    let response = mount(&mut provider.client("openbao").await?, request).await?;

    let document = text(&response, "app.json");
    let data = r#"{"a":[1,"\u003c"],"b":"x\u2028y"}"#;
    assert_eq!(document, kv2_document(&case, "app", data, &document, false).await?);
    Ok(())
}

// openbao-csi-provider test/bats/configs/openbao-all-secretproviderclass.yaml: the same path and method twice
// in one class are read once (here a PKI issue: the key file belongs to the certificate).
#[tokio::test]
async fn all_secretproviderclass_reads_a_path_once() -> anyhow::Result<()> {
    let case = bao_case("bao-all").await?;
    case.put("kv1", json!({"bar1": "hello-all"})).await?;
    let issue = pki_case(&case).await?;
    let provider = provider(&["openbao"]).await?;
    let request = bao_request(
        &case,
        &[
            obj("tls.crt", &issue).key("certificate").method("PUT").args(json!({"common_name": format!("all.{DOMAIN}"), "ttl": "24h"})),
            obj("tls.key", &issue).key("private_key").method("PUT"),
            obj("secret-1", &case.secret_path("kv1")).key("bar1"),
        ],
        &[("baoAuthMountPath", JWT_MOUNT)],
    )?
    .build()?;

    let response = mount(&mut provider.client("openbao").await?, request).await?;

    let cert_public = openssl_on(&text(&response, "tls.crt"), &["x509", "-noout", "-pubkey"])?;
    let key_public = openssl_on(&text(&response, "tls.key"), &["pkey", "-pubout"])?;
    assert_eq!(cert_public, key_public);
    assert_eq!(text(&response, "secret-1"), "hello-all");
    Ok(())
}
