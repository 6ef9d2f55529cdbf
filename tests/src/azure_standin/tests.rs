//! The stand-in's own tests: the token endpoint's checks and refusals, HTTPS, and (in `keyvault`) Key Vault.

mod keyvault;

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use super::*;
use crate::{PodFixture, TokenOptions};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A started stand-in with the app `CLIENT` federated for `team-a/app`, and the issuer and pod to mint tokens.
struct Setup {
    issuer: TokenIssuer,
    standin: AzureStandIn,
    pod: PodFixture,
    http: reqwest::Client,
}

impl Setup {
    fn new() -> Self {
        let issuer = TokenIssuer::new().expect("issuer");
        let standin = AzureStandIn::start(&issuer, TENANT).expect("stand-in");
        standin.federate(CLIENT, "team-a", "app");
        let http = trusting(&standin);
        Self { issuer, standin, pod: PodFixture::new("team-a", "app"), http }
    }

    fn assertion(&self) -> String {
        self.issuer.token(&self.pod, AZURE_TOKEN_AUDIENCE).expect("token").jwt().to_owned()
    }

    /// Posts the client-credentials grant with `assertion` to the stand-in's tenant.
    async fn exchange(&self, client_id: &str, scope: &str, assertion: &str) -> (u16, Value) {
        let fields = [
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("scope", scope),
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion),
        ];
        self.post_form(&self.standin.token_url(), &fields).await
    }

    async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> (u16, Value) {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let response = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("token request");
        (response.status().as_u16(), response.json().await.expect("json"))
    }

    /// A Key Vault access token for `CLIENT`.
    async fn access_token(&self) -> String {
        let (status, body) = self.exchange(CLIENT, KEYVAULT_SCOPE, &self.assertion()).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().expect("access token").to_owned()
    }
}

/// A client that trusts only the stand-in's CA.
fn trusting(standin: &AzureStandIn) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(standin.ca_pem().as_bytes()).expect("CA");
    reqwest::Client::builder().no_proxy().tls_certs_only([ca]).build().expect("client")
}

/// Asserts an Entra error: status, `error`, the one `AADSTS` code, and the trace fields Entra always sends.
#[track_caller]
fn assert_entra_error(answer: &(u16, Value), status: u16, error: &str, code: u64) {
    let (got, body) = answer;
    assert_eq!((*got, body["error"].as_str()), (status, Some(error)), "{body}");
    assert_eq!(body["error_codes"], json!([code]), "{body}");
    let description = body["error_description"].as_str().expect("error_description");
    assert!(description.starts_with(&format!("AADSTS{code}: ")), "{description}");
    for field in ["trace_id", "correlation_id", "timestamp"] {
        assert!(body[field].as_str().is_some_and(|v| !v.is_empty()), "{field} missing: {body}");
        assert!(description.contains(body[field].as_str().unwrap_or_default()), "{field} not in the description");
    }
}

/// An unsigned token with `claims`, as a forger writes one.
fn unsigned(claims: &Value) -> String {
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    format!("{}.{}.", enc.encode(json!({"alg": "RS256", "typ": "JWT"}).to_string()), enc.encode(claims.to_string()))
}

#[tokio::test]
async fn a_federated_service_account_token_buys_a_key_vault_token() {
    let setup = Setup::new();
    let (status, body) = setup.exchange(CLIENT, KEYVAULT_SCOPE, &setup.assertion()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    let token = body["access_token"].as_str().expect("token");
    assert_eq!(setup.standin.issued_tokens(), [token.to_owned()]);
    let calls = setup.standin.calls_to(AzureApi::Token);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].method, "POST");
    assert_eq!(calls[0].path, format!("/{TENANT}/oauth2/v2.0/token"));
    assert_eq!(
        (calls[0].tenant.as_deref(), calls[0].client_id.as_deref(), calls[0].status),
        (Some(TENANT), Some(CLIENT), 200)
    );
    assert_eq!(
        setup.standin.authority_host(),
        setup.standin.token_url().replace(&format!("{TENANT}/oauth2/v2.0/token"), "")
    );
}

