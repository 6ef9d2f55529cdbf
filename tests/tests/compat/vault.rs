//! `vault.sock`: SecretProviderClasses of hashicorp/vault-csi-provider (its `test/bats/configs/*.yaml`, its
//! `internal/config` and `internal/provider` behaviour) mount as they mount there.

use courier_tests::calls::{assert_status, file, file_paths, mount, text};
use courier_tests::MountRequestBuilder;
use reqwest::Method;
use serde_json::{Value, json};
use tonic::Code;

use crate::vault_support::{Case, JWT_MOUNT, obj, plain, provider};

pub(crate) const DOMAIN: &str = "example.internal";

/// A case with a PKI mount `pki-<id>` and a role `web`; returns the issue path.
pub(crate) async fn pki_case(case: &Case) -> anyhow::Result<String> {
    let mount_path = format!("pki-{}", case.id);
    case.bao().enable_pki(&mount_path, "Courier Compat Root").await?;
    case.bao().pki_role(&mount_path, "web", DOMAIN).await?;
    Ok(format!("{mount_path}/issue/web"))
}

pub(crate) use courier_tests::tools::openssl_on;

/// The top-level field names of a JSON document, in the order they are written.
pub(crate) fn top_level_keys(document: &str) -> Vec<String> {
    // Every top-level value of the record is a scalar, null, or an object/array whose keys are
    // skipped by tracking depth; strings are skipped with their escapes.
    let mut keys = Vec::new();
    let bytes = document.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                let is_key = bytes.get(i + 1) == Some(&b':');
                if depth == 1 && is_key {
                    keys.push(document[start..i].to_owned());
                }
            }
            _ => {}
        }
        i += 1;
    }
    keys
}

/// The document vault-csi-provider writes for a KV v2 read without `secretKey`, built by hand from the
/// version's metadata (read directly) and the `request_id` the file carries.
pub(crate) async fn kv2_document(case: &Case, name: &str, data_json: &str, file_text: &str, mount_type: bool) -> anyhow::Result<String> {
    let raw = case.bao().api(Method::GET, &case.secret_path(name), None).await?;
    let meta = &raw["data"]["metadata"];
    let written: Value = serde_json::from_str(file_text)?;
    let request_id = written["request_id"].as_str().unwrap_or_default().to_owned();
    assert!(!request_id.is_empty(), "the whole response keeps request_id: {file_text}");
    let mut expected = format!(
        r#"{{"request_id":"{request_id}","lease_id":"","lease_duration":0,"renewable":false,"data":{{"data":{data_json},"metadata":{{"created_time":{},"custom_metadata":{},"deletion_time":{},"destroyed":{},"version":{}}}}},"warnings":null"#,
        meta["created_time"], meta["custom_metadata"], meta["deletion_time"], meta["destroyed"], meta["version"]
    );
    if mount_type && let Some(kind) = raw.get("mount_type").and_then(Value::as_str).filter(|k| !k.is_empty()) {
        expected.push_str(&format!(r#","mount_type":"{kind}""#));
    }
    expected.push('}');
    Ok(expected)
}

// vault-csi-provider test/bats/configs/vault-kv-secretproviderclass.yaml: two KV v2 keys, `filePermission: 0624`
// (YAML octal) on the first, the driver's 0644 on the second.
#[tokio::test]
async fn kv_secretproviderclass() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-kv").await?;
    case.put("kv1", json!({"bar1": "hello1"})).await?;
    case.put("kv2", json!({"bar2": "hello2"})).await?;
    let provider = provider(&["vault"]).await?;
    let request = case
        .request(&[
            obj("secret-1", &case.secret_path("kv1")).key("bar1").file_permission("0624"),
            obj("secret-2", &case.secret_path("kv2")).key("bar2"),
        ])?
        .build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    assert_eq!(file_paths(&response), ["secret-1", "secret-2"]);
    assert_eq!((file(&response, "secret-1").mode, text(&response, "secret-1").as_str()), (0o624, "hello1"));
    assert_eq!((file(&response, "secret-2").mode, text(&response, "secret-2").as_str()), (0o644, "hello2"));
    Ok(())
}

// vault-csi-provider test/bats/configs/vault-kv-secretproviderclass-jwt-auth.yaml: `vaultAuthMountPath: "jwt"`,
// `filePermission: 0644`.
#[tokio::test]
async fn kv_secretproviderclass_jwt_auth() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-jwt").await?;
    case.put("kv1", json!({"bar1": "hello-jwt"})).await?;
    let provider = provider(&["vault"]).await?;
    let request = case
        .request(&[obj("secret-1", &case.secret_path("kv1")).key("bar1").file_permission("0644")])?
        .parameter("vaultAuthMountPath", JWT_MOUNT)
        .build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    assert_eq!((file(&response, "secret-1").mode, text(&response, "secret-1").as_str()), (0o644, "hello-jwt"));
    Ok(())
}

