//! Entra ID's v2.0 token endpoint for the stand-in: the client-credentials grant with a federated client assertion
//! (a Kubernetes service-account token), checked in the order Entra checks it, each refusal with its `AADSTS` code:
//! tenant, grant type, client, scope, then the assertion (issuer, signature, lifetime, audience, subject).

use std::collections::BTreeMap;

use axum::http::{HeaderMap, Method, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64URL;
use jsonwebtoken::{Algorithm, EncodingKey, Header, Validation};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{AZURE_TOKEN_AUDIENCE, AccessToken, AzureApi, KEYVAULT_RESOURCE, KEYVAULT_SCOPE, Reply, Shared, now};
use crate::KUBERNETES_ISSUER;

/// `expires_in` of the access tokens, in seconds: Entra's usual hour minus one second.
const TOKEN_LIFETIME_SECS: i64 = 3599;
/// Clock skew Entra allows on an assertion's `nbf`.
const CLOCK_SKEW_SECS: i64 = 300;
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An Entra error response: `error`, `error_description` (`AADSTSnnnn: ...` with trace and correlation ids and
/// the time), `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`.
fn refuse(state: &Shared, status: StatusCode, error: &str, code: u32, description: &str) -> Reply {
    let trace_id = crate::pod::random_uid();
    let correlation_id = crate::pod::random_uid();
    let now = OffsetDateTime::now_utc();
    let timestamp = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let body = json!({
        "error": error,
        "error_description": format!(
            "AADSTS{code}: {description} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("{}/error?code={code}", state.base),
    });
    Reply::json(status, body)
}

fn missing(state: &Shared, parameter: &str) -> Reply {
    let description = format!("The request body must contain the following parameter: '{parameter}'.");
    refuse(state, StatusCode::BAD_REQUEST, "invalid_request", 900144, &description)
}

/// Paths the stand-in does not serve.
pub(super) fn not_found() -> Reply {
    Reply::json(StatusCode::NOT_FOUND, json!({"error": "not_found", "error_description": "No such endpoint."}))
}

/// The claims of an assertion, read before its signature is checked (as Entra reads `iss` to find the credential).
struct Unverified {
    iss: String,
    sub: String,
    aud: Vec<String>,
    exp: i64,
    nbf: Option<i64>,
}

fn read_unverified(jwt: &str) -> Option<Unverified> {
    let mut parts = jwt.split('.');
    let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let claims: Value = serde_json::from_slice(&BASE64URL.decode(payload).ok()?).ok()?;
    let aud = match &claims["aud"] {
        Value::String(one) => vec![one.clone()],
        Value::Array(many) => many.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    Some(Unverified {
        iss: claims["iss"].as_str()?.to_owned(),
        sub: claims["sub"].as_str()?.to_owned(),
        aud,
        exp: claims["exp"].as_i64()?,
        nbf: claims["nbf"].as_i64(),
    })
}

pub(super) fn token(state: &Shared, method: &Method, tenant: &str, headers: &HeaderMap, body: &[u8]) -> Reply {
    if let Some(fault) = state.take_fault(AzureApi::Token) {
        let reply = match fault.retry_after {
            Some(seconds) => refuse(
                state,
                fault.status,
                "temporarily_unavailable",
                90055,
                "There are too many incoming requests. Please try again later.",
            )
            .header(header::RETRY_AFTER, &seconds.to_string()),
            None => refuse(
                state,
                fault.status,
                "temporarily_unavailable",
                90033,
                "A transient error has occurred. Please try again.",
            ),
        };
        return reply.by(Some(tenant), None);
    }
    if method != Method::POST {
        let description = format!("The endpoint only accepts POST, OPTIONS requests. Received a {method} request.");
        return refuse(state, StatusCode::BAD_REQUEST, "invalid_request", 900561, &description).by(Some(tenant), None);
    }
    let form_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    let mut form = BTreeMap::new();
    if form_body {
        for (name, value) in form_urlencoded::parse(body) {
            form.entry(name.into_owned()).or_insert_with(|| value.into_owned());
        }
    }
    let client_id = form.get("client_id").cloned();
    let reply = exchange(state, tenant, &form);
    reply.by(Some(tenant), client_id.as_deref())
}

fn exchange(state: &Shared, tenant: &str, form: &BTreeMap<String, String>) -> Reply {
    if !tenant.eq_ignore_ascii_case(&state.tenant) {
        let description = format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
        );
        return refuse(state, StatusCode::BAD_REQUEST, "invalid_request", 90002, &description);
    }
    let Some(grant_type) = form.get("grant_type") else {
        return missing(state, "grant_type");
    };
    if grant_type != "client_credentials" {
        let description = format!("The app requested an unsupported grant type '{grant_type}'.");
        return refuse(state, StatusCode::BAD_REQUEST, "unsupported_grant_type", 70003, &description);
    }
    let Some(client_id) = form.get("client_id") else {
        return missing(state, "client_id");
    };
    let Some(scope) = form.get("scope") else {
        return missing(state, "scope");
    };
    let client =
        state.lock().clients.get(client_id).map(|c| (c.object_id.clone(), c.subjects.clone(), c.secrets.clone()));
    let Some((object_id, subjects, secrets)) = client else {
        let description = format!(
            "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
        );
        return refuse(state, StatusCode::BAD_REQUEST, "unauthorized_client", 700016, &description);
    };
    if scope != KEYVAULT_SCOPE {
        return match scope.strip_suffix("/.default") {
            Some(resource) if !resource.is_empty() && !scope.contains(' ') => {
                let description = format!(
                    "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant."
                );
                refuse(state, StatusCode::BAD_REQUEST, "invalid_resource", 500011, &description)
            }
            _ => {
                let description = format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                );
                refuse(state, StatusCode::BAD_REQUEST, "invalid_scope", 1002012, &description)
            }
        };
    }
    if let Some(secret) = form.get("client_secret") {
        if form.contains_key("client_assertion") {
            let description = "Only one type of client credential may be sent: 'client_assertion' or 'client_secret'.";
            return refuse(state, StatusCode::BAD_REQUEST, "invalid_request", 90014, description);
        }
        if !secrets.contains(secret) {
            let description = format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            );
            return refuse(state, StatusCode::UNAUTHORIZED, "invalid_client", 7000215, &description);
        }
        return issue(state, client_id, &object_id, now());
    }
    let (Some(assertion_type), Some(assertion)) = (form.get("client_assertion_type"), form.get("client_assertion"))
    else {
        let description =
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.";
        return refuse(state, StatusCode::UNAUTHORIZED, "invalid_client", 7000218, description);
    };
    if assertion_type != JWT_BEARER {
        let description = format!("The client assertion type '{assertion_type}' is not supported.");
        return refuse(state, StatusCode::BAD_REQUEST, "invalid_request", 50027, &description);
    }
    let Some(claims) = read_unverified(assertion) else {
        return refuse(state, StatusCode::BAD_REQUEST, "invalid_request", 50027, "JWT token is invalid or malformed.");
    };
    let audience = claims.aud.join(",");
    if subjects.is_empty() {
        let description = format!(
            "No matching federated identity record found for presented assertion. Assertion Issuer: '{}'. Assertion Subject: '{}'. Assertion Audience: '{audience}'.",
            claims.iss, claims.sub
        );
        return refuse(state, StatusCode::BAD_REQUEST, "invalid_request", 70021, &description);
    }
    if claims.iss != KUBERNETES_ISSUER {
        let description = format!(
            "No matching federated identity record found for presented assertion issuer '{}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
            claims.iss
        );
        return refuse(state, StatusCode::BAD_REQUEST, "invalid_request", 700211, &description);
    }
    if let Some(reason) = bad_signature(state, assertion) {
        let description = format!("Client assertion contains an invalid signature. [Reason - {reason}]");
        return refuse(state, StatusCode::UNAUTHORIZED, "invalid_client", 700027, &description);
    }
    let now = now();
    if now >= claims.exp || claims.nbf.is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECS) {
        let description = format!(
            "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .",
            rfc3339(now),
            claims.nbf.map_or_else(|| "unspecified".to_owned(), rfc3339),
            rfc3339(claims.exp)
        );
        return refuse(state, StatusCode::UNAUTHORIZED, "invalid_client", 700024, &description);
    }
    if !claims.aud.iter().any(|a| a == AZURE_TOKEN_AUDIENCE) {
        let description = format!(
            "No matching federated identity record found for presented assertion audience '{audience}'. Please note that the matching is done using a case-sensitive comparison. Check your federated identity credential Subject, Audience and Issuer against the presented assertion."
        );
        return refuse(state, StatusCode::BAD_REQUEST, "invalid_request", 700212, &description);
    }
    if !subjects.contains(&claims.sub) {
        let description = format!(
            "No matching federated identity record found for presented assertion subject '{}'. Please note that the matching is done using a case-sensitive comparison. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
            claims.sub
        );
        return refuse(state, StatusCode::BAD_REQUEST, "invalid_request", 700213, &description);
    }
    issue(state, client_id, &object_id, now)
}