#[tokio::test]
async fn assertions_are_checked_as_entra_checks_federated_credentials() {
    let setup = Setup::new();
    let pod = &setup.pod;
    let options = TokenOptions::new([AZURE_TOKEN_AUDIENCE]);
    let issuer = &setup.issuer;
    let foreign = TokenIssuer::new().expect("foreign").token(pod, AZURE_TOKEN_AUDIENCE).expect("token");
    let impostor =
        TokenIssuer::with_key_id(issuer.key_id()).expect("impostor").token(pod, AZURE_TOKEN_AUDIENCE).expect("token");
    let unsigned_by_issuer = issuer.unsigned_token(pod, &options).expect("token");
    let expired = issuer
        .token_with(pod, &options.clone().issued_ago(Duration::from_secs(7200)).lifetime(Duration::from_secs(3600)))
        .expect("token");
    let early = issuer.token_with(pod, &options.clone().not_before_in(Duration::from_secs(3600))).expect("token");
    let wrong_audience = issuer.token(pod, "api://SomethingElse").expect("token");
    let stranger = issuer.token(&PodFixture::new("team-a", "stranger"), AZURE_TOKEN_AUDIENCE).expect("token");
    let other_namespace = issuer.token(&PodFixture::new("team-b", "app"), AZURE_TOKEN_AUDIENCE).expect("token");
    let foreign_issuer = unsigned(&json!({
        "iss": "https://oidc.elsewhere.example", "sub": pod.subject(), "aud": [AZURE_TOKEN_AUDIENCE], "exp": now() + 600,
    }));
    let cases: Vec<(&str, String, u16, &str, u64)> = vec![
        ("foreign key", foreign.jwt().to_owned(), 401, "invalid_client", 700027),
        ("impostor key under the issuer's kid", impostor.jwt().to_owned(), 401, "invalid_client", 700027),
        ("alg none", unsigned_by_issuer.jwt().to_owned(), 401, "invalid_client", 700027),
        ("expired", expired.jwt().to_owned(), 401, "invalid_client", 700024),
        ("not yet valid", early.jwt().to_owned(), 401, "invalid_client", 700024),
        ("wrong audience", wrong_audience.jwt().to_owned(), 400, "invalid_request", 700212),
        ("other service account", stranger.jwt().to_owned(), 400, "invalid_request", 700213),
        ("other namespace", other_namespace.jwt().to_owned(), 400, "invalid_request", 700213),
        ("other issuer", foreign_issuer, 400, "invalid_request", 700211),
        ("not a JWT", "not-a-jwt".to_owned(), 400, "invalid_request", 50027),
    ];
    for (name, assertion, status, error, code) in &cases {
        let answer = setup.exchange(CLIENT, KEYVAULT_SCOPE, assertion).await;
        eprintln!("{name}: {}", answer.1["error_description"]);
        assert_entra_error(&answer, *status, error, *code);
    }
    let description = setup.exchange(CLIENT, KEYVAULT_SCOPE, stranger.jwt()).await.1["error_description"].to_string();
    assert!(description.contains("'system:serviceaccount:team-a:stranger'"), "{description}");
    let description = setup.exchange(CLIENT, KEYVAULT_SCOPE, impostor.jwt()).await.1["error_description"].to_string();
    assert!(description.contains("did not match"), "{description}");
    let description = setup.exchange(CLIENT, KEYVAULT_SCOPE, foreign.jwt()).await.1["error_description"].to_string();
    assert!(description.contains("The key was not found"), "{description}");
    assert!(setup.standin.issued_tokens().is_empty());
    let refused = setup.standin.calls_to(AzureApi::Token);
    assert_eq!(refused.len(), cases.len() + 3);
    assert!(refused.iter().all(|c| c.status >= 400 && c.client_id.as_deref() == Some(CLIENT)));
}