// vault-csi-provider test/bats/configs/vault-kv-sync-secretproviderclass.yaml: `/v1/` and `v1/` prefixed
// secretPaths, and `encoding: "base64"` decoding the third value.
#[tokio::test]
async fn kv_sync_secretproviderclass_paths_and_base64() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-sync").await?;
    case.put("kv-sync1", json!({"bar1": "hello-sync1"})).await?;
    case.put("kv-sync2", json!({"bar2": "hello-sync2"})).await?;
    case.put("kv-sync3", json!({"bar3": "aGVsbG8tc3luYzM="})).await?;
    let provider = provider(&["vault"]).await?;
    let request = case
        .request(&[
            obj("secret-1", &format!("/v1/{}", case.secret_path("kv-sync1"))).key("bar1"),
            obj("secret-2", &format!("v1/{}", case.secret_path("kv-sync2"))).key("bar2"),
            obj("secret-3", &format!("/v1/{}", case.secret_path("kv-sync3"))).key("bar3").encoding("base64"),
        ])?
        .build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    assert_eq!(text(&response, "secret-1"), "hello-sync1");
    assert_eq!(text(&response, "secret-2"), "hello-sync2");
    assert_eq!(text(&response, "secret-3"), "hello-sync3");
    Ok(())
}

// vault-csi-provider test/bats/configs/vault-kv-custom-audience-secretproviderclass.yaml: `audience:
// custom-audience` picks the driver's token for that audience.
#[tokio::test]
async fn kv_custom_audience() -> anyhow::Result<()> {
    let case = plain().await?.case_for_audiences("compat-aud", &["custom-audience"]).await?;
    case.put("kv-custom-audience", json!({"bar": "hello-custom-audience"})).await?;
    let provider = provider(&["vault"]).await?;
    let request = case
        .request(&[obj("secret", &case.secret_path("kv-custom-audience")).key("bar")])?
        .without_tokens()
        .token("custom-audience", case.token("custom-audience")?)
        .parameter("audience", "custom-audience")
        .build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    assert_eq!(text(&response, "secret"), "hello-custom-audience");
    Ok(())
}

// vault-csi-provider test/bats/configs/vault-pki-secretproviderclass.yaml: no secretKey, so the whole response
// is written as its Go client marshals it: request_id first, no auth/wrap_info nulls, data keys sorted.
#[tokio::test]
async fn pki_secretproviderclass_writes_the_whole_response() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-pki").await?;
    let issue = pki_case(&case).await?;
    let provider = provider(&["vault"]).await?;
    let request = case
        .request(&[obj("certs", &issue).args(json!({"common_name": format!("test.{DOMAIN}"), "ttl": "24h"})).method("PUT")])?
        .build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    let document = text(&response, "certs");
    let keys = top_level_keys(&document);
    assert_eq!(&keys[..6], ["request_id", "lease_id", "lease_duration", "renewable", "data", "warnings"], "{document}");
    assert!(keys.len() == 6 || (keys.len() == 7 && keys[6] == "mount_type"), "{keys:?}");
    let parsed: Value = serde_json::from_str(&document)?;
    let data = parsed["data"].as_object().cloned().unwrap_or_default();
    let names: Vec<&String> = data.keys().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "data keys are written sorted");
    let subject = openssl_on(parsed["data"]["certificate"].as_str().unwrap_or_default(), &["x509", "-noout", "-subject"])?;
    assert!(subject.contains(&format!("test.{DOMAIN}")), "{subject}");
    Ok(())
}

