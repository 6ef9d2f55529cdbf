//! Isolation: two identities ask for the same secret, one allowed and one not. The refused one is refused every
//! time: right after the allowed one's read (when every cache is warm), concurrently with it, and again after it,
//! under `--static-reuse 0s`, the default and `60s`. The same for a dynamic secret whose lease the allowed identity
//! keeps (database credentials, `shareLeases: "true"`), and for AWS with two IRSA identities annotated with one
//! role that trusts only one of them.

use std::time::Duration;

use courier_proto::v1alpha1::csi_driver_provider_client::CsiDriverProviderClient;
use courier_proto::v1alpha1::{MountRequest, MountResponse};
use courier_tests::calls::{mount, text};
use courier_tests::{PodFixture, ProviderBuilder};
use serde_json::json;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::support::{
    AwsEnv, DATABASE_MOUNT, Figures, Identity, REGION, VaultEnv, obj, random_value, role_arn, unique_id,
    vault, vault_with_database,
};

/// Rounds in which the allowed and the refused identities mount at the same moment.
const CONCURRENT_ROUNDS: usize = 5;
/// The static-reuse windows every kind is checked under; `None` is the provider's default (5 s).
const WINDOWS: [Option<Duration>; 3] = [Some(Duration::ZERO), None, Some(Duration::from_secs(60))];

fn window_name(window: Option<Duration>) -> String {
    window.map_or_else(|| "default".to_owned(), |w| format!("{}s", w.as_secs()))
}

/// How one scenario went.
#[derive(Debug, Default)]
struct Tally {
    allowed: usize,
    refused: usize,
}

/// Runs the scenario on `client`: the allowed request once, every refused one right after, `CONCURRENT_ROUNDS`
/// rounds of all of them at once, then the allowed one and every refused one again. `check` inspects each allowed
/// response; `never` lists what must not appear in any refusal.
async fn scenario(
    client: &CsiDriverProviderClient<Channel>,
    allowed: &MountRequest,
    refused: &[MountRequest],
    check: &(dyn Fn(&MountResponse) -> anyhow::Result<()> + Sync),
    never: &[String],
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let expect_refused =
        |result: Result<MountResponse, Status>, tally: &mut Tally| -> anyhow::Result<()> {
            match result {
                Ok(response) => anyhow::bail!(
                    "a refused identity got {} files: {:?}",
                    response.files.len(),
                    courier_tests::calls::file_paths(&response)
                ),
                Err(status) => {
                    anyhow::ensure!(
                        status.code() == Code::PermissionDenied,
                        "a refused identity got {:?}: {}",
                        status.code(),
                        status.message()
                    );
                    for secret in never {
                        anyhow::ensure!(
                            !status.message().contains(secret.as_str()),
                            "a refusal carries the allowed identity's secret: {}",
                            status.message()
                        );
                    }
                    tally.refused += 1;
                    Ok(())
                }
            }
        };
    let expect_allowed =
        |result: Result<MountResponse, Status>, tally: &mut Tally| -> anyhow::Result<()> {
            let response =
                result.map_err(|s| anyhow::anyhow!("the allowed identity was refused: {s:?}"))?;
            check(&response)?;
            tally.allowed += 1;
            Ok(())
        };

    for _ in 0..2 {
        // Warm every cache with the allowed read, then the refused ones at once.
        expect_allowed(
            mount(&mut client.clone(), allowed.clone()).await,
            &mut tally,
        )?;
        for request in refused {
            expect_refused(
                mount(&mut client.clone(), request.clone()).await,
                &mut tally,
            )?;
        }
        for _ in 0..CONCURRENT_ROUNDS {
            let mut calls = tokio::task::JoinSet::new();
            for (i, request) in std::iter::once(allowed).chain(refused).enumerate() {
                let (mut client, request) = (client.clone(), request.clone());
                calls.spawn(async move { (i, mount(&mut client, request).await) });
            }
            while let Some(done) = calls.join_next().await {
                let (i, result) = done?;
                if i == 0 {
                    expect_allowed(result, &mut tally)?;
                } else {
                    expect_refused(result, &mut tally)?;
                }
            }
        }
    }
    Ok(tally)
}