#[tokio::test]
async fn requests_are_checked_before_the_assertion() {
    let setup = Setup::new();
    let assertion = setup.assertion();
    let answer = setup.exchange("99999999-0000-0000-0000-000000000000", KEYVAULT_SCOPE, &assertion).await;
    assert_entra_error(&answer, 400, "unauthorized_client", 700016);
    setup.standin.register_client("22222222-0000-0000-0000-000000000000");
    let answer = setup.exchange("22222222-0000-0000-0000-000000000000", KEYVAULT_SCOPE, &assertion).await;
    assert_entra_error(&answer, 400, "invalid_request", 70021);
    assert_entra_error(
        &setup.exchange(CLIENT, "https://vault.azure.net", &assertion).await,
        400,
        "invalid_scope",
        1002012,
    );
    assert_entra_error(&setup.exchange(CLIENT, "openid profile", &assertion).await, 400, "invalid_scope", 1002012);
    let answer = setup.exchange(CLIENT, "https://storage.azure.com/.default", &assertion).await;
    assert_entra_error(&answer, 400, "invalid_resource", 500011);

    let other_tenant = setup.standin.token_url().replace(TENANT, "00000000-0000-0000-0000-000000000000");
    let full = [
        ("grant_type", "client_credentials"),
        ("client_id", CLIENT),
        ("scope", KEYVAULT_SCOPE),
        ("client_assertion_type", JWT_BEARER),
        ("client_assertion", assertion.as_str()),
    ];
    assert_entra_error(&setup.post_form(&other_tenant, &full).await, 400, "invalid_request", 90002);
    let url = setup.standin.token_url();
    assert_entra_error(&setup.post_form(&url, &full[1..]).await, 400, "invalid_request", 900144);
    let mut wrong_grant = full;
    wrong_grant[0] = ("grant_type", "password");
    assert_entra_error(&setup.post_form(&url, &wrong_grant).await, 400, "unsupported_grant_type", 70003);
    assert_entra_error(&setup.post_form(&url, &full[..3]).await, 401, "invalid_client", 7000218);
    let mut wrong_type = full;
    wrong_type[3] = ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer");
    assert_entra_error(&setup.post_form(&url, &wrong_type).await, 400, "invalid_request", 50027);
    // A JSON body is no form: Entra finds no grant_type.
    let response = setup.http.post(&url).json(&json!({"grant_type": "client_credentials"})).send().await.expect("post");
    let answer = (response.status().as_u16(), response.json::<Value>().await.expect("json"));
    assert_entra_error(&answer, 400, "invalid_request", 900144);
    let response = setup.http.get(&url).send().await.expect("get");
    let answer = (response.status().as_u16(), response.json::<Value>().await.expect("json"));
    assert_entra_error(&answer, 400, "invalid_request", 900561);
    // Oversized bodies are refused before they are read.
    let huge = format!("client_assertion={}", "a".repeat(BODY_LIMIT));
    let response = setup.http.post(&url).header("content-type", "application/x-www-form-urlencoded").body(huge);
    assert_eq!(response.send().await.expect("post").status().as_u16(), 413);
    assert!(setup.standin.issued_tokens().is_empty());
}

#[tokio::test]
async fn a_client_secret_is_a_service_principals_credential() {
    let setup = Setup::new();
    let url = setup.standin.token_url();
    let with_secret = |secret: &'static str| {
        [("grant_type", "client_credentials"), ("client_id", CLIENT), ("scope", KEYVAULT_SCOPE), ("client_secret", secret)]
    };
    // The app has no secret yet: any secret is invalid.
    assert_entra_error(&setup.post_form(&url, &with_secret("s3cret")).await, 401, "invalid_client", 7000215);
    setup.standin.add_client_secret(CLIENT, "s3cret");
    assert_entra_error(&setup.post_form(&url, &with_secret("other")).await, 401, "invalid_client", 7000215);
    let (status, body) = setup.post_form(&url, &with_secret("s3cret")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    assert!(!body.to_string().contains("s3cret"));
    // Both credentials at once is refused.
    let assertion = setup.assertion();
    let mut both = with_secret("s3cret").to_vec();
    both.extend([("client_assertion_type", JWT_BEARER), ("client_assertion", assertion.as_str())]);
    assert_entra_error(&setup.post_form(&url, &both).await, 400, "invalid_request", 90014);
    assert_eq!(setup.standin.issued_tokens().len(), 1);
}