/// The token answer for `client_id`, or a server error if none could be minted.
fn issue(state: &Shared, client_id: &str, object_id: &str, now: i64) -> Reply {
    match mint(state, client_id, object_id, now) {
        Some(access_token) => Reply::json(
            StatusCode::OK,
            json!({
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_SECS,
                "ext_expires_in": TOKEN_LIFETIME_SECS,
                "access_token": access_token,
            }),
        ),
        None => {
            refuse(state, StatusCode::INTERNAL_SERVER_ERROR, "server_error", 90100, "The token could not be issued.")
        }
    }
}

/// Why the assertion's signature does not verify against the cluster issuer's key, if it does not.
fn bad_signature(state: &Shared, assertion: &str) -> Option<&'static str> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let known_key =
        jsonwebtoken::decode_header(assertion).ok().and_then(|h| h.kid).is_some_and(|kid| kid == state.assertion_kid);
    match jsonwebtoken::decode::<Value>(assertion, &state.assertion_key, &validation) {
        Ok(_) => None,
        Err(_) if known_key => Some("The provided signature value did not match the expected signature value."),
        Err(_) => Some("The key was not found."),
    }
}

/// Signs and records an access token for Key Vault.
fn mint(state: &Shared, client_id: &str, object_id: &str, now: i64) -> Option<String> {
    let expires_at = now + TOKEN_LIFETIME_SECS;
    let claims = json!({
        "aud": KEYVAULT_RESOURCE,
        "iss": format!("https://sts.windows.net/{}/", state.tenant),
        "iat": now, "nbf": now, "exp": expires_at,
        "appid": client_id, "oid": object_id, "sub": object_id, "tid": state.tenant,
        "uti": crate::pod::random_uid(),
    });
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&state.token_secret))
            .ok()?;
    let record = AccessToken {
        tenant: state.tenant.clone(),
        client_id: client_id.to_owned(),
        object_id: object_id.to_owned(),
        expires_at,
    };
    state.lock().tokens.insert(token.clone(), record);
    Some(token)
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}
