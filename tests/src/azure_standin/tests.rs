use super::*;
use crate::PodFixture;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const CLIENT: &str = "11111111-2222-3333-4444-555555555555";

fn client(standin: &AzureStandIn) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(standin.ca_pem().as_bytes()).expect("CA");
    reqwest::Client::builder().no_proxy().tls_certs_only([ca]).build().expect("client")
}

fn form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

#[tokio::test]
async fn a_federated_token_reads_a_granted_secret() {
    let issuer = TokenIssuer::new().expect("issuer");
    let standin = AzureStandIn::start(&issuer, TENANT).expect("stand-in");
    let pod = PodFixture::new("team-a", "app");
    standin.federate(CLIENT, "team-a", "app");
    standin.grant("kv1", CLIENT);
    let version = standin.set_secret("kv1", "db-password", "s3cret", Some("text/plain"));
    let http = client(&standin);
    let assertion = issuer.token(&pod, AZURE_TOKEN_AUDIENCE).expect("token");
    let response = http
        .post(standin.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT),
            ("scope", KEYVAULT_SCOPE),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.jwt()),
        ]))
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let access = body["access_token"].as_str().expect("access token");
    let response = http
        .get(format!("{}/secrets/db-password?api-version=7.4", standin.vault_url("kv1")))
        .bearer_auth(access)
        .send()
        .await
        .expect("get secret");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["value"], "s3cret");
    assert_eq!(body["id"], format!("{}/secrets/db-password/{version}", standin.vault_url("kv1")));
}