#[tokio::test]
async fn token_requests_can_be_throttled_then_served() {
    let setup = Setup::new();
    setup.standin.throttle_token(2, 3);
    for _ in 0..2 {
        let response = setup
            .http
            .post(setup.standin.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .expect("post");
        assert_eq!(response.status().as_u16(), 429);
        assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("3"));
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"], "temporarily_unavailable");
    }
    setup.access_token().await;
    setup.standin.unavailable_token(1);
    let answer = setup.exchange(CLIENT, KEYVAULT_SCOPE, &setup.assertion()).await;
    assert_entra_error(&answer, 503, "temporarily_unavailable", 90033);
    setup.access_token().await;
    let statuses: Vec<u16> = setup.standin.calls_to(AzureApi::Token).iter().map(|c| c.status).collect();
    assert_eq!(statuses, [429, 429, 200, 503, 200]);
}

#[tokio::test]
async fn only_https_with_the_stand_ins_ca_gets_through() {
    let setup = Setup::new();
    assert!(setup.standin.authority_host().starts_with("https://127.0.0.1:"));
    let pem = std::fs::read_to_string(setup.standin.ca_file()).expect("CA file");
    assert_eq!(pem, setup.standin.ca_pem());
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));

    // The public roots do not include the stand-in's CA.
    let stranger = reqwest::Client::builder().no_proxy().build().expect("client");
    let error = stranger.get(setup.standin.vault_url("kv1")).send().await.expect_err("untrusted server");
    assert!(error.is_connect(), "{error:?}");
    // Nor does plain HTTP reach anything.
    let plain = setup.standin.authority_host().replace("https://", "http://");
    let plain_answer = stranger.get(plain).send().await;
    assert!(
        plain_answer.is_err() || plain_answer.is_ok_and(|r| r.status().as_u16() == 400 || r.status().is_server_error())
    );
    // `localhost` is in the certificate as well as 127.0.0.1.
    let by_name = setup.standin.token_url().replace("127.0.0.1", "localhost");
    let response = setup.http.get(by_name).send().await.expect("trusted by name");
    assert_eq!(response.status().as_u16(), 400);
    assert!(setup.standin.calls().iter().all(|c| c.method == "GET" && c.status == 400));
}

#[test]
fn test_keys_give_spki_pem_and_jwks_of_the_same_key() {
    for key in [TestKey::rsa().expect("rsa"), TestKey::ec_p256().expect("ec")] {
        let pem = key.public_key_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert!(key.private_key_pem().starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let jwk: jsonwebtoken::jwk::Jwk =
            serde_json::from_value(key.jwk().to_json("https://example/keys/k/0")).expect("a JWK jsonwebtoken reads");
        let (algorithm, encoding) = match key.jwk() {
            material::PublicJwk::Rsa { .. } => {
                (Algorithm::RS256, EncodingKey::from_rsa_pem(key.private_key_pem().as_bytes()).expect("rsa key"))
            }
            material::PublicJwk::Ec { .. } => {
                (Algorithm::ES256, EncodingKey::from_ec_pem(key.private_key_pem().as_bytes()).expect("ec key"))
            }
        };
        let signed = jsonwebtoken::encode(&Header::new(algorithm), &json!({"sub": "x"}), &encoding).expect("sign");
        let mut validation = Validation::new(algorithm);
        validation.required_spec_claims.clear();
        let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
        jsonwebtoken::decode::<Value>(&signed, &decoding, &validation).expect("the JWK verifies the key's signature");
    }
}
