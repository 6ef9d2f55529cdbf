//! Secrecy: a representative set of successful and failing mounts (Vault KV with encodings and templates, PKI,
//! database credentials, AWS Secrets Manager with jmesPath and an SSM SecureString, and the usual errors) against
//! one provider logging everything at `--log-level trace --log-format json`. Then every log line, every error
//! message and the `/metrics` text are searched for each seeded value and what was issued on the way (private key,
//! database password, service-account tokens, Vault tokens, AWS credentials) in its raw, base64, URL-safe base64
//! and hex forms. The files carry exactly the modes asked for, and every socket is owner-only.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use courier_proto::v1alpha1::{MountRequest, MountResponse};
use courier_tests::calls::{mount, text};
use courier_tests::{ParameterType, PodFixture};
use reqwest::Method;
use serde_json::json;
use tonic::{Code, Status};

use crate::leak_search::{collect_issued, forms, token_shaped, tokens_in};
use crate::shim_local::shim_local;
use crate::support::{
    AwsEnv, DATABASE_MOUNT, Figures, Identity, JWT_MOUNT, REGION, obj, quote, random_value,
    role_arn, unique_id, vault_with_database,
};

/// The mode the driver asks for by default (`permission: "420"`).
const DEFAULT_MODE: i32 = 0o644;

/// A mount, what it must end in, and the modes its files must carry.
struct Planned {
    label: &'static str,
    socket: &'static str,
    request: MountRequest,
    outcome: Expect,
}

