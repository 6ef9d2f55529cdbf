//! The stand-in's one handler: it sends each request to the token endpoint or to Key Vault, records the call and
//! writes the JSON answer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{AzureApi, AzureCall, Shared, entra, keyvault};

/// What a handler answers, with who the call ran as.
pub(super) struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Value,
    tenant: Option<String>,
    client_id: Option<String>,
}

impl Reply {
    pub(super) fn json(status: StatusCode, body: Value) -> Self {
        Self { status, headers: Vec::new(), body, tenant: None, client_id: None }
    }

    pub(super) fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    pub(super) fn by(mut self, tenant: Option<&str>, client_id: Option<&str>) -> Self {
        self.tenant = tenant.map(str::to_owned);
        self.client_id = client_id.map(str::to_owned);
        self
    }
}

pub(super) async fn handle(
    State(state): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let (api, reply) = if let Some(rest) = path.strip_prefix("/vaults/") {
        (AzureApi::KeyVault, keyvault::handle(&state, &method, rest, uri.query(), &headers))
    } else if let Some(tenant) = path.strip_prefix('/').and_then(|p| p.strip_suffix("/oauth2/v2.0/token")) {
        (AzureApi::Token, entra::token(&state, &method, tenant, &headers, &body))
    } else {
        (AzureApi::Token, entra::not_found())
    };
    state.lock().calls.push(AzureCall {
        api,
        method: method.to_string(),
        path,
        tenant: reply.tenant.clone(),
        client_id: reply.client_id.clone(),
        status: reply.status.as_u16(),
    });
    let mut response =
        (reply.status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], reply.body.to_string())
            .into_response();
    for (name, value) in reply.headers {
        response.headers_mut().append(name, value);
    }
    response
}