// vault-csi-provider internal/provider (whole response = the Go client's secret record): a KV v2 read without
// secretKey, byte for byte; `<`, `>` and `&` are escaped as Go escapes them.
#[tokio::test]
async fn whole_kv2_response_byte_for_byte() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-whole").await?;
    case.put("app", json!({"user": "a<b>&c", "port": 5432, "nested": {"z": true, "a": null}})).await?;
    let provider = provider(&["vault"]).await?;
    let request = case.request(&[obj("app.json", &case.secret_path("app")).file_permission("0640")])?.build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    let document = text(&response, "app.json");
    let data = r#"{"nested":{"a":null,"z":true},"port":5432,"user":"a\u003cb\u003e\u0026c"}"#;
    assert_eq!(document, kv2_document(&case, "app", data, &document, true).await?);
    assert_eq!(file(&response, "app.json").mode, 0o640);
    Ok(())
}

// vault-csi-provider internal/provider getSecret: `encoding` applies only to a secretKey's value; a whole
// response is written unchanged even with `encoding: base64`.
#[tokio::test]
async fn encoding_is_ignored_for_a_whole_response() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-whole-enc").await?;
    case.put("app", json!({"k": "v"})).await?;
    let provider = provider(&["vault"]).await?;
    let request = case.request(&[obj("app.json", &case.secret_path("app")).encoding("base64")])?.build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    let document = text(&response, "app.json");
    assert_eq!(document, kv2_document(&case, "app", r#"{"k":"v"}"#, &document, true).await?);
    Ok(())
}

// vault-csi-provider internal/provider keyFromData: when `.data.data` is a map the key is looked up there
// only, so user keys named `data` and `metadata` are the user's values; an envelope key is not found.
#[tokio::test]
async fn kv2_keys_named_data_and_metadata() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-kv2-keys").await?;
    case.put("app", json!({"data": "user-data", "metadata": "user-metadata", "list": ["a", 1], "flag": false})).await?;
    case.put("plain", json!({"user": "u"})).await?;
    let provider = provider(&["vault"]).await?;
    let request = case
        .request(&[
            obj("data", &case.secret_path("app")).key("data"),
            obj("metadata", &case.secret_path("app")).key("metadata"),
            obj("list", &case.secret_path("app")).key("list"),
            obj("flag", &case.secret_path("app")).key("flag"),
        ])?
        .build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    assert_eq!(text(&response, "data"), "user-data");
    assert_eq!(text(&response, "metadata"), "user-metadata");
    assert_eq!(text(&response, "list"), r#"["a",1]"#);
    assert_eq!(text(&response, "flag"), "false");

    let request = case.request(&[obj("meta", &case.secret_path("plain")).key("metadata")])?.build()?;
    let result = mount(&mut provider.client("vault").await?, request).await;
    assert_status(result, Code::NotFound, &["metadata", "user"]);
    Ok(())
}

// vault-csi-provider internal/provider keyFromData on a KV v1 secret: a stored key `data` holding a map is
// taken for the KV v2 envelope, so its inner keys are found and the secret's other keys are not.
#[tokio::test]
async fn kv1_secret_with_a_data_map() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-kv1").await?;
    let mount_path = format!("kv-{}", case.id);
    case.bao().enable_kv1(&mount_path).await?;
    case.bao().kv1_put(&mount_path, "db", json!({"data": {"inner": "from-inner"}, "outer": "o"})).await?;
    case.bao().kv1_put(&mount_path, "flat", json!({"data": "a-string", "outer": "o"})).await?;
    let provider = provider(&["vault"]).await?;
    let request = case
        .request(&[
            obj("inner", &format!("{mount_path}/db")).key("inner"),
            obj("data", &format!("{mount_path}/flat")).key("data"),
            obj("outer", &format!("{mount_path}/flat")).key("outer"),
        ])?
        .build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    assert_eq!(text(&response, "inner"), "from-inner");
    assert_eq!(text(&response, "data"), "a-string");
    assert_eq!(text(&response, "outer"), "o");

    let request = case.request(&[obj("outer", &format!("{mount_path}/db")).key("outer")])?.build()?;
    let result = mount(&mut provider.client("vault").await?, request).await;
    assert_status(result, Code::NotFound, &["outer"]);
    Ok(())
}

