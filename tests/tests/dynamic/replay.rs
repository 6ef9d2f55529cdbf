//! Requests that issue something are sent once: a PKI issue that reached OpenBao and then failed (a 502 from a
//! proxy, a connection cut before the answer) is not sent again, since a second attempt would issue a second
//! certificate nobody holds; a request refused before it left (nothing listening) is retried; reads are
//! retried after a 5xx as before. A recording proxy in front of the real OpenBao counts what reached it, and
//! OpenBao's own list of issued certificates confirms it.

use courier_proto::v1alpha1::MountRequest;
use courier_tests::calls::{assert_status, mount, text};
use courier_tests::{VaultFault, VaultFaultKind, VaultProxy};
use reqwest::Method;
use serde_json::json;
use tonic::Code;

use crate::pki::{DOMAIN, pki_case};
use crate::support::{Case, Provider, obj, provider_builder};

/// The certificates OpenBao has issued on `mount` (its CA's own included).
async fn certificates(case: &Case, mount: &str) -> anyhow::Result<usize> {
    let listed = case
        .bao()
        .api(Method::GET, &format!("{mount}/certs?list=true"), None)
        .await?;
    Ok(listed["data"]["keys"].as_array().map_or(0, Vec::len))
}

/// A mount of a certificate and its key for `host` from one PUT to `issue_path`, through `proxy`.
fn issue_request(
    case: &Case,
    proxy: &VaultProxy,
    issue_path: &str,
    host: &str,
) -> anyhow::Result<MountRequest> {
    let args = json!({"common_name": format!("{host}.{DOMAIN}"), "ttl": "5m"});
    let objects = [
        obj("tls.crt", issue_path)
            .key("certificate")
            .method("PUT")
            .args(args.clone()),
        obj("tls.key", issue_path)
            .key("private_key")
            .method("PUT")
            .args(args),
    ];
    case.request(&objects)?
        .parameter("vaultAddress", proxy.url())
        .build()
}

/// A fault after OpenBao served the first PUT to the issue path: the mount fails, naming the object, and
/// OpenBao issued exactly one certificate; the next mount gets one.
async fn issue_fails_once_after_reaching_openbao(label: &str, fault: VaultFaultKind) -> anyhow::Result<()> {
    let (case, mount_path) = pki_case(label).await?;
    let issue_path = format!("{mount_path}/issue/web");
    let proxy = VaultProxy::start(&case.bao().addr())?;
    proxy.inject(
        VaultFault::new(fault)
            .method(Method::PUT)
            .path_prefix(&issue_path)
            .times(1),
    );
    let provider = Provider::start(provider_builder().await?).await?;
    let mut client = provider.client().await?;
    let before = certificates(&case, &mount_path).await?;

    let result = mount(&mut client, issue_request(&case, &proxy, &issue_path, "app")?).await;
    let status = assert_status(
        result,
        Code::Unavailable,
        &["objects[0]", "tls.crt", &issue_path, "not sent again"],
    );
    let issues = proxy.calls_to("PUT", &issue_path);
    assert_eq!(issues.len(), 1, "the issue request was sent again: {issues:?}");
    assert!(issues[0].forwarded, "{issues:?}");
    assert_eq!(
        certificates(&case, &mount_path).await?,
        before + 1,
        "OpenBao issued other than one certificate for the failed mount ({})",
        status.message()
    );
    let metrics = provider.metrics().await?;
    metrics.assert_sums(&[("courier_backend_requests_total", &[("operation", "write")], 1.0)]);

    // The fault is spent: the next mount issues one certificate and serves it.
    let response = mount(&mut client, issue_request(&case, &proxy, &issue_path, "app")?).await?;
    assert!(text(&response, "tls.crt").starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(proxy.calls_to("PUT", &issue_path).len(), 2);
    assert_eq!(certificates(&case, &mount_path).await?, before + 2);
    Ok(())
}

#[tokio::test]
async fn an_issue_answered_502_after_reaching_openbao_is_not_sent_again() -> anyhow::Result<()> {
    issue_fails_once_after_reaching_openbao("replay-502", VaultFaultKind::AfterForward(502)).await
}

#[tokio::test]
async fn an_issue_whose_connection_is_cut_after_reaching_openbao_is_not_sent_again() -> anyhow::Result<()> {
    issue_fails_once_after_reaching_openbao("replay-cut", VaultFaultKind::CutAfterForward).await
}

#[tokio::test]
async fn an_issue_refused_before_it_was_sent_is_retried() -> anyhow::Result<()> {
    let (case, mount_path) = pki_case("replay-refused").await?;
    let issue_path = format!("{mount_path}/issue/web");
    let proxy = VaultProxy::start(&case.bao().addr())?;
    let provider = Provider::start(provider_builder().await?).await?;
    let mut client = provider.client().await?;
    // A first mount logs in through the proxy; its Vault token is cached for the proxy's address.
    mount(&mut client, issue_request(&case, &proxy, &issue_path, "first")?).await?;
    let before = certificates(&case, &mount_path).await?;
    let request = issue_request(&case, &proxy, &issue_path, "second")?;

    // Nothing listens at the proxy's address any more: every connection is refused before a byte is sent.
    drop(proxy);
    let result = mount(&mut client, request).await;
    assert_status(result, Code::Unavailable, &["objects[0]", "tls.crt", "3 attempts"]);
    let metrics = provider.metrics().await?;
    assert_eq!(
        metrics.sum(
            "courier_backend_requests_total",
            &[("operation", "write"), ("status", "error")]
        ),
        3.0,
        "each refused attempt is counted: {}",
        metrics.0
    );
    assert_eq!(certificates(&case, &mount_path).await?, before);
    Ok(())
}

#[tokio::test]
async fn a_read_answered_502_is_retried() -> anyhow::Result<()> {
    let case = crate::support::env().await?.case("replay-read", "5m", "10m").await?;
    let kv = format!("kv1-{}", case.id);
    case.bao().enable_kv1(&kv).await?;
    case.bao().kv1_put(&kv, "app", json!({"password": "read-twice"})).await?;
    let proxy = VaultProxy::start(&case.bao().addr())?;
    proxy.inject(
        VaultFault::new(VaultFaultKind::AfterForward(502))
            .method(Method::GET)
            .path_prefix(&kv)
            .times(1),
    );
    let provider = Provider::start(provider_builder().await?).await?;
    let mut client = provider.client().await?;
    let request = case
        .request(&[obj("password", &format!("{kv}/app")).key("password")])?
        .parameter("vaultAddress", proxy.url())
        .build()?;
    let response = mount(&mut client, request).await?;
    assert_eq!(text(&response, "password"), "read-twice");
    let reads = proxy.calls_to("GET", &kv);
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert_eq!(reads[0].answered, Some(502), "{reads:?}");
    Ok(())
}
