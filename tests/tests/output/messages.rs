//! Errors that say what to fix: a refused login names the role, mount, audience and service account and lists the
//! checks; a missing `secretKey` lists the keys that exist; a `jmesPath` that does not give a string says what it
//! gave. No message shows a secret value or a token.

use courier_tests::calls::{assert_status, mount};
use serde_json::json;
use tonic::Code;

use crate::support::{
    AwsSocket, JWT_MOUNT, VaultSocket, assert_no_secret, aws_case, mount_on, obj, sm, vault_case,
    vault_case_with, vault_provider,
};

#[tokio::test]
async fn a_login_refused_for_this_service_account_says_what_to_check() -> anyhow::Result<()> {
    // The role admits another service account of the pod's namespace.
    let case = vault_case_with("msg-login-sa", &["vault", "openbao"], "someone-else").await?;
    case.put("app", json!({"a": "login-sa-secret"})).await?;
    let provider = vault_provider().await?;

    for (socket, audience) in [
        (VaultSocket::Vault, "vault"),
        (VaultSocket::OpenBao, "openbao"),
        (VaultSocket::NativeVault, "vault"),
        (VaultSocket::NativeOpenBao, "openbao"),
    ] {
        let request = case.request(socket, &[obj("a", &case.path("app")).key("a")])?;
        let result = mount_on(&provider, socket.socket(), &request).await?;
        let role = format!("role {:?}", case.role);
        let mount_path = format!("auth/{JWT_MOUNT}/login");
        let auth_mount = format!("auth mount {JWT_MOUNT:?}");
        let token_audience = format!("audience {audience:?}");
        let service_account = format!("service account {}/app", case.pod.namespace());
        let bound_audience = format!("bound audience is {audience:?}");
        let status = assert_status(
            result,
            Code::PermissionDenied,
            &[
                "login refused",
                &mount_path,
                &role,
                &auth_mount,
                &token_audience,
                &service_account,
                "bound to this service account and namespace",
                &bound_audience,
                "token issuer",
            ],
        );
        let vault_token = case.issuer.token(&case.pod, "vault")?;
        let openbao_token = case.issuer.token(&case.pod, "openbao")?;
        assert_no_secret(
            &status,
            &["login-sa-secret", vault_token.jwt(), openbao_token.jwt()],
        );
        // No part of a JWT (header, claims or signature) in the message either.
        let signature = vault_token.jwt().rsplit('.').next().unwrap_or_default();
        assert_no_secret(&status, &["eyJ", signature]);
    }
    Ok(())
}

#[tokio::test]
async fn a_login_refused_for_the_audience_names_the_audience() -> anyhow::Result<()> {
    // The role admits the pod, but only with tokens for another audience.
    let case = vault_case_with("msg-login-aud", &["https://kubernetes.default.svc"], "app").await?;
    let provider = vault_provider().await?;

    let result = mount_on(
        &provider,
        "vault",
        &case.request(VaultSocket::Vault, &[obj("a", &case.path("app")).key("a")])?,
    )
    .await?;
    let role = format!("{:?}", case.role);
    let status = assert_status(
        result,
        Code::PermissionDenied,
        &[
            "login refused",
            &role,
            "audience \"vault\"",
            "bound audience is \"vault\"",
            "bound to this service account and namespace",
            "token issuer",
        ],
    );
    assert_no_secret(&status, &["eyJ"]);

    // The SecretProviderClass's `audience` picks the token; the message follows it.
    let result = mount_on(
        &provider,
        "vault",
        &case
            .request(VaultSocket::Vault, &[obj("a", &case.path("app")).key("a")])?
            .parameter("audience", "openbao"),
    )
    .await?;
    assert_status(
        result,
        Code::PermissionDenied,
        &[
            "login refused",
            "audience \"openbao\"",
            "bound audience is \"openbao\"",
        ],
    );
    Ok(())
}

#[tokio::test]
async fn a_missing_secret_key_lists_the_keys_that_exist() -> anyhow::Result<()> {
    let case = vault_case("msg-key").await?;
    case.put(
        "db",
        json!({"username": "key-user-secret", "password": "key-pass-secret"}),
    )
    .await?;
    let kv1 = case
        .kv1(
            "db",
            json!({"user": "kv1-user-secret", "pass": "kv1-pass-secret"}),
        )
        .await?;
    let provider = vault_provider().await?;
    let secrets = [
        "key-user-secret",
        "key-pass-secret",
        "kv1-user-secret",
        "kv1-pass-secret",
    ];

    for socket in VaultSocket::ALL {
        let result = mount_on(
            &provider,
            socket.socket(),
            &case.request(
                socket,
                &[
                    obj("user", &case.path("db")).key("username"),
                    obj("pass", &case.path("db")).key("pass"),
                ],
            )?,
        )
        .await?;
        let at = format!("does not exist at {}", case.path("db"));
        let status = assert_status(
            result,
            Code::NotFound,
            &[
                "objects[1]",
                "\"pass\"",
                "secretKey \"pass\"",
                &at,
                "keys there: password, username",
            ],
        );
        assert_no_secret(&status, &secrets);
    }

    let result = mount_on(
        &provider,
        "vault",
        &case.request(VaultSocket::Vault, &[obj("p", &kv1).key("password")])?,
    )
    .await?;
    let status = assert_status(
        result,
        Code::NotFound,
        &[
            "objects[0]",
            "secretKey \"password\"",
            "keys there: pass, user",
        ],
    );
    assert_no_secret(&status, &secrets);
    Ok(())
}

