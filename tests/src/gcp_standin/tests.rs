use super::*;
use crate::{PodFixture, TokenOptions};

const POOL: &str = "p1.svc.id.goog";

async fn exchange(standin: &GcpStandIn, audience: &str, jwt: &str) -> (u16, Value) {
    let body = json!({
        "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
        "audience": audience,
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token",
        "subjectToken": jwt,
        "subjectTokenType": "urn:ietf:params:oauth:token-type:jwt",
    });
    let response = reqwest::Client::new().post(format!("{}/v1/token", standin.url())).json(&body).send().await.expect("sts");
    (response.status().as_u16(), response.json().await.expect("json"))
}

async fn generate(standin: &GcpStandIn, email: &str, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken", standin.url()))
        .bearer_auth(token)
        .json(&json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"]}))
        .send()
        .await
        .expect("iam");
    (response.status().as_u16(), response.json().await.expect("json"))
}

#[tokio::test]
async fn sts_checks_signature_issuer_and_audiences() {
    let issuer = TokenIssuer::new().expect("issuer");
    let standin = GcpStandIn::start(&issuer, POOL, "http://127.0.0.1:9", "http://127.0.0.1:9").expect("stand-in");
    let pod = PodFixture::new("team-a", "app");
    let good = issuer.token(&pod, POOL).expect("token");
    let (status, body) = exchange(&standin, &standin.sts_audience(), good.jwt()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].as_str().is_some_and(|t| t.starts_with("fed.")));

    // Another key, another audience in the token, another audience in the request, an expired token.
    let foreign = TokenIssuer::new().expect("foreign").token(&pod, POOL).expect("token");
    let wrong_aud = issuer.token(&pod, "vault").expect("token");
    let expired = issuer
        .token_with(&pod, &TokenOptions::new([POOL]).issued_ago(Duration::from_secs(7200)).lifetime(Duration::from_secs(600)))
        .expect("token");
    for (jwt, audience) in [
        (foreign.jwt(), standin.sts_audience()),
        (wrong_aud.jwt(), standin.sts_audience()),
        (good.jwt(), format!("identitynamespace:{POOL}:https://elsewhere")),
        (expired.jwt(), standin.sts_audience()),
        ("not-a-jwt", standin.sts_audience()),
    ] {
        let (status, body) = exchange(&standin, &audience, jwt).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    }
    standin.refuse("team-a", "app");
    let (status, body) = exchange(&standin, &standin.sts_audience(), good.jwt()).await;
    assert_eq!((status, body["error"]["status"].as_str()), (403, Some("PERMISSION_DENIED")));
    let sts = standin.calls_to(GcpApi::Sts);
    assert_eq!(sts.len(), 7);
    assert_eq!(sts.iter().filter(|c| c.status == 200).count(), 1);
    assert_eq!(sts[0].principal.as_deref(), Some("team-a/app"));
}

#[tokio::test]
async fn impersonation_needs_a_binding_and_a_federated_token() {
    let issuer = TokenIssuer::new().expect("issuer");
    let standin = GcpStandIn::start(&issuer, POOL, "http://127.0.0.1:9", "http://127.0.0.1:9").expect("stand-in");
    let pod = PodFixture::new("team-a", "app");
    let (_, body) = exchange(&standin, &standin.sts_audience(), issuer.token(&pod, POOL).expect("token").jwt()).await;
    let federated = body["access_token"].as_str().expect("token").to_owned();
    let email = "reader@p1.iam.gserviceaccount.com";
    let (status, body) = generate(&standin, email, &federated).await;
    assert_eq!((status, body["error"]["status"].as_str()), (403, Some("PERMISSION_DENIED")));
    standin.bind(email, "team-a", "app");
    let (status, body) = generate(&standin, email, &federated).await;
    assert_eq!(status, 200, "{body}");
    let impersonated = body["accessToken"].as_str().expect("token").to_owned();
    assert!(body["expireTime"].as_str().is_some());
    // An impersonated token cannot impersonate again, nor can an unknown one.
    for token in [impersonated.as_str(), "fed.made-up"] {
        assert_eq!(generate(&standin, email, token).await.0, 401);
    }
    let principals: Vec<_> = standin.calls_to(GcpApi::IamCredentials).into_iter().map(|c| (c.principal, c.status)).collect();
    assert_eq!(principals[1], (Some(email.to_owned()), 200));
}

#[tokio::test]
async fn secret_manager_needs_a_handed_out_token() {
    let issuer = TokenIssuer::new().expect("issuer");
    let standin = GcpStandIn::start(&issuer, POOL, "http://127.0.0.1:9", "http://127.0.0.1:9").expect("stand-in");
    let response = reqwest::Client::new()
        .get(format!("{}/v1/projects/p1/secrets/db/versions/1:access", standin.url()))
        .bearer_auth("ya29.made-up")
        .send()
        .await
        .expect("access");
    assert_eq!(response.status().as_u16(), 401);
}

#[test]
fn checksum_vectors() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(b""), 0);
}

#[test]
fn routes_regional_paths() {
    let (secret, regional, upstream) = route("/v1/projects/p1/locations/us-east1/secrets/db/versions/2:access").expect("route");
    assert_eq!(secret, "projects/p1/locations/us-east1/secrets/db");
    assert_eq!(regional, Some(("p1".to_owned(), "us-east1".to_owned())));
    assert_eq!(upstream, "/v1/projects/p1/secrets/db/versions/2:access");
    assert!(route("/v1/projects/p1/other").is_none());
}
