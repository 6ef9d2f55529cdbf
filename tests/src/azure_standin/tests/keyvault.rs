//! Key Vault: the challenge, access policies, objects and their versions, disabled versions and throttling.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};

use super::*;

const API: &str = "api-version=7.4";

impl Setup {
    /// GETs `path` under the vault `vault` (with `query` appended as given) as the holder of `token`.
    async fn get(
        &self,
        vault: &str,
        path: &str,
        query: &str,
        token: Option<&str>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.get_url(&format!("{}/{path}?{query}", self.standin.vault_url(vault)), token).await
    }

    async fn get_url(&self, url: &str, token: Option<&str>) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("key vault request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        (status, headers, response.json().await.expect("json"))
    }
}

#[track_caller]
fn assert_kv_error(answer: &(u16, reqwest::header::HeaderMap, Value), status: u16, code: &str) {
    let (got, _, body) = answer;
    assert_eq!((*got, body["error"]["code"].as_str()), (status, Some(code)), "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
}

#[tokio::test]
async fn without_a_valid_token_key_vault_answers_the_bearer_challenge() {
    let setup = Setup::new();
    setup.standin.grant("kv1", CLIENT);
    setup.standin.set_secret("kv1", "s", "v", None);
    let challenge = format!(
        "Bearer authorization=\"{}{TENANT}\", resource=\"https://vault.azure.net\"",
        setup.standin.authority_host()
    );
    for token in [None, Some("garbage"), Some("eyJhbGciOiJIUzI1NiJ9.e30.c2ln")] {
        let answer = setup.get("kv1", "secrets/s", API, token).await;
        assert_kv_error(&answer, 401, "Unauthorized");
        assert_eq!(answer.1.get("www-authenticate").and_then(|v| v.to_str().ok()), Some(challenge.as_str()));
    }
    let token = setup.access_token().await;
    assert_eq!(setup.get("kv1", "secrets/s", API, Some(&token)).await.0, 200);
    setup.standin.expire_tokens();
    let answer = setup.get("kv1", "secrets/s", API, Some(&token)).await;
    assert_kv_error(&answer, 401, "Unauthorized");
    assert!(answer.1.contains_key("www-authenticate"));
    let statuses: Vec<(u16, Option<String>)> =
        setup.standin.calls_to(AzureApi::KeyVault).into_iter().map(|c| (c.status, c.client_id)).collect();
    assert_eq!(statuses, [(401, None), (401, None), (401, None), (200, Some(CLIENT.to_owned())), (401, None)]);
}

#[tokio::test]
async fn the_api_version_is_required_and_must_be_recent() {
    let setup = Setup::new();
    setup.standin.grant("kv1", CLIENT);
    setup.standin.set_secret("kv1", "s", "v", None);
    let token = setup.access_token().await;
    assert_kv_error(&setup.get("kv1", "secrets/s", "", Some(&token)).await, 400, "BadParameter");
    let old = setup.get("kv1", "secrets/s", "api-version=2016-10-01", Some(&token)).await;
    assert_kv_error(&old, 400, "BadParameter");
    assert!(old.2["error"]["message"].as_str().is_some_and(|m| m.contains("2016-10-01")));
    for version in ["7.4", "7.5", "7.6", "2025-07-01"] {
        let answer = setup.get("kv1", "secrets/s", &format!("api-version={version}"), Some(&token)).await;
        assert_eq!(answer.0, 200, "{version}: {}", answer.2);
    }
}

#[tokio::test]
async fn a_client_without_an_access_policy_is_forbidden() {
    let setup = Setup::new();
    setup.standin.set_secret("kv1", "s", "v", None);
    setup.standin.grant("kv2", CLIENT);
    let token = setup.access_token().await;
    for (path, permission) in [
        ("secrets/s", "secrets get"),
        ("secrets/s/versions", "secrets list"),
        ("keys/k", "keys get"),
        ("certificates/c", "certificates get"),
    ] {
        let answer = setup.get("kv1", path, API, Some(&token)).await;
        assert_kv_error(&answer, 403, "Forbidden");
        assert_eq!(answer.2["error"]["innererror"]["code"], "AccessDenied");
        let message = answer.2["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("appid={CLIENT};"))
                && message.contains(&format!("does not have {permission} permission")),
            "{message}"
        );
    }
    // The grant on kv2 reaches only kv2, where the object does not exist.
    assert_kv_error(&setup.get("kv2", "secrets/s", API, Some(&token)).await, 404, "SecretNotFound");
}

#[tokio::test]
async fn missing_objects_get_key_vaults_not_found_shapes() {
    let setup = Setup::new();
    setup.standin.grant("kv1", CLIENT);
    let version = setup.standin.set_secret("kv1", "there", "v", None);
    let token = setup.access_token().await;
    for (path, code, message) in [
        ("secrets/nope", "SecretNotFound", "A secret with (name/id) nope was not found in this key vault."),
        ("keys/nope", "KeyNotFound", "A key with (name/id) nope was not found in this key vault."),
        (
            "certificates/nope",
            "CertificateNotFound",
            "A certificate with (name/id) nope was not found in this key vault.",
        ),
        ("secrets/nope/versions", "SecretNotFound", "A secret with (name/id) nope was not found"),
        (
            "secrets/there/00000000000000000000000000000000",
            "SecretNotFound",
            "(name/id) there/00000000000000000000000000000000",
        ),
    ] {
        let answer = setup.get("kv1", path, API, Some(&token)).await;
        assert_kv_error(&answer, 404, code);
        assert!(answer.2["error"]["message"].as_str().is_some_and(|m| m.contains(message)), "{}", answer.2);
    }
    assert_eq!(setup.get("kv1", &format!("secrets/there/{version}"), API, Some(&token)).await.0, 200);
}

#[tokio::test]
async fn secrets_have_versions_the_newest_current_and_listed_in_pages() {
    let setup = Setup::new();
    setup.standin.grant("kv1", CLIENT);
    let versions: Vec<String> = (1..=3)
        .map(|i| setup.standin.set_secret("kv1", "Rotated", &format!("value-{i}"), Some("text/plain")))
        .collect();
    assert!(
        versions.iter().all(|v| v.len() == 32 && v.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()))
    );
    let token = setup.access_token().await;
    let base = setup.standin.vault_url("kv1");

    // Names are case-insensitive; ids keep the name as created.
    let (status, _, body) = setup.get("kv1", "secrets/rotated", API, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["value"], "value-3");
    assert_eq!(body["contentType"], "text/plain");
    assert_eq!(body["id"], format!("{base}/secrets/Rotated/{}", versions[2]));
    assert_eq!(body["attributes"]["enabled"], true);
    assert_eq!(body["attributes"]["recoveryLevel"], "Recoverable+Purgeable");
    assert!(
        body["attributes"]["created"].as_i64().is_some() && body.get("kid").is_none() && body.get("managed").is_none()
    );
    let (_, _, first) = setup.get("kv1", &format!("secrets/Rotated/{}", versions[0]), API, Some(&token)).await;
    assert_eq!(first["value"], "value-1");

    let (status, _, page) =
        setup.get("kv1", "secrets/Rotated/versions", &format!("{API}&maxresults=2"), Some(&token)).await;
    assert_eq!(status, 200, "{page}");
    let ids = |page: &Value| -> Vec<String> {
        page["value"].as_array().expect("value").iter().map(|i| i["id"].as_str().expect("id").to_owned()).collect()
    };
    assert_eq!(
        ids(&page),
        [format!("{base}/secrets/Rotated/{}", versions[0]), format!("{base}/secrets/Rotated/{}", versions[1])]
    );
    assert!(page["value"][0].get("value").is_none(), "listings carry no values");
    let next = page["nextLink"].as_str().expect("nextLink").to_owned();
    assert!(next.starts_with(&format!("{base}/secrets/Rotated/versions?api-version=7.4&$skiptoken=")), "{next}");
    let (status, _, last) = setup.get_url(&next, Some(&token)).await;
    assert_eq!(status, 200, "{last}");
    assert_eq!(ids(&last), [format!("{base}/secrets/Rotated/{}", versions[2])]);
    assert!(last["nextLink"].is_null());
    let (_, _, all) = setup.get("kv1", "secrets/Rotated/versions", API, Some(&token)).await;
    assert_eq!(ids(&all).len(), 3);
    assert!(all["nextLink"].is_null());

    for query in ["maxresults=0", "maxresults=26", "maxresults=x", "$skiptoken=bogus"] {
        let answer = setup.get("kv1", "secrets/Rotated/versions", &format!("{API}&{query}"), Some(&token)).await;
        assert_kv_error(&answer, 400, "BadParameter");
    }
    let paths: Vec<String> = setup.standin.calls_to(AzureApi::KeyVault).into_iter().map(|c| c.path).collect();
    assert!(paths.iter().all(|p| !p.contains('?')), "{paths:?}");
}

