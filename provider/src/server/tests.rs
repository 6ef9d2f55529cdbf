use super::*;

#[tokio::test]
async fn debug_of_a_populated_core_shows_no_cached_value() {
    let settings = Settings {
        defaults: Defaults { vault_address: "http://127.0.0.1:8200".into(), aws_region: None },
        mount_timeout: Duration::from_secs(30),
        templates: None,
        tokens: crate::identity::VerifierSettings::default(),
        backends: backend::Settings {
            vault: crate::backend::vault::VaultSettings::default(),
            aws: crate::backend::aws::AwsSettings {
                default_region: None,
                pod_identity_agent_url: None,
                role_cache: Duration::from_secs(60),
                concurrency: 4,
            },
            gcp: crate::backend::gcp::GcpSettings { concurrency: 4, ..Default::default() },
            azure: crate::backend::azure::AzureSettings { concurrency: 4, ..Default::default() },
        },
    };
    let core = Core::new(Versioner::random(), settings, Metrics::shared());
    let vault_token = "s.vault-token-canary-5fa1";
    let secret_value = "secret-value-canary-77c3";
    let lease_id = "database/creds/app/lease-canary-0d9e";
    let response = serde_json::json!({
        "lease_id": lease_id,
        "lease_duration": 300,
        "renewable": true,
        "data": {"username": "v-user-canary-31b8", "password": secret_value},
    });
    core.backends.vault.seed_for_test(vault_token, &response);
    let (aws_secret, aws_session) = ("aws-secret-key-canary-9e02", "aws-session-canary-c4d7");
    core.backends.aws.seed_for_test(aws_secret, aws_session);
    let gcp_token = "ya29.gcp-token-canary-4b1e";
    core.backends.gcp.seed_for_test(gcp_token);
    let azure_token = "eyJ0eXAi.azure-token-canary-93d0";
    core.backends.azure.seed_for_test(azure_token);

    for shown in [format!("{core:?}"), format!("{core:#?}")] {
        for seeded in [vault_token, secret_value, lease_id, "v-user-canary", aws_secret, aws_session, gcp_token, azure_token] {
            assert!(!shown.contains(seeded), "Debug of Core shows {seeded:?}:\n{shown}");
        }
        assert!(!shown.contains("canary"), "{shown}");
        // The caches are populated, and Debug says so by their sizes.
        assert!(shown.contains("tokens: 1"), "{shown}");
        assert!(shown.contains("leases: 1"), "{shown}");
        assert!(shown.contains("credentials: 1"), "{shown}");
    }
}
