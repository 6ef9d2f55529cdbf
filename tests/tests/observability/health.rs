//! Health: `grpc.health.v1` on every provider socket, and the HTTP probes.

use std::time::Duration;

use courier_tests::connect_unix;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::support::provider_builder;

/// The provider service's name in `grpc.health.v1` (package `v1alpha1`, service `CSIDriverProvider`).
const PROVIDER_SERVICE: &str = "v1alpha1.CSIDriverProvider";
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

async fn check(
    client: &mut HealthClient<tonic::transport::Channel>,
    service: &str,
) -> Result<i32, tonic::Status> {
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    request.set_timeout(CALL_TIMEOUT);
    match tokio::time::timeout(CALL_TIMEOUT, client.check(request)).await {
        Ok(result) => result.map(|r| r.into_inner().status),
        Err(_) => Err(tonic::Status::deadline_exceeded(
            "the test's deadline for Check passed",
        )),
    }
}

#[tokio::test]
async fn every_socket_answers_grpc_health_checks() -> anyhow::Result<()> {
    let names = ["courier", "vault", "openbao"];
    let provider = provider_builder(&names).await?.start().await?;

    for name in names {
        let mut client = HealthClient::new(connect_unix(&provider.socket_path(name)).await?);
        for service in ["", PROVIDER_SERVICE] {
            let status = check(&mut client, service)
                .await
                .map_err(|s| anyhow::anyhow!("{name}.sock: Check({service:?}) failed: {s:?}"))?;
            assert_eq!(
                status,
                ServingStatus::Serving as i32,
                "{name}.sock: Check({service:?}) answered {status}"
            );
        }
        let unknown = check(&mut client, "no.such.Service").await;
        assert_eq!(
            unknown.map_err(|s| s.code()),
            Err(Code::NotFound),
            "{name}.sock: an unknown service is NotFound"
        );
    }
    Ok(())
}

#[tokio::test]
async fn http_probes_answer_once_ready_next_to_metrics() -> anyhow::Result<()> {
    // `start` returns once every socket answers `Version`: the provider is ready.
    let provider = provider_builder(&["vault", "courier"])
        .await?
        .start()
        .await?;

    for path in ["/healthz", "/readyz", "/health/ready"] {
        let (status, body) = provider.http_get(path).await?;
        assert_eq!(status, 200, "{path} answered {status}: {body}");
    }
    let (status, body) = provider.http_get("/metrics").await?;
    assert_eq!(
        status, 200,
        "/metrics on the shared listener answered {status}"
    );
    // Before any mount only the gauges have samples.
    assert!(
        body.contains("# TYPE courier_backend_tokens_cached gauge"),
        "{body}"
    );
    let (status, _) = provider.http_get("/no-such-page").await?;
    assert_eq!(status, 404);
    Ok(())
}