#[tokio::test]
async fn a_disabled_version_is_forbidden_and_listed_as_disabled() {
    let setup = Setup::new();
    setup.standin.grant("kv1", CLIENT);
    let old = setup.standin.set_secret("kv1", "s", "old", None);
    let new = setup.standin.set_secret("kv1", "s", "new", None);
    let key = TestKey::ec_p256().expect("key");
    let key_version = setup.standin.set_key("kv1", "k", &key);
    setup.standin.disable("kv1", "s", &new);
    setup.standin.disable("kv1", "k", &key_version);
    let token = setup.access_token().await;
    for (path, inner, message) in [
        ("secrets/s".to_owned(), "SecretDisabled", "Operation get is not allowed on a disabled secret."),
        (format!("secrets/s/{new}"), "SecretDisabled", "Operation get is not allowed on a disabled secret."),
        ("keys/k".to_owned(), "KeyDisabled", "Operation get is not allowed on a disabled key."),
    ] {
        let answer = setup.get("kv1", &path, API, Some(&token)).await;
        assert_kv_error(&answer, 403, "Forbidden");
        assert_eq!(
            (answer.2["error"]["innererror"]["code"].as_str(), answer.2["error"]["message"].as_str()),
            (Some(inner), Some(message))
        );
    }
    let (status, _, body) = setup.get("kv1", &format!("secrets/s/{old}"), API, Some(&token)).await;
    assert_eq!((status, body["value"].as_str()), (200, Some("old")));
    let (_, _, list) = setup.get("kv1", "secrets/s/versions", API, Some(&token)).await;
    let enabled: Vec<bool> =
        list["value"].as_array().expect("value").iter().map(|i| i["attributes"]["enabled"] == true).collect();
    assert_eq!(enabled, [true, false]);
}