fn provider(builder: ProviderBuilder, window: Option<Duration>) -> ProviderBuilder {
    match window {
        Some(window) => builder.static_reuse(window),
        None => builder,
    }
}

/// Who a scenario mounts as, in namespace `ns-<id>`: `allowed` (role and policy `id`), `other_sa` (another
/// service account of the namespace, whose role reads only `elsewhere`) and `impostor` (a third service
/// account, also limited to `elsewhere`, asking for the allowed role).
async fn allowed_other_and_impostor(
    env: &VaultEnv,
    id: &str,
    elsewhere: &str,
) -> anyhow::Result<(Identity, Identity, Identity)> {
    let namespace = format!("ns-{id}");
    let allowed = env.identity(&namespace, "app", id, &[id]).await?;
    let other_sa = env
        .identity(&namespace, "other", &format!("{id}-other"), &[elsewhere])
        .await?;
    let mut impostor = env
        .identity(
            &namespace,
            "impostor",
            &format!("{id}-impostor"),
            &[elsewhere],
        )
        .await?;
    impostor.role = allowed.role.clone();
    Ok((allowed, other_sa, impostor))
}

#[tokio::test]
async fn a_refused_identity_never_reads_a_kv_secret_another_identity_reads() -> anyhow::Result<()> {
    let env = vault().await?;
    let id = unique_id("iso-kv");
    let value = random_value("iso-kv");
    env.bao
        .kv2_put("secret", &format!("{id}/app"), json!({"password": value}))
        .await?;
    env.bao
        .read_only_policy(&id, &[&format!("secret/data/{id}/*")])
        .await?;
    let elsewhere = format!("{id}-elsewhere");
    env.bao
        .read_only_policy(&elsewhere, &[&format!("secret/data/{elsewhere}/*")])
        .await?;
    // Refused three ways: another service account of the namespace whose role reads elsewhere; the same
    // service-account name in another namespace, likewise; and a stranger asking for the allowed role.
    let (allowed, other_sa, impostor) = allowed_other_and_impostor(env, &id, &elsewhere).await?;
    let other_ns = env
        .identity(
            &format!("ns2-{id}"),
            "app",
            &format!("{id}-ns2"),
            &[&elsewhere],
        )
        .await?;
    let objects = [obj("password", &format!("secret/data/{id}/app")).key("password")];

    let mut figures = Figures::new("isolation-kv");
    for window in WINDOWS {
        let provider = provider(ProviderBuilder::new().provider("vault").trust_issuer(&env.issuer), window)
            .start()
            .await?;
        let client = provider.client("vault").await?;
        let refused: Vec<MountRequest> = [&other_sa, &other_ns, &impostor]
            .iter()
            .map(|identity| env.request(identity, &objects)?.build())
            .collect::<anyhow::Result<_>>()?;
        let tally = scenario(
            &client,
            &env.request(&allowed, &objects)?.build()?,
            &refused,
            &|response| {
                anyhow::ensure!(text(response, "password") == value, "wrong value");
                Ok(())
            },
            std::slice::from_ref(&value),
        )
        .await?;
        figures.line(format!(
            "isolation: kv, static-reuse {}: {} allowed mounts served, {} refused mounts all PermissionDenied, 0 leaks",
            window_name(window),
            tally.allowed,
            tally.refused
        ));
    }
    figures.print();
    Ok(())
}