// vault-csi-provider test/bats/configs/vault-all-secretproviderclass.yaml ("referring to the same dynamic creds
// twice ... should result in only one read"): tls.key names the same path and method as tls.crt but no
// secretArgs, and gets the same issue call's key.
#[tokio::test]
async fn same_path_and_method_share_one_request() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-reuse").await?;
    let issue = pki_case(&case).await?;
    let provider = provider(&["vault"]).await?;
    let request = case
        .request(&[
            obj("tls.crt", &issue).key("certificate").method("PUT").args(json!({"common_name": format!("a.{DOMAIN}")})),
            obj("tls.key", &issue).key("private_key").method("PUT"),
            obj("serial", &issue).key("serial_number").method("PUT"),
        ])?
        .build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    let cert = text(&response, "tls.crt");
    let cert_public = openssl_on(&cert, &["x509", "-noout", "-pubkey"])?;
    let key_public = openssl_on(&text(&response, "tls.key"), &["pkey", "-pubout"])?;
    assert_eq!(cert_public, key_public, "tls.key comes from the tls.crt issue call");
    let serial = openssl_on(&cert, &["x509", "-noout", "-serial"])?;
    let expected = text(&response, "serial").replace(':', "").to_uppercase();
    assert!(serial.trim().ends_with(&expected), "{serial} vs {expected}");
    Ok(())
}

// vault-csi-provider internal/provider (responses cached per (secretPath, method)): on vault.sock a second
// object with other secretArgs reads the first one's response; the native socket issues both.
#[tokio::test]
async fn other_secret_args_on_the_same_path() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-reuse-args").await?;
    let issue = pki_case(&case).await?;
    let provider = provider(&["vault", "courier"]).await?;
    let objects = [
        obj("a.crt", &issue).key("certificate").method("PUT").args(json!({"common_name": format!("a.{DOMAIN}")})),
        obj("b.crt", &issue).key("certificate").method("PUT").args(json!({"common_name": format!("b.{DOMAIN}")})),
    ];

    let anchor = mount(&mut provider.client("vault").await?, case.request(&objects)?.build()?).await?;
    let native = mount(&mut provider.client("courier").await?, case.request(&objects)?.build()?).await?;

    assert_eq!(text(&anchor, "a.crt"), text(&anchor, "b.crt"));
    let subject = openssl_on(&text(&native, "b.crt"), &["x509", "-noout", "-subject"])?;
    assert!(subject.contains(&format!("b.{DOMAIN}")), "{subject}");
    Ok(())
}

// vault-csi-provider internal/config: `vaultSkipTLSVerify` is read with Go's strconv.ParseBool, so every one of
// its spellings mounts (here against a plain-HTTP server, where verification does not apply), and any other
// word fails the mount naming the parameter.
#[tokio::test]
async fn skip_tls_verify_takes_every_go_boolean() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-bool").await?;
    case.put("app", json!({"password": "p"})).await?;
    let provider = provider(&["vault"]).await?;
    for spelling in ["1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"] {
        let request = case
            .request(&[obj("password", &case.secret_path("app")).key("password")])?
            .parameter("vaultSkipTLSVerify", spelling)
            .build()?;
        let response = mount(&mut provider.client("vault").await?, request).await?;
        assert_eq!(text(&response, "password"), "p", "{spelling}");
    }
    for spelling in ["yes", "on", "tRuE"] {
        let request = case
            .request(&[obj("password", &case.secret_path("app")).key("password")])?
            .parameter("vaultSkipTLSVerify", spelling)
            .build()?;
        let result = mount(&mut provider.client("vault").await?, request).await;
        assert_status(result, Code::InvalidArgument, &["vaultSkipTLSVerify", spelling]);
    }
    Ok(())
}

// vault-csi-provider internal/config reads only `vault*` keys: OpenBao spellings on vault.sock change nothing
// (the flag's address and the request's `vaultAuthMountPath` stay in force).
#[tokio::test]
async fn openbao_spellings_are_not_read_on_vault_sock() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-vault-only").await?;
    case.put("app", json!({"password": "vault-keys"})).await?;
    let provider = provider(&["vault"]).await?;
    let request = case
        .request(&[obj("password", &case.secret_path("app")).key("password")])?
        .without_parameter("vaultAddress")
        .parameter("baoAddress", "http://127.0.0.1:9")
        .parameter("openbaoAddress", "http://127.0.0.1:9")
        .parameter("baoAuthMountPath", "nowhere")
        .build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    assert_eq!(text(&response, "password"), "vault-keys");
    Ok(())
}

