//! The canary: at the most verbose log level, no secret value, no pod token and no AWS credential reaches the
//! provider's logs, on success and on failure, with either identity method.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use courier_tests::calls::{mount, text};
use courier_tests::{POD_IDENTITY_AUDIENCE, ParameterType, STS_AUDIENCE};
use rand::Rng as _;
use serde_json::json;

use crate::support::{REGION, case, sm, ssm};

#[tokio::test]
async fn trace_logs_carry_no_values_tokens_or_credentials() -> anyhow::Result<()> {
    let case = case("canary").await?;
    let canary = format!("canary-{:016x}", rand::rng().random::<u64>());
    let field_canary = format!("field-{:016x}", rand::rng().random::<u64>());
    let param_canary = format!("param-{:016x}", rand::rng().random::<u64>());
    case.secret("plain", canary.as_str()).await?;
    case.secret(
        "doc",
        json!({"password": field_canary, "port": 5432}).to_string(),
    )
    .await?;
    case.moto
        .put_parameter(
            REGION,
            &case.param("secure"),
            &param_canary,
            ParameterType::SecureString,
            false,
        )
        .await?;
    let mut provider = case
        .provider_builder(&["aws"])
        .log_level("trace")
        // Every crate, HTTP and TLS libraries included, not only Courier's own targets.
        .arg("--log-filter=trace")
        .log_format("json")
        .start()
        .await?;
    let mut client = provider.client("aws").await?;
    let sts_token = case.token(&case.pod, STS_AUDIENCE)?;
    let agent_token = case.token(&case.pod, POD_IDENTITY_AUDIENCE)?;
    let objects = [
        sm(&case.name("plain")).alias("plain"),
        sm(&case.name("doc"))
            .alias("doc")
            .jmes(&[("password", "password", None)]),
        ssm(&case.param("secure")).alias("secure"),
    ];
    let with_tokens = |builder: courier_tests::MountRequestBuilder| {
        builder
            .without_tokens()
            .token(STS_AUDIENCE, sts_token.clone())
            .token(POD_IDENTITY_AUDIENCE, agent_token.clone())
    };

    let irsa = mount(&mut client, with_tokens(case.request(&objects)?).build()?).await?;
    assert_eq!(text(&irsa, "plain"), canary);
    assert_eq!(text(&irsa, "password"), field_canary);
    assert_eq!(text(&irsa, "secure"), param_canary);
    let pod_identity = mount(
        &mut client,
        with_tokens(case.request(&objects)?)
            .parameter("usePodIdentity", "true")
            .build()?,
    )
    .await?;
    assert_eq!(text(&pod_identity, "plain"), canary);
    // Failing mounts too: error paths are where values slip into messages. A jmesPath on a number, and a
    // missing parameter next to a secret one.
    let _ = mount(
        &mut client,
        with_tokens(
            case.request(&[sm(&case.name("doc"))
                .alias("doc")
                .jmes(&[("port", "port", None)])])?,
        )
        .build()?,
    )
    .await;
    let _ = mount(
        &mut client,
        with_tokens(case.request(&[
            ssm(&case.param("secure")).alias("secure"),
            ssm(&case.param("missing")).alias("missing"),
        ])?)
        .build()?,
    )
    .await;
    drop(client);
    assert!(provider.terminate().await?.success());

    let logs = provider.logs();
    assert!(
        logs.contains(case.pod.name()),
        "the mount's log lines should name the pod (and prove logging was on):\n{logs}"
    );
    let mut needles = vec![
        ("secret value", canary.clone()),
        ("secret value in base64", STANDARD.encode(&canary)),
        ("jmesPath field value", field_canary.clone()),
        ("SecureString value", param_canary.clone()),
        ("the STS token", sts_token.jwt().to_owned()),
        (
            "the STS token's signature",
            sts_token
                .jwt()
                .rsplit('.')
                .next()
                .unwrap_or_default()
                .to_owned(),
        ),
        ("the agent token", agent_token.jwt().to_owned()),
    ];
    for call in case.calls("sts", "AssumeRoleWithWebIdentity") {
        if let Some(issued) = call.issued {
            needles.push(("STS secret key", issued.secret_access_key));
            needles.push(("STS session token", issued.session_token));
        }
    }
    for issued in case.agent.issued_credentials() {
        needles.push(("agent secret key", issued.secret_access_key));
        needles.push(("agent session token", issued.session_token));
    }
    assert!(
        needles.len() >= 11,
        "both identity methods handed out credentials"
    );
    for (what, needle) in needles {
        assert!(!needle.is_empty(), "{what}");
        assert!(
            !logs.contains(&needle),
            "{what} appears in the provider's logs"
        );
    }
    Ok(())
}