#[tokio::test]
async fn a_refused_identity_never_gets_a_kept_database_lease() -> anyhow::Result<()> {
    let env = vault_with_database().await?;
    let id = unique_id("iso-db");
    env.bao
        .postgres_role(DATABASE_MOUNT, "pg", &id, "5m", "10m")
        .await?;
    env.bao
        .read_only_policy(&id, &[&format!("{DATABASE_MOUNT}/creds/{id}")])
        .await?;
    let nothing = format!("{id}-nothing");
    env.bao
        .read_only_policy(&nothing, &[&format!("secret/data/{nothing}/*")])
        .await?;
    let (allowed, other_sa, impostor) = allowed_other_and_impostor(env, &id, &nothing).await?;
    let path = format!("{DATABASE_MOUNT}/creds/{id}");
    let objects = [
        obj("username", &path).key("username"),
        obj("password", &path).key("password"),
    ];
    // Shared leases are the widest reuse there is: every pod of the allowed service account gets one lease.
    let request = |identity: &crate::support::Identity| {
        env.request(identity, &objects)
            .map(|r| r.parameter("shareLeases", "true"))
            .and_then(|r| r.build())
    };

    let mut figures = Figures::new("isolation-database");
    for window in WINDOWS {
        let provider = provider(ProviderBuilder::new().provider("vault").trust_issuer(&env.issuer), window)
            .start()
            .await?;
        let client = provider.client("vault").await?;
        // The allowed identity gets its lease first; the scenario's allowed mounts must keep getting that one.
        let first = mount(&mut client.clone(), request(&allowed)?).await?;
        let (username, password) = (text(&first, "username"), text(&first, "password"));
        let refused = vec![request(&other_sa)?, request(&impostor)?];
        let tally = scenario(
            &client,
            &request(&allowed)?,
            &refused,
            &|response| {
                anyhow::ensure!(
                    text(response, "username") == username,
                    "the allowed identity's kept lease was not reused"
                );
                Ok(())
            },
            &[username.clone(), password.clone()],
        )
        .await?;
        figures.line(format!(
            "isolation: database lease kept by the allowed identity, static-reuse {}: {} allowed mounts got the kept lease, \
             {} refused mounts all PermissionDenied, 0 leaks",
            window_name(window),
            tally.allowed + 1,
            tally.refused
        ));
    }
    figures.print();
    Ok(())
}

#[tokio::test]
async fn a_refused_aws_identity_never_reads_with_another_identitys_role() -> anyhow::Result<()> {
    let aws = AwsEnv::start().await?;
    let id = unique_id("iso-aws");
    let value = random_value("iso-aws");
    aws.moto.create_secret(REGION, &id, value.as_str()).await?;
    let role = role_arn(&id);
    let namespace = format!("ns-{id}");
    let allowed = PodFixture::new(&namespace, "app");
    aws.annotate(&allowed, &role);
    aws.proxy.trust(&role, &namespace, "app");
    // Both refused service accounts are annotated with the allowed pod's role, which trusts neither: the role ARN
    // alone must never open a credential cache entry made for someone else.
    let other_sa = PodFixture::new(&namespace, "other");
    aws.annotate(&other_sa, &role);
    let other_ns = PodFixture::new(format!("ns2-{id}"), "app");
    aws.annotate(&other_ns, &role);
    let objects = format!("- {{objectName: {id}, objectType: secretsmanager, objectAlias: s}}\n");

    let mut figures = Figures::new("isolation-aws");
    for window in WINDOWS {
        let provider = provider(aws.provider_builder().provider("aws"), window)
            .start()
            .await?;
        let client = provider.client("aws").await?;
        let refused = vec![
            aws.request(&other_sa, &objects)?.build()?,
            aws.request(&other_ns, &objects)?.build()?,
        ];
        let tally = scenario(
            &client,
            &aws.request(&allowed, &objects)?.build()?,
            &refused,
            &|response| {
                anyhow::ensure!(text(response, "s") == value, "wrong value");
                Ok(())
            },
            std::slice::from_ref(&value),
        )
        .await?;
        figures.line(format!(
            "isolation: aws irsa (one role, trusted by one of three identities), static-reuse {}: {} allowed mounts served, \
             {} refused mounts all PermissionDenied, 0 leaks",
            window_name(window),
            tally.allowed,
            tally.refused
        ));
    }
    figures.print();
    Ok(())
}