// vault-csi-provider internal/client generateSecretRequest: a `?query` in secretPath becomes request parameters
// (here a KV v2 version pin).
#[tokio::test]
async fn query_in_secret_path() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-query").await?;
    case.put("app", json!({"password": "first"})).await?;
    case.put("app", json!({"password": "second"})).await?;
    let provider = provider(&["vault"]).await?;
    let request = case
        .request(&[
            obj("v1", &format!("{}?version=1", case.secret_path("app"))).key("password"),
            obj("latest", &case.secret_path("app")).key("password"),
        ])?
        .build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    assert_eq!(text(&response, "v1"), "first");
    assert_eq!(text(&response, "latest"), "second");
    Ok(())
}

// vault-csi-provider internal/config validate and parseParameters: the SecretProviderClasses it refuses are
// refused, naming the parameter.
#[tokio::test]
async fn refused_secretproviderclasses() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-refused").await?;
    let provider = provider(&["vault"]).await?;
    let path = case.secret_path("app");
    let cases: Vec<(MountRequestBuilder, Vec<&str>)> = vec![
        // "missing 'roleName'".
        (case.request(&[obj("a", &path).key("k")])?.without_parameter("roleName"), vec!["roleName"]),
        // "each `objectName` ... must be unique".
        (case.request(&[obj("a", &path).key("k"), obj("a", &path).key("j")])?, vec!["objectName", "unique"]),
        // "cannot set both vaultKubernetesMountPath and vaultAuthMountPath".
        (case.request(&[obj("a", &path).key("k")])?.parameter("vaultKubernetesMountPath", "kubernetes"), vec!["vaultKubernetesMountPath"]),
        // "no secrets configured".
        (MountRequestBuilder::new(&case.pod).parameter("roleName", &case.role).parameter("objects", ""), vec!["objects"]),
        // yaml.v3 refuses a map where the list of objects belongs.
        (MountRequestBuilder::new(&case.pod).parameter("roleName", &case.role).parameter("objects", "objectName: a"), vec!["objects"]),
    ];
    for (request, words) in cases {
        let result = mount(&mut provider.client("vault").await?, request.build()?).await;
        assert_status(result, Code::InvalidArgument, &words);
    }
    Ok(())
}

// vault-csi-provider internal/config: `filePermission` is an os.FileMode read from YAML, so `0600` is octal and
// `384` is the same mode written in decimal.
#[tokio::test]
async fn file_permission_octal_and_decimal() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-modes").await?;
    case.put("app", json!({"k": "v"})).await?;
    let provider = provider(&["vault"]).await?;
    let request = case
        .request(&[
            obj("octal", &case.secret_path("app")).key("k").file_permission("0600"),
            obj("decimal", &case.secret_path("app")).key("k").file_permission("384"),
            obj("default", &case.secret_path("app")).key("k"),
        ])?
        .permission(0o640)
        .build()?;

    let response = mount(&mut provider.client("vault").await?, request).await?;

    assert_eq!(file(&response, "octal").mode, 0o600);
    assert_eq!(file(&response, "decimal").mode, 0o600);
    assert_eq!(file(&response, "default").mode, 0o640, "the driver's permission is the default");
    Ok(())
}

// The native socket keeps its own whole-response document: the same record without request_id, so an
// unchanged secret keeps its version.
#[tokio::test]
async fn native_whole_response_leaves_out_request_id() -> anyhow::Result<()> {
    let case = plain().await?.case("compat-native-whole").await?;
    case.put("app", json!({"k": "v"})).await?;
    let provider = provider(&["courier"]).await?;
    let request = case.request(&[obj("app.json", &case.secret_path("app"))])?.build()?;

    let first = mount(&mut provider.client("courier").await?, request.clone()).await?;
    let second = mount(&mut provider.client("courier").await?, request).await?;

    let document = text(&first, "app.json");
    assert_eq!(top_level_keys(&document)[..5], ["lease_id", "lease_duration", "renewable", "data", "warnings"]);
    assert_eq!(document, text(&second, "app.json"));
    Ok(())
}
