//! The forwarding step the recording proxies share ([`VaultProxy`](crate::VaultProxy) in front of OpenBao,
//! [`AwsProxy`](crate::AwsProxy) in front of moto): pass a request on without its hop headers, read the whole
//! answer, and hand it back the same way.

use std::time::Duration;

use anyhow::Context as _;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;

/// The longest a forwarded request may take; OpenBao and moto answer in milliseconds.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// Headers that describe one hop, never forwarded.
const HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "host",
    "expect",
    "upgrade",
    "proxy-connection",
    "te",
    "trailer",
];

/// The server behind a proxy.
#[derive(Debug)]
pub(crate) struct Upstream {
    /// What the server is, for error messages (`OpenBao`, `moto`).
    name: &'static str,
    base: String,
    client: reqwest::Client,
}

/// The server's whole answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Why no answer came back; the text is what the proxy answers with.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The request could not be sent.
    Unreachable(String),
    /// The answer broke off.
    Lost(String),
}

fn without_hop_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if !HOP_HEADERS.contains(&name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

impl Upstream {
    /// Forwards to `base` (`http://127.0.0.1:PORT`).
    pub(crate) fn new(name: &'static str, base: &str) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(UPSTREAM_TIMEOUT)
            .build()
            .context("cannot build the proxy's HTTP client")?;
        Ok(Self {
            name,
            base: base.trim_end_matches('/').to_owned(),
            client,
        })
    }

    /// Sends the request on and reads the whole answer.
    pub(crate) async fn forward(
        &self,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Answer, Failure> {
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let url = format!("{}{path}", self.base);
        let response = self
            .client
            .request(method, &url)
            .headers(without_hop_headers(headers))
            .body(body)
            .send()
            .await
            .map_err(|error| {
                Failure::Unreachable(format!(
                    "the test proxy cannot reach {} at {url}: {error}",
                    self.name
                ))
            })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|error| {
            Failure::Lost(format!(
                "the test proxy lost {}'s answer: {error}",
                self.name
            ))
        })?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

impl Answer {
    /// The answer as the proxy's own, without hop headers.
    pub(crate) fn into_response(self) -> Response {
        let mut out = Response::new(Body::from(self.body));
        *out.status_mut() = self.status;
        *out.headers_mut() = without_hop_headers(&self.headers);
        out
    }
}