#[tokio::test]
async fn a_jmes_path_that_gives_no_string_says_what_it_gave() -> anyhow::Result<()> {
    let case = aws_case("msg-jmes").await?;
    case.secret(
        "db",
        json!({
            "username": "jmes-user-secret",
            "port": 5432,
            "hosts": ["jmes-host-a", "jmes-host-b"],
            "conn": {"password": "jmes-pass-secret"},
            "tls": true,
        })
        .to_string(),
    )
    .await?;
    case.secret("plain", "jmes-plain-secret").await?;
    let provider = case.provider().await?;
    let secrets = [
        "jmes-user-secret",
        "5432",
        "jmes-host-a",
        "jmes-pass-secret",
        "jmes-plain-secret",
    ];

    let cases: &[(&str, &[&str])] = &[
        ("port", &["gave a number, not a string"]),
        ("hosts", &["gave a list, not a string"]),
        ("conn", &["gave an object, not a string"]),
        ("tls", &["gave a boolean, not a string"]),
        (
            "nothing.here",
            &[
                "matched nothing",
                "top-level keys there",
                "username",
                "port",
                "hosts",
                "conn",
                "tls",
            ],
        ),
    ];
    for socket in AwsSocket::ALL {
        for (expression, words) in cases {
            let result = mount_on(
                &provider,
                socket.socket(),
                &case.request(
                    socket,
                    &[sm(&case.name("db"))
                        .alias("db")
                        .jmes(&[("username", "user"), (expression, "picked")])],
                )?,
            )
            .await?;
            let quoted = format!("jmesPath {expression:?}");
            let mut all = vec!["objects[0]", "\"db\"", &quoted, "\"picked\""];
            all.extend_from_slice(words);
            let status = assert_status(result, Code::InvalidArgument, &all);
            assert_no_secret(&status, &secrets);
        }

        // A secret that is not JSON at all.
        let result = mount_on(
            &provider,
            socket.socket(),
            &case.request(
                socket,
                &[sm(&case.name("plain")).alias("plain").jmes(&[("a", "a")])],
            )?,
        )
        .await?;
        let status = assert_status(
            result,
            Code::InvalidArgument,
            &["objects[0]", "jmesPath \"a\"", "not JSON"],
        );
        assert_no_secret(&status, &secrets);
    }

    // The working entry of the same object still works on its own.
    let response = mount(
        &mut provider.client("aws").await?,
        case.request(
            AwsSocket::Aws,
            &[sm(&case.name("db"))
                .alias("db")
                .jmes(&[("conn.password", "pass")])],
        )?
        .build()?,
    )
    .await?;
    assert_eq!(
        courier_tests::calls::text(&response, "pass"),
        "jmes-pass-secret"
    );
    Ok(())
}

#[tokio::test]
async fn a_mount_whose_responses_pass_the_cap_stops_as_they_arrive_and_names_the_cap() -> anyhow::Result<()> {
    let case = vault_case("msg-too-large").await?;
    // Five secrets of 3 MiB: each response is under the 4 MiB a response may have, together they pass
    // the 12 MiB one mount may receive.
    let big = "z".repeat(3 * 1024 * 1024);
    let mut objects = Vec::new();
    for i in 0..5 {
        case.put(&format!("big{i}"), json!({"v": big})).await?;
        objects.push(obj(&format!("big{i}"), &case.path(&format!("big{i}"))).key("v"));
    }
    let provider = vault_provider().await?;
    let result = mount_on(&provider, VaultSocket::Vault.socket(), &case.request(VaultSocket::Vault, &objects)?).await?;
    let status = assert_status(result, Code::InvalidArgument, &["mount's responses", "12582912 bytes"]);
    assert_no_secret(&status, &["zzzzzzzz"]);
    // One of them alone is served.
    let one = mount_on(&provider, VaultSocket::Vault.socket(), &case.request(VaultSocket::Vault, &objects[..1])?)
        .await?
        .map_err(|s| anyhow::anyhow!("one 3 MiB object: {s}"))?;
    assert_eq!(one.files[0].contents.len(), big.len());
    Ok(())
}
