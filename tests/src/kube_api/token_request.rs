//! The `token` subresource of service accounts (TokenRequest API, `authentication.k8s.io/v1`): a JWT for the
//! service account, signed with the key the fake publishes at `/openid/v1/jwks`, bound to no object.
//!
//! As on the API server: the service account must exist (`404`), `expirationSeconds` must be at least ten
//! minutes (`422`), empty `audiences` mean the API server's own audience (the issuer), and the answer is the
//! TokenRequest with `status.token` and `status.expirationTimestamp` (`201`). A `boundObjectRef` is refused
//! (`422`): tokens bound to pods are what kubelet asks for, and the tests mint those with
//! [`TokenIssuer`](crate::TokenIssuer) directly.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::resources::KubeResource;
use super::store::{Failure, Store};
use crate::KUBERNETES_ISSUER;
use crate::pod::random_uid;
use crate::tokens::TokenIssuer;

/// The shortest lifetime the API server issues (`spec.expirationSeconds`).
const MIN_EXPIRATION_SECONDS: u64 = 600;
/// The lifetime when the request names none (the API server's default).
const DEFAULT_EXPIRATION_SECONDS: u64 = 3600;
/// The longest lifetime accepted (`2^32` seconds, as the API server validates).
const MAX_EXPIRATION_SECONDS: u64 = 1 << 32;

fn invalid(name: &str, field: &str, message: &str) -> Failure {
    Failure::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid",
        &format!("TokenRequest.authentication.k8s.io \"{name}\" is invalid: {field}: {message}"),
        Some(json!({
            "name": name,
            "group": "authentication.k8s.io",
            "kind": "TokenRequest",
            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}],
        })),
    )
}

/// Answers `POST .../serviceaccounts/<name>/token` with `body`, signing with `issuer`.
pub(crate) fn issue(
    store: &Store,
    issuer: &TokenIssuer,
    namespace: &str,
    name: &str,
    body: &Value,
) -> Result<Value, Failure> {
    let account = store
        .get(&KubeResource::SERVICE_ACCOUNTS, namespace, name)
        .ok_or_else(|| Failure::not_found(&KubeResource::SERVICE_ACCOUNTS, name))?;
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("TokenRequest");
    if kind != "TokenRequest" {
        return Err(Failure::bad_request(&format!(
            "the object provided is unrecognized (must be of type TokenRequest): kind {kind:?} does not match"
        )));
    }
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    if spec.get("boundObjectRef").is_some_and(|r| !r.is_null()) {
        return Err(invalid(
            name,
            "spec.boundObjectRef",
            "Unsupported value: this fake issues tokens bound to no object",
        ));
    }
    let seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(value) => value.as_u64().ok_or_else(|| {
            invalid(name, "spec.expirationSeconds", "Invalid value: must be a positive integer")
        })?,
    };
    if seconds < MIN_EXPIRATION_SECONDS {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            &format!("Invalid value: {seconds}: may not specify a duration less than 10 minutes"),
        ));
    }
    if seconds > MAX_EXPIRATION_SECONDS {
        return Err(invalid(
            name,
            "spec.expirationSeconds",
            &format!("Invalid value: {seconds}: may not specify a duration larger than 2^32 seconds"),
        ));
    }
    let mut audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences.push(KUBERNETES_ISSUER.to_owned());
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| Failure::bad_request("the clock is before 1970"))?
        .as_secs();
    let expires = now + seconds;
    let uid = account
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let claims = json!({
        "iss": KUBERNETES_ISSUER,
        "sub": format!("system:serviceaccount:{namespace}:{name}"),
        "aud": audiences,
        "iat": now,
        "nbf": now,
        "exp": expires,
        "jti": random_uid(),
        "kubernetes.io": {
            "namespace": namespace,
            "serviceaccount": {"name": name, "uid": uid},
        },
    });
    let token = issuer.sign_claims(&claims).map_err(|e| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("cannot sign the token: {e}"),
            None,
        )
    })?;
    let expiration = time::OffsetDateTime::from_unix_timestamp(
        i64::try_from(expires).unwrap_or(i64::MAX),
    )
    .ok()
    .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
    .unwrap_or_default();
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": super::store::now_rfc3339()},
        "spec": {"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": null},
        "status": {"token": token, "expirationTimestamp": expiration},
    }))
}