#[tokio::test]
async fn keys_are_served_as_public_jwks() {
    let setup = Setup::new();
    setup.standin.grant("kv1", CLIENT);
    let rsa = TestKey::rsa().expect("rsa");
    let ec = TestKey::ec_p256().expect("ec");
    let rsa_version = setup.standin.set_key("kv1", "signing", &rsa);
    setup.standin.set_key("kv1", "ec", &ec);
    let token = setup.access_token().await;
    let (status, _, body) = setup.get("kv1", "keys/signing", API, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let kid = format!("{}/keys/signing/{rsa_version}", setup.standin.vault_url("kv1"));
    assert_eq!((body["key"]["kid"].as_str(), body["key"]["kty"].as_str()), (Some(kid.as_str()), Some("RSA")));
    assert_eq!(body["key"]["e"], "AQAB");
    assert!(body["key"].get("d").is_none() && body["key"].get("p").is_none(), "no private parts");
    assert_eq!(body["key"], rsa.jwk().to_json(&kid));
    let (_, _, body) = setup.get("kv1", "keys/ec", API, Some(&token)).await;
    assert_eq!((body["key"]["kty"].as_str(), body["key"]["crv"].as_str()), (Some("EC"), Some("P-256")));
    assert_eq!(BASE64URL.decode(body["key"]["x"].as_str().expect("x")).expect("b64").len(), 32);
    let (_, _, list) = setup.get("kv1", "keys/ec/versions", API, Some(&token)).await;
    assert!(list["value"][0]["kid"].as_str().is_some_and(|k| k.contains("/keys/ec/")), "{list}");
    assert!(list["value"][0].get("key").is_none());
}

#[tokio::test]
async fn imported_certificates_have_a_certificate_a_secret_and_a_key() {
    let setup = Setup::new();
    setup.standin.grant("kv1", CLIENT);
    let cert = TestCertificate::generate("app.example").expect("certificate");
    assert_eq!(cert.chain_pem().len(), 3);
    assert_eq!(cert.chain_pem()[0], cert.leaf_pem());
    let pem_version = setup.standin.import_certificate("kv1", "tls", &cert, CertFormat::Pem);
    let pfx_version = setup.standin.import_certificate("kv1", "bundle", &cert, CertFormat::Pfx);
    let token = setup.access_token().await;
    let base = setup.standin.vault_url("kv1");

    let (status, _, body) = setup.get("kv1", "certificates/tls", API, Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], format!("{base}/certificates/tls/{pem_version}"));
    assert_eq!(body["kid"], format!("{base}/keys/tls/{pem_version}"));
    assert_eq!(body["sid"], format!("{base}/secrets/tls/{pem_version}"));
    let der = BASE64.decode(body["cer"].as_str().expect("cer")).expect("base64");
    assert_eq!(der, cert.leaf_der());
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("leaf.der"), &der).expect("write");
    let digest = material::openssl_in(dir.path(), &["dgst", "-sha1", "-binary", "leaf.der"]).expect("sha1");
    assert_eq!(body["x5t"], BASE64URL.encode(digest));
    assert_eq!(body["policy"]["secret_props"]["contentType"], "application/x-pem-file");
    assert!(body["attributes"]["exp"].as_i64() > body["attributes"]["nbf"].as_i64());

    let (_, _, secret) = setup.get("kv1", "secrets/tls", API, Some(&token)).await;
    assert_eq!(secret["contentType"], "application/x-pem-file");
    assert_eq!(secret["managed"], true);
    assert_eq!(secret["kid"], format!("{base}/keys/tls/{pem_version}"));
    assert_eq!(
        secret["value"].as_str(),
        Some(format!("{}{}", cert.private_key_pem(), cert.chain_pem().concat()).as_str())
    );
    let (_, _, key) = setup.get("kv1", "keys/tls", API, Some(&token)).await;
    assert_eq!((key["managed"].as_bool(), key["key"]["kty"].as_str()), (Some(true), Some("RSA")));
    assert_eq!(key["key"], cert.key().jwk().to_json(&format!("{base}/keys/tls/{pem_version}")));

    let (_, _, secret) = setup.get("kv1", "secrets/bundle", API, Some(&token)).await;
    assert_eq!(secret["contentType"], "application/x-pkcs12");
    assert_eq!(secret["id"], format!("{base}/secrets/bundle/{pfx_version}"));
    let pfx = BASE64.decode(secret["value"].as_str().expect("value")).expect("base64");
    let store =
        p12_keystore::KeyStore::from_pkcs12(&pfx, "", p12_keystore::Pkcs12ImportPolicy::Relaxed).expect("PKCS#12");
    let (_, chain) = store.private_key_chain().expect("a key with its chain");
    assert_eq!(chain.certs().len(), 3);
    assert_eq!(chain.certs()[0].as_der(), cert.leaf_der());
    let (_, _, certificate) = setup.get("kv1", "certificates/bundle", API, Some(&token)).await;
    assert_eq!(certificate["policy"]["secret_props"]["contentType"], "application/x-pkcs12");

    // Disabling a certificate's version disables its key and secret; the certificate itself stays readable.
    setup.standin.disable("kv1", "tls", &pem_version);
    assert_kv_error(&setup.get("kv1", "secrets/tls", API, Some(&token)).await, 403, "Forbidden");
    assert_kv_error(&setup.get("kv1", "keys/tls", API, Some(&token)).await, 403, "Forbidden");
    let (status, _, body) = setup.get("kv1", "certificates/tls", API, Some(&token)).await;
    assert_eq!((status, body["attributes"]["enabled"].as_bool()), (200, Some(false)));
}