enum Expect {
    /// Success, with exactly these files and modes.
    Files(Vec<(&'static str, i32)>),
    /// Failure with this code.
    Fails(Code),
}

#[tokio::test]
async fn no_secret_reaches_a_log_line_a_message_or_the_metrics() -> anyhow::Result<()> {
    let env = vault_with_database().await?;
    let aws = AwsEnv::start().await?;
    let id = unique_id("secrecy");
    let namespace = format!("ns-{id}");

    // Seeded values: each one unique, so any sighting is a leak.
    let password = random_value("kv-password");
    let api_key = random_value("kv-api");
    let base64_inner = random_value("kv-base64-inner");
    let hex_inner = random_value("kv-hex-inner");
    let not_hex = random_value("kv-not-hex");
    let unsafe_key_value = random_value("kv-unsafe-key");
    let aws_password = random_value("aws-password");
    let aws_number_neighbour = random_value("aws-neighbour");
    let ssm_value = random_value("ssm-secure");
    // A numeric secret, and a value computed from it: template engines quote the
    // operands of failed arithmetic, so these must not reach any message either.
    let pin: u64 = rand::random_range(900_000_000_000..999_999_999_999);
    let (pin, pin_plus_one) = (pin.to_string(), (pin + 1).to_string());
    env.bao
        .kv2_put(
            "secret",
            &format!("{id}/app"),
            json!({
                "password": password,
                "api": api_key,
                "b64": STANDARD.encode(&base64_inner),
                "hexv": hex::encode(&hex_inner),
                "badhex": not_hex,
                "pin": pin,
            }),
        )
        .await?;
    env.bao
        .kv2_put(
            "secret",
            &format!("{id}/unsafe"),
            json!({"../x": unsafe_key_value}),
        )
        .await?;
    let pki = format!("pki-{id}");
    env.bao.enable_pki(&pki, "secrecy.example").await?;
    env.bao.pki_role(&pki, "web", "example.com").await?;
    env.bao
        .postgres_role(DATABASE_MOUNT, "pg", &id, "5m", "10m")
        .await?;
    env.bao
        .write_policy(
            &id,
            &format!(
                r#"
path "secret/data/{id}/*" {{ capabilities = ["read"] }}
path "{pki}/issue/*" {{ capabilities = ["create", "update"] }}
path "{DATABASE_MOUNT}/creds/{id}" {{ capabilities = ["read"] }}
"#
            ),
        )
        .await?;
    let nothing = format!("{id}-nothing");
    env.bao
        .read_only_policy(&nothing, &[&format!("secret/data/{nothing}/*")])
        .await?;
    let app = env.identity(&namespace, "app", &id, &[&id]).await?;
    let refused = env
        .identity(&namespace, "other", &format!("{id}-other"), &[&nothing])
        .await?;
    let impostor = Identity {
        pod: PodFixture::new(&namespace, "impostor"),
        role: app.role.clone(),
    };
    // What a Vault token of this server looks like, to search the logs for any of the provider's.
    let login = env
        .bao
        .api(
            Method::POST,
            &format!("auth/{JWT_MOUNT}/login"),
            Some(json!({"role": app.role, "jwt": env.issuer.token(&app.pod, "vault")?.jwt()})),
        )
        .await?;
    let own_vault_token = login["auth"]["client_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let vault_token_prefix = own_vault_token
        .split_once('.')
        .map(|(p, _)| format!("{p}."))
        .unwrap_or_else(|| "hvs.".to_owned());

    let secret_name = format!("{id}/db");
    aws.moto
        .create_secret(
            REGION,
            &secret_name,
            json!({"username": "app", "password": aws_password, "port": 5432, "note": aws_number_neighbour})
                .to_string()
                .as_str(),
        )
        .await?;
    let parameter = format!("/{id}/secure");
    aws.moto
        .put_parameter(
            REGION,
            &parameter,
            &ssm_value,
            ParameterType::SecureString,
            false,
        )
        .await?;
    let aws_pod = PodFixture::new(&namespace, "aws-app");
    aws.annotate(&aws_pod, &role_arn(&id));
    aws.proxy.trust(&role_arn(&id), &namespace, "aws-app");

    let kv = format!("secret/data/{id}/app");
    let kv_objects = [
        obj("password", &kv)
            .key("password")
            .field("filePermission", "0400".to_owned()),
        obj("whole.json", &kv).field("filePermission", quote("0640")),
        obj("inner-b64", &kv)
            .key("b64")
            .field("encoding", quote("base64"))
            .field("filePermission", quote("0o600")),
        obj("inner-hex", &kv)
            .key("hexv")
            .field("encoding", quote("hex")),
        obj("api", &kv)
            .key("api")
            .field("render", "false".to_owned()),
    ];
    let templates =
        "- path: api.env\n  filePermission: 0440\n  template: \"API={{ objects.api }}\\n\"\n";
    let pki_path = format!("{pki}/issue/web");
    let pki_objects = [
        obj("tls.crt", &pki_path)
            .put(json!({"common_name": "a.example.com"}))
            .key("certificate"),
        obj("tls.key", &pki_path)
            .put(json!({"common_name": "a.example.com"}))
            .key("private_key")
            .field("filePermission", "0400".to_owned()),
    ];
    let creds = format!("{DATABASE_MOUNT}/creds/{id}");
    let db_objects = [
        obj("db/username", &creds).key("username"),
        obj("db/password", &creds).key("password"),
    ];
    let aws_objects = format!(
        "- objectName: {secret_name}\n  objectType: secretsmanager\n  objectAlias: db.json\n  filePermission: \"0600\"\n  \
         jmesPath:\n    - {{path: password, objectAlias: db-password, filePermission: \"0400\"}}\n\
         - objectName: {parameter}\n  objectType: ssmparameter\n  objectAlias: secure\n"
    );
    let aws_bad_jmes = format!(
        "- objectName: {secret_name}\n  objectType: secretsmanager\n  objectAlias: db.json\n  \
         jmesPath:\n    - {{path: port, objectAlias: port}}\n"
    );

    let vault_request =
        |identity: &Identity, objects: &[crate::support::Obj]| env.request(identity, objects);
    let plan: Vec<Planned> = vec![
        Planned {
            label: "kv with encodings, modes and a template",
            socket: "vault",
            request: vault_request(&app, &kv_objects)?
                .parameter("templates", templates)
                .build()?,
            outcome: Expect::Files(vec![
                ("password", 0o400),
                ("whole.json", 0o640),
                ("inner-b64", 0o600),
                ("inner-hex", DEFAULT_MODE),
                ("api.env", 0o440),
            ]),
        },
        Planned {
            label: "pki certificate and key",
            socket: "vault",
            request: vault_request(&app, &pki_objects)?
                .permission(0o640)
                .build()?,
            outcome: Expect::Files(vec![("tls.crt", 0o640), ("tls.key", 0o400)]),
        },
        Planned {
            label: "database credentials (native socket)",
            socket: "courier",
            request: vault_request(&app, &db_objects)?.build()?,
            outcome: Expect::Files(vec![
                ("db/username", DEFAULT_MODE),
                ("db/password", DEFAULT_MODE),
            ]),
        },
        Planned {
            label: "aws secret with jmesPath and an SSM SecureString",
            socket: "aws",
            request: aws.request(&aws_pod, &aws_objects)?.build()?,
            outcome: Expect::Files(vec![
                ("db.json", 0o600),
                ("db-password", 0o400),
                ("secure", DEFAULT_MODE),
            ]),
        },
        Planned {
            label: "missing secretKey",
            socket: "vault",
            request: vault_request(&app, &[obj("x", &kv).key("missing")])?.build()?,
            outcome: Expect::Fails(Code::NotFound),
        },
        Planned {
            label: "value not in its encoding",
            socket: "vault",
            request: vault_request(
                &app,
                &[obj("x", &kv).key("badhex").field("encoding", quote("hex"))],
            )?
            .build()?,
            outcome: Expect::Fails(Code::InvalidArgument),
        },
        Planned {
            label: "template naming an undefined object",
            socket: "courier",
            request: vault_request(&app, &kv_objects)?
                .parameter(
                    "templates",
                    "- {path: t, template: \"{{ objects.api }}{{ objects.nope }}\"}\n",
                )
                .build()?,
            outcome: Expect::Fails(Code::InvalidArgument),
        },
        Planned {
            label: "templates failing on a numeric secret and values computed from it",
            socket: "vault",
            request: vault_request(&app, &[obj("pin", &kv).key("pin").field("render", "false".to_owned())])?
                .parameter(
                    "templates",
                    "- {path: a, template: \"{{ (objects.pin | int) / 0 }}\"}\n",
                )
                .build()?,
            outcome: Expect::Fails(Code::InvalidArgument),
        },
        Planned {
            label: "template dividing a value computed from a numeric secret",
            socket: "courier",
            request: vault_request(&app, &[obj("pin", &kv).key("pin").field("render", "false".to_owned())])?
                .parameter(
                    "templates",
                    "- {path: b, template: \"{{ ((objects.pin | int) + 1) // 0 }}\"}\n",
                )
                .build()?,
            outcome: Expect::Fails(Code::InvalidArgument),
        },
        Planned {
            label: "template indexing out of range with a numeric secret",
            socket: "vault",
            request: vault_request(&app, &[obj("pin", &kv).key("pin").field("render", "false".to_owned())])?
                .parameter(
                    "templates",
                    "- {path: c, template: \"{{ range(3)[(objects.pin | int) + 1] + 1 }}\"}\n",
                )
                .build()?,
            outcome: Expect::Fails(Code::InvalidArgument),
        },
        Planned {
            label: "expandKeys over an unsafe key",
            socket: "vault",
            request: vault_request(
                &app,
                &[obj("u", &format!("secret/data/{id}/unsafe"))
                    .field("expandKeys", "true".to_owned())],
            )?
            .build()?,
            outcome: Expect::Fails(Code::InvalidArgument),
        },
        Planned {
            label: "read refused",
            socket: "vault",
            request: vault_request(&refused, &kv_objects)?.build()?,
            outcome: Expect::Fails(Code::PermissionDenied),
        },
        Planned {
            label: "login refused",
            socket: "openbao",
            request: vault_request(&impostor, &kv_objects)?
                .token("openbao", env.issuer.token(&impostor.pod, "openbao")?)
                .build()?,
            outcome: Expect::Fails(Code::PermissionDenied),
        },
        Planned {
            label: "aws jmesPath to a number",
            socket: "aws",
            request: aws.request(&aws_pod, &aws_bad_jmes)?.build()?,
            outcome: Expect::Fails(Code::InvalidArgument),
        },
        Planned {
            label: "aws role that does not trust the pod",
            socket: "aws",
            request: {
                let stranger = PodFixture::new(&namespace, "stranger");
                aws.annotate(&stranger, &role_arn(&id));
                aws.request(&stranger, &aws_objects)?.build()?
            },
            outcome: Expect::Fails(Code::PermissionDenied),
        },
    ];

    // The Vault cases' tokens come from another signer: the cluster publishes both keys.
    aws.kube.publish_issuer_keys(&env.issuer);
    let provider = aws
        .provider_builder()
        .provider("vault")
        .provider("openbao")
        .provider("courier")
        .provider("aws")
        .log_level("trace")
        // Every crate, HTTP and TLS libraries included, not only Courier's own targets.
        .arg("--log-filter=trace")
        .log_format("json")
        .metrics_addr("127.0.0.1:0")
        .start()
        .await?;

    // Every socket is owner-only.
    for name in provider.names() {
        let socket = provider.socket_path(name);
        let meta = std::fs::symlink_metadata(&socket)?;
        assert!(
            meta.file_type().is_socket(),
            "{} is not a socket",
            socket.display()
        );
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{} is not owner-only",
            socket.display()
        );
    }

    let mut secrets: Vec<(String, Vec<u8>)> = [
        ("kv password", &password),
        ("kv api key", &api_key),
        ("kv base64-stored value", &base64_inner),
        ("kv hex-stored value", &hex_inner),
        ("kv value that is not hex", &not_hex),
        ("kv value under an unsafe key", &unsafe_key_value),
        ("aws password", &aws_password),
        ("aws field next to a number", &aws_number_neighbour),
        ("ssm SecureString", &ssm_value),
        ("kv numeric secret", &pin),
        ("a value computed from the numeric secret", &pin_plus_one),
        ("a Vault token of this server", &own_vault_token),
    ]
    .into_iter()
    .map(|(what, value)| (what.to_owned(), value.as_bytes().to_vec()))
    .collect();
    let mut messages = Vec::new();
    let (mut succeeded, mut failed, mut files_checked) = (0, 0, 0);
    for planned in &plan {
        for token in tokens_in(&planned.request) {
            secrets.push((
                format!("service-account token of '{}'", planned.label),
                token.into_bytes(),
            ));
        }
        let result: Result<MountResponse, Status> = mount(
            &mut provider.client(planned.socket).await?,
            planned.request.clone(),
        )
        .await;
        match (&planned.outcome, result) {
            (Expect::Files(want), Ok(response)) => {
                let mut got: Vec<(String, i32)> = response
                    .files
                    .iter()
                    .map(|f| (f.path.clone(), f.mode))
                    .collect();
                got.sort();
                let mut want: Vec<(String, i32)> =
                    want.iter().map(|(p, m)| ((*p).to_owned(), *m)).collect();
                want.sort();
                assert_eq!(got, want, "{}: files and modes", planned.label);
                files_checked += got.len();
                succeeded += 1;
                collect_issued(planned.label, &response, &mut secrets);
            }
            (Expect::Fails(code), Err(status)) => {
                assert_eq!(
                    status.code(),
                    *code,
                    "{}: {}",
                    planned.label,
                    status.message()
                );
                messages.push(format!("{}: {}", planned.label, status.message()));
                failed += 1;
            }
            (Expect::Files(_), Err(status)) => {
                panic!(
                    "{}: expected files, got {:?}: {}",
                    planned.label,
                    status.code(),
                    status.message()
                )
            }
            (Expect::Fails(code), Ok(response)) => {
                panic!(
                    "{}: expected {code:?}, got {} files",
                    planned.label,
                    response.files.len()
                )
            }
        }
    }
    // What the files hold that was decoded from a stored form is checked in both forms.
    assert_eq!(text_of_first(&plan, &provider).await?, password);
    for call in aws.proxy.calls() {
        if let Some(issued) = call.issued {
            secrets.push((
                "AWS secret access key".to_owned(),
                issued.secret_access_key.into_bytes(),
            ));
            secrets.push((
                "AWS session token".to_owned(),
                issued.session_token.into_bytes(),
            ));
        }
    }

    // The same KV mount through the driver shim's local mode, both logging at trace: the files land on disk with
    // the modes asked for, and the shim's log joins the search.
    let shim_token = env.issuer.token(&app.pod, "vault")?;
    secrets.push((
        "the shim's service-account token".to_owned(),
        shim_token.jwt().as_bytes().to_vec(),
    ));
    let mut parameters = BTreeMap::from([
        ("roleName".to_owned(), app.role.clone()),
        ("vaultAddress".to_owned(), env.bao.addr()),
        ("vaultAuthMountPath".to_owned(), JWT_MOUNT.to_owned()),
        (
            "objects".to_owned(),
            crate::support::objects_yaml(&kv_objects),
        ),
    ]);
    parameters.insert("templates".to_owned(), templates.to_owned());
    let shim = shim_local(&provider, &app, &parameters, shim_token.jwt()).await?;
    let mut on_disk = 0;
    for (name, mode) in [
        ("password", 0o400),
        ("whole.json", 0o640),
        ("inner-b64", 0o600),
        ("inner-hex", 0o644),
        ("api.env", 0o440),
    ] {
        let written = std::fs::metadata(shim.target.join(name))?
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(written, mode, "the shim wrote {name} with mode {written:o}");
        on_disk += 1;
    }
    assert_eq!(
        std::fs::read_to_string(shim.target.join("password"))?,
        password
    );

    let metrics = provider.metrics().await?.text().to_owned();
    let logs = provider.logs();
    let log_lines = logs.lines().count() + shim.log.lines().count();
    let places: [(&str, String); 4] = [
        ("the provider's log", logs),
        ("an error message", messages.join("\n")),
        ("/metrics", metrics),
        ("the shim's log", shim.log.clone()),
    ];
    // Positive controls: the search finds what is there, so an empty result means something.
    assert!(
        places[0].1.contains(&namespace),
        "the trace log does not even name the pods' namespace"
    );
    assert!(
        places[3].1.contains("TRACE") || places[3].1.contains("trace"),
        "the shim did not log at trace level:\n{}",
        places[3].1
    );
    assert!(
        places[0].1.contains("\"level\":\"TRACE\""),
        "the provider did not log at trace level"
    );
    assert_eq!(
        token_shaped(&format!("token={own_vault_token}\n"), &vault_token_prefix).len(),
        1,
        "the Vault token search does not recognise a token of this server ({vault_token_prefix}...)"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("badhex") || m.contains("hex")),
        "the error messages are not the expected ones: {messages:#?}"
    );
    let mut leaks = Vec::new();
    let mut searched = 0;
    for (what, secret) in &secrets {
        for (form, needle) in forms(secret) {
            searched += 1;
            for (place, haystack) in &places {
                if haystack.contains(&needle) {
                    leaks.push(format!("{what} ({form}) appears in {place}"));
                }
            }
        }
    }
    for (place, haystack) in &places {
        for token in token_shaped(haystack, &vault_token_prefix) {
            leaks.push(format!(
                "a Vault token ({}...) appears in {place}",
                &token[..vault_token_prefix.len() + 4]
            ));
        }
    }

    let mut figures = Figures::new("secrecy");
    figures.line(format!(
        "secrecy: {} mounts ({succeeded} succeeded, {failed} failed as planned); {} secrets x {} forms = {searched} needles \
         searched in {log_lines} trace log lines (provider and shim), {} error messages and /metrics: {} found",
        plan.len(),
        secrets.len(),
        searched / secrets.len().max(1),
        messages.len(),
        leaks.len()
    ));
    figures.line(format!(
        "secrecy: {files_checked} response files and {on_disk} files the shim wrote carry exactly the requested modes; \
         {} sockets are owner-only (0600); Vault tokens ({vault_token_prefix}...) searched by shape",
        provider.names().len()
    ));
    for message in &messages {
        figures.line(format!("  message: {message}"));
    }
    figures.print();
    assert!(
        leaks.is_empty(),
        "secrets leaked:\n  {}",
        leaks.join("\n  ")
    );
    Ok(())
}

/// Mounts the first planned request again and returns its `password` file: the value is written, byte for byte.
async fn text_of_first(
    plan: &[Planned],
    provider: &courier_tests::ProviderProcess,
) -> anyhow::Result<String> {
    let response = mount(
        &mut provider.client(plan[0].socket).await?,
        plan[0].request.clone(),
    )
    .await?;
    Ok(text(&response, "password"))
}
