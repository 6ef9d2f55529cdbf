use super::*;

#[test]
fn backoff_grows_and_is_bounded() {
    for attempt in 1..MAX_ATTEMPTS {
        let d = backoff(attempt);
        let base = RETRY_BASE_DELAY * 2u32.pow(attempt - 1);
        assert!(d >= base && d <= base + base / 2, "{d:?}");
    }
}

fn local_client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("a plain HTTP client builds")
}

/// The error of a request to a local port nobody listens on.
async fn refused(method: reqwest::Method, path: &str) -> reqwest::Error {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    local_client().request(method, format!("http://{addr}{path}")).send().await.expect_err("refused")
}

#[tokio::test]
async fn a_refused_connection_was_never_sent() {
    let err = refused(reqwest::Method::POST, "/v1/pki/issue/web").await;
    assert!(never_sent(&err), "{err:?}");
}

#[tokio::test]
async fn a_connection_cut_after_sending_may_have_reached_the_server() {
    use tokio::io::AsyncReadExt as _;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        // Read the request, then close without an answer.
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.ends_with(b"{}") {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        request
    });
    let err = local_client()
        .post(format!("http://{addr}/v1/pki/issue/web"))
        .body("{}")
        .send()
        .await
        .expect_err("the connection is cut");
    let request = server.await.expect("server task");
    assert!(request.starts_with(b"POST /v1/pki/issue/web"), "the request was sent");
    assert!(!never_sent(&err), "{err:?}");
}

#[test]
fn certificate_errors_are_found_by_type_inside_nested_io_errors() {
    let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
    let nested = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, refused));
    assert!(is_tls_certificate_error(&nested));
    let other = std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, rustls::Error::DecryptError));
    assert!(!is_tls_certificate_error(&other));
    // The words alone do not count.
    assert!(!is_tls_certificate_error(&std::io::Error::other("invalid peer certificate: UnknownIssuer")));
}

#[test]
fn writes_are_replayed_only_when_unsent_or_refused_unprocessed() {
    let lost = |unsent| Attempt::Lost { cause: TransportError::BodyTooLarge, unsent };
    for (outcome, always, unsent_only) in [
        (Attempt::Busy(503), true, false),
        (Attempt::Busy(502), true, false),
        (Attempt::Busy(429), true, true),
        (lost(true), true, true),
        (lost(false), true, false),
        (Attempt::Fatal(TransportError::BodyTooLarge), false, false),
    ] {
        assert_eq!(Replay::Always.allows(&outcome), always);
        assert_eq!(Replay::UnsentOnly.allows(&outcome), unsent_only);
    }
}

#[tokio::test]
async fn a_transport_failure_is_the_typed_source_of_the_backend_error() {
    let refused = refused(reqwest::Method::GET, "/v1/secret/data/app").await;
    let text = describe_transport_error(&refused);
    let cause = TransportError::http(refused);
    // The text users see is what it always was.
    assert_eq!(cause.to_string(), text);
    assert!(text.starts_with("cannot connect"), "{text}");
    let err = Error::new(ErrorKind::Unavailable, "vault", format!("GET secret/data/app failed: {cause}")).caused_by(cause);
    // Programs find the HTTP client's error by type along the chain, not by its words.
    let mut found = None;
    let mut next = std::error::Error::source(&err);
    while let Some(e) = next {
        if let Some(http) = e.downcast_ref::<reqwest::Error>() {
            found = Some(http.is_connect());
        }
        next = e.source();
    }
    assert_eq!(found, Some(true), "{err:?}");
}

#[test]
fn body_failures_keep_their_text_and_carry_no_body() {
    assert_eq!(TransportError::BodyTooLarge.to_string(), format!("response larger than {MAX_RESPONSE_BYTES} bytes"));
    let Err(e) = serde_json::from_slice::<Value>(b"{\"password\": \"hunter2-canary\"") else { panic!("truncated JSON") };
    let not_json = TransportError::NotJson { status: 200, category: e.classify() };
    assert_eq!(not_json.to_string(), "HTTP 200: the response is not JSON (Eof error)");
    let err = Error::new(ErrorKind::Unavailable, "vault", "x").caused_by(not_json);
    assert!(!format!("{err:?}{err}").contains("canary"));
    assert!(std::error::Error::source(&err).is_some());
}