#[tokio::test]
async fn key_vault_can_be_throttled_then_serves() {
    let setup = Setup::new();
    setup.standin.grant("kv1", CLIENT);
    setup.standin.set_secret("kv1", "s", "v", None);
    let token = setup.access_token().await;
    setup.standin.throttle_keyvault(2, 5);
    for _ in 0..2 {
        let answer = setup.get("kv1", "secrets/s", API, Some(&token)).await;
        assert_kv_error(&answer, 429, "Throttled");
        assert_eq!(answer.1.get("retry-after").and_then(|v| v.to_str().ok()), Some("5"));
    }
    assert_eq!(setup.get("kv1", "secrets/s", API, Some(&token)).await.0, 200);
    setup.standin.unavailable_keyvault(1);
    let answer = setup.get("kv1", "secrets/s", API, Some(&token)).await;
    assert_kv_error(&answer, 503, "ServiceUnavailable");
    assert!(!answer.1.contains_key("retry-after"));
    assert_eq!(setup.get("kv1", "secrets/s", API, Some(&token)).await.0, 200);
    let statuses: Vec<u16> = setup.standin.calls_to(AzureApi::KeyVault).iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 429, 200, 503, 200]);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_refused() {
    let setup = Setup::new();
    setup.standin.grant("kv1", CLIENT);
    let token = setup.access_token().await;
    for path in ["vaults-and-more", "storage/x", "secrets", "secrets/a/b/c"] {
        assert_kv_error(&setup.get("kv1", path, API, Some(&token)).await, 404, "NotFound");
    }
    let url = format!("{}/secrets/s?{API}", setup.standin.vault_url("kv1"));
    let response = setup.http.put(url).bearer_auth(&token).body("{}").send().await.expect("put");
    assert_eq!(response.status().as_u16(), 405);
}
