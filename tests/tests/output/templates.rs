//! The `templates` parameter: files rendered from the mount's objects, on every socket; what a template can and
//! cannot reach; how a failing template is reported; and the versions of rendered files.

use std::time::{Duration, Instant};

use courier_tests::calls::{assert_status, file, file_paths, mount, object_version, text};
use courier_tests::{ParameterType, ProviderBuilder};
use serde_json::json;
use tonic::Code;

use crate::support::{
    AwsSocket, VaultSocket, assert_no_secret, aws_case, bao, mount_on, obj, sm, ssm,
    templates_yaml, tpl, vault_case, vault_provider, version_ids,
};

const ENV_TEMPLATE: &str = "\
CERT={{ objects.cert }}
USER={{ objects[\"db-creds\"].data.data.username }}
PASS={{ objects.flat.password }}
PORT={{ objects.flat.port }}";

#[tokio::test]
async fn templates_read_strings_and_fields_on_every_vault_socket() -> anyhow::Result<()> {
    let case = vault_case("tpl-vault").await?;
    case.put(
        "tls",
        json!({"cert": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}),
    )
    .await?;
    case.put(
        "db",
        json!({"username": "app", "password": "pw-tpl", "port": 5432}),
    )
    .await?;
    let provider = vault_provider().await?;
    let objects = [
        obj("cert", &case.path("tls")).key("cert"),
        // Without secretKey the object is the whole response, JSON: fields reach data.data.
        obj("db-creds", &case.path("db")).hidden(),
        // With expandKeys the object is the data map; render: false writes none of its keys.
        obj("flat", &case.path("db")).expand().hidden(),
    ];
    let templates = templates_yaml(&[
        tpl("app.env", ENV_TEMPLATE).mode("0600"),
        tpl(
            "conf/url.txt",
            "postgres://{{ objects.flat.username }}@db:{{ objects.flat.port }}/app",
        ),
    ]);

    for socket in VaultSocket::ALL {
        let response = mount_on(
            &provider,
            socket.socket(),
            &case
                .request(socket, &objects)?
                .parameter("templates", templates.as_str())
                .permission(0o640),
        )
        .await?
        .map_err(|s| anyhow::anyhow!("{socket:?}: {s}"))?;

        assert_eq!(
            file_paths(&response),
            ["app.env", "cert", "conf/url.txt"],
            "{socket:?}"
        );
        assert_eq!(
            text(&response, "app.env"),
            "CERT=-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n\nUSER=app\nPASS=pw-tpl\nPORT=5432"
        );
        assert_eq!(
            text(&response, "conf/url.txt"),
            "postgres://app@db:5432/app"
        );
        assert_eq!(
            file(&response, "app.env").mode,
            0o600,
            "the template's filePermission"
        );
        assert_eq!(
            file(&response, "conf/url.txt").mode,
            0o640,
            "else the volume's permission"
        );
        assert_eq!(
            version_ids(&response),
            ["app.env", "cert", "conf/url.txt"],
            "{socket:?}: templates are objects for the driver; render: false objects are not"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_template_written_as_a_block_scalar_renders() -> anyhow::Result<()> {
    let case = vault_case("tpl-block").await?;
    case.put("db", json!({"username": "app", "password": "pw-block"}))
        .await?;
    let provider = vault_provider().await?;
    // As an author writes it in a SecretProviderClass manifest.
    let templates = "\
- path: config/database.yml
  filePermission: 0440
  template: |
    production:
      username: {{ objects.db.username }}
      password: \"{{ objects.db.password }}\"
";

    let response = mount(
        &mut provider.client("vault").await?,
        case.request(
            VaultSocket::Vault,
            &[obj("db", &case.path("db")).expand().hidden()],
        )?
        .parameter("templates", templates)
        .build()?,
    )
    .await?;

    assert_eq!(file_paths(&response), ["config/database.yml"]);
    let rendered = text(&response, "config/database.yml");
    assert_eq!(
        rendered, "production:\n  username: app\n  password: \"pw-block\"\n",
        "the template's last newline is kept: it is part of the file"
    );
    assert_eq!(file(&response, "config/database.yml").mode, 0o440);
    Ok(())
}

#[tokio::test]
async fn aws_templates_read_secrets_by_alias_and_by_name() -> anyhow::Result<()> {
    let case = aws_case("tpl-aws").await?;
    case.secret(
        "db",
        json!({"username": "app", "password": "pw-aws"}).to_string(),
    )
    .await?;
    case.parameter("cert", "CERT-PEM", ParameterType::SecureString)
        .await?;
    case.parameter("tree/host", "db.internal", ParameterType::String)
        .await?;
    let provider = case.provider().await?;
    let cert_name = case.param("cert");
    let tree = format!("{}/", case.param("tree"));
    let objects = [
        sm(&case.name("db")).alias("db").hidden(),
        ssm(&cert_name),
        ssm(&tree).alias("tree").expand().hidden(),
    ];
    // An object without objectAlias is known by its objectName.
    let template = format!(
        "{{{{ objects.db.username }}}}:{{{{ objects.db.password }}}}@{{{{ objects.tree.host }}}}\n{{{{ objects[\"{cert_name}\"] }}}}"
    );

    for socket in AwsSocket::ALL {
        let response = mount_on(
            &provider,
            socket.socket(),
            &case.request(socket, &objects)?.parameter(
                "templates",
                templates_yaml(&[tpl("dsn", &template).mode("\"0400\"")]),
            ),
        )
        .await?
        .map_err(|s| anyhow::anyhow!("{socket:?}: {s}"))?;

        let cert_file = cert_name.replace('/', "_");
        let mut expected = vec![cert_file.clone(), "dsn".to_owned()];
        expected.sort();
        assert_eq!(file_paths(&response), expected, "{socket:?}");
        assert_eq!(text(&response, "dsn"), "app:pw-aws@db.internal\nCERT-PEM");
        assert_eq!(file(&response, "dsn").mode, 0o400);
        assert_eq!(text(&response, &cert_file), "CERT-PEM");
    }
    Ok(())
}

#[tokio::test]
async fn template_versions_change_only_when_the_output_changes() -> anyhow::Result<()> {
    let case = vault_case("tpl-versions").await?;
    case.put(
        "db",
        json!({"username": "app", "password": "one", "comment": "a"}),
    )
    .await?;
    let provider = vault_provider().await?;
    let request = case
        .request(VaultSocket::Vault, &[obj("db", &case.path("db"))])?
        .parameter(
            "templates",
            templates_yaml(&[tpl("pass.txt", "{{ objects.db.data.data.password }}")]),
        );
    let mut client = provider.client("vault").await?;

    let first = mount(&mut client, request.build()?).await?;
    // A change the template does not read: the object changes, the template's output does not.
    case.put(
        "db",
        json!({"username": "app", "password": "one", "comment": "b"}),
    )
    .await?;
    let second = mount(&mut client, request.build()?).await?;
    // A change the template reads.
    case.put(
        "db",
        json!({"username": "app", "password": "two", "comment": "b"}),
    )
    .await?;
    let third = mount(&mut client, request.build()?).await?;

    assert_eq!(version_ids(&first), ["db", "pass.txt"]);
    assert_ne!(object_version(&first, "db"), object_version(&second, "db"));
    assert_eq!(
        object_version(&first, "pass.txt"),
        object_version(&second, "pass.txt"),
        "same output, same version"
    );
    assert_eq!(text(&third, "pass.txt"), "two");
    assert_ne!(
        object_version(&second, "pass.txt"),
        object_version(&third, "pass.txt"),
        "new output, new version"
    );
    for v in [&first, &second, &third] {
        let version = object_version(v, "pass.txt");
        assert!(
            !version.contains("one") && !version.contains("two"),
            "a version is opaque: {version}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_undefined_name_fails_with_the_template_line_expression_and_objects()
-> anyhow::Result<()> {
    let case = vault_case("tpl-undefined").await?;
    case.put(
        "app",
        json!({"cert": "undefined-cert-secret", "password": "undefined-pw-secret"}),
    )
    .await?;
    let provider = vault_provider().await?;
    let objects = [
        obj("cert", &case.path("app")).key("cert"),
        obj("db", &case.path("app")).expand().hidden(),
    ];

    // An object that does not exist, in the second template, second line.
    let result = mount_on(
        &provider,
        "vault",
        &case.request(VaultSocket::Vault, &objects)?.parameter(
            "templates",
            templates_yaml(&[
                tpl("ok.txt", "{{ objects.cert }}"),
                tpl(
                    "app.env",
                    "CERT={{ objects.cert }}\nPASS={{ objects.database.password }}",
                ),
            ]),
        ),
    )
    .await?;
    let status = assert_status(
        result,
        Code::InvalidArgument,
        &[
            "templates[1]",
            "\"app.env\"",
            "line 2",
            "undefined",
            "objects.database.password",
            "objects available: cert, db",
        ],
    );
    assert_no_secret(&status, &["undefined-cert-secret", "undefined-pw-secret"]);

    // A field that does not exist on an object that does.
    let result = mount_on(
        &provider,
        "courier",
        &case.request(VaultSocket::NativeVault, &objects)?.parameter(
            "templates",
            templates_yaml(&[tpl("user.txt", "{{ objects.db.username }}")]),
        ),
    )
    .await?;
    let status = assert_status(
        result,
        Code::InvalidArgument,
        &[
            "templates[0]",
            "\"user.txt\"",
            "line 1",
            "objects.db.username",
            "cert, db",
        ],
    );
    assert_no_secret(&status, &["undefined-cert-secret", "undefined-pw-secret"]);
    Ok(())
}

#[tokio::test]
async fn templates_cannot_include_files_read_the_environment_or_run_forever() -> anyhow::Result<()>
{
    let case = vault_case("tpl-sandbox").await?;
    case.put("app", json!({"v": "sandbox-secret"})).await?;
    let canary = format!("canary-{}", case.id);
    let provider = ProviderBuilder::new()
        .provider("vault")
        .vault_addr(bao().await?.addr())
        .env("COURIER_TEMPLATE_CANARY", canary.as_str())
        .start()
        .await?;
    let mut client = provider.client("vault").await?;

    let cases: &[(&str, &[&str])] = &[
        ("{% include \"/etc/passwd\" %}", &["templates[0]"]),
        ("{% include \"other.tmpl\" %}", &["templates[0]"]),
        ("{% extends \"/etc/hostname\" %}", &["templates[0]"]),
        ("{% import \"/etc/hosts\" as h %}", &["templates[0]"]),
        (
            "{{ env.COURIER_TEMPLATE_CANARY }}",
            &["templates[0]", "undefined"],
        ),
        (
            "{{ environ[\"COURIER_TEMPLATE_CANARY\"] }}",
            &["templates[0]", "undefined"],
        ),
        (
            "{{ getenv(\"COURIER_TEMPLATE_CANARY\") }}",
            &["templates[0]"],
        ),
        (
            "{{ lookup(\"env\", \"COURIER_TEMPLATE_CANARY\") }}",
            &["templates[0]"],
        ),
        (
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
            &["templates[0]", "too long"],
        ),
        (
            "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
            &["templates[0]"],
        ),
    ];
    for (source, words) in cases {
        let started = Instant::now();
        let result = mount(
            &mut client,
            one_template(&case, "out", source)?,
        )
        .await;
        let elapsed = started.elapsed();
        eprintln!("template {source:?}:");
        let status = assert_status(result, Code::InvalidArgument, words);
        assert_no_secret(&status, &[&canary, "sandbox-secret", "root:x:0:0"]);
        // The stop itself is shown by the status naming it ("too long" for the loop); this bound only
        // catches a template the provider never stops, so it is generous enough for any loaded machine.
        assert!(
            elapsed < Duration::from_secs(60),
            "{source:?} hung for {elapsed:?}: a template must be stopped"
        );
    }
    Ok(())
}

#[tokio::test]
async fn template_errors_never_show_secret_values() -> anyhow::Result<()> {
    let case = vault_case("tpl-leak").await?;
    let secret = format!("leak-canary-{}", case.id);
    // A numeric secret, and values computed from secrets: engines quote operands of
    // failed arithmetic, conversions and comparisons.
    let pin = format!("86753{}", case.id.bytes().map(|b| u32::from(b % 10)).fold(0u32, |a, d| (a * 10 + d) % 100_000));
    case.put("db", json!({"password": secret, "port": 5432, "pin": pin.clone()}))
        .await?;
    let provider = vault_provider().await?;
    let mut client = provider.client("vault").await?;

    // Templates that fail while handling a secret value: the value must not reach the message (which kubelet
    // records as a pod event).
    let sources = [
        "{{ objects.db.password + 1 }}",
        "{{ objects.db.password | int }}",
        "{{ range(objects.db.password) }}",
        "{{ objects.db.password() }}",
        "{{ objects.db.password.nope() }}",
        "{{ objects[objects.db.password] }}",
        "{{ objects.db[objects.db.password] }}",
        "{% for a, b in objects.db.password %}{% endfor %}",
        "{{ [1] | select(objects.db.password) | list }}",
        "{% include objects.db.password %}",
        "{% import objects.db.password as m %}",
        "{% extends objects.db.password %}",
        "{{ (objects.db.pin ~ '') | int / 0 }}",
        "{{ (objects.db.pin | int) // 0 }}",
        "{{ (objects.db.pin | int) % 0 }}",
        "{{ (objects.db.pin | int) * 99999999999999999999 }}",
        "{{ (objects.db.pin | int) ** 999 }}",
        "{{ ((objects.db.pin | int) + 1) / 0 }}",
        "{{ range((objects.db.pin | int) * 1000) }}",
        "{{ [1, 2][objects.db.pin | int] }}",
        "{{ (objects.db.pin | int) | batch(0) }}",
        "{{ objects.db.password | round }}",
        "{{ (objects.db.pin | int) < 'x' }}",
        "{{ objects.db.password | indent(objects.db.password) }}",
        "{{ objects.db.password | attr(objects.db.password) }}",
        "{{ (objects.db.pin ~ objects.db.password) | int | abs / 0 }}",
    ];
    let mut leaks = Vec::new();
    let mut failures = 0;
    for source in sources {
        let result = mount(
            &mut client,
            case.request(
                VaultSocket::Vault,
                &[obj("db", &case.path("db")).expand().hidden()],
            )?
            .parameter("templates", templates_yaml(&[tpl("out", source)]))
            .build()?,
        )
        .await;
        eprintln!("template {source:?}:");
        // Some of these render (large numbers are valid); only failures have messages.
        if result.is_ok() {
            continue;
        }
        failures += 1;
        let status = assert_status(result, Code::InvalidArgument, &["templates[0]", "\"out\""]);
        if status.message().contains(&secret) || status.message().contains(&pin) {
            leaks.push(format!("{source}  =>  {}", status.message()));
        }
    }
    assert!(failures >= 20, "only {failures} of {} templates failed: the cases no longer test messages", sources.len());
    assert!(
        leaks.is_empty(),
        "template errors showed the secret value:\n{}",
        leaks.join("\n")
    );
    Ok(())
}

#[tokio::test]
async fn a_template_with_an_unsafe_path_is_refused() -> anyhow::Result<()> {
    let case = vault_case("tpl-path").await?;
    let provider = vault_provider().await?;

    for (path, words) in [
        (
            "../escape",
            vec!["templates[0].path", "\"../escape\"", "'..'"],
        ),
        ("/etc/passwd", vec!["templates[0].path", "relative"]),
        ("..data/x", vec!["templates[0].path", "'..'"]),
    ] {
        let result = mount_on(
            &provider,
            "openbao",
            &case
                .request(VaultSocket::OpenBao, &[obj("a", &case.path("a")).key("a")])?
                .parameter("templates", templates_yaml(&[tpl(path, "x")])),
        )
        .await?;
        assert_status(result, Code::InvalidArgument, &words);
    }
    Ok(())
}

#[tokio::test]
async fn nothing_to_write_is_refused() -> anyhow::Result<()> {
    let case = vault_case("tpl-nothing").await?;
    case.put("app", json!({"a": "nothing-secret"})).await?;
    let provider = vault_provider().await?;

    for socket in VaultSocket::ALL {
        let result = mount_on(
            &provider,
            socket.socket(),
            &case.request(
                socket,
                &[
                    obj("a", &case.path("app")).key("a").hidden(),
                    obj("all", &case.path("app")).expand().hidden(),
                ],
            )?,
        )
        .await?;
        let status = assert_status(
            result,
            Code::InvalidArgument,
            &["nothing would be written", "render: false", "templates"],
        );
        assert_no_secret(&status, &["nothing-secret"]);
    }

    let aws = aws_case("tpl-nothing-aws").await?;
    aws.secret("s", "aws-nothing-secret").await?;
    let provider = aws.provider().await?;
    for socket in AwsSocket::ALL {
        let result = mount_on(
            &provider,
            socket.socket(),
            &aws.request(socket, &[sm(&aws.name("s")).alias("s").hidden()])?,
        )
        .await?;
        assert_status(result, Code::InvalidArgument, &["nothing would be written"]);
    }
    Ok(())
}

#[tokio::test]
async fn template_bombs_fail_alone_without_growing_the_provider() -> anyhow::Result<()> {
    let case = vault_case("tpl-bomb").await?;
    case.put("app", json!({"v": "bomb-secret"})).await?;
    let provider = vault_provider().await?;
    let mut client = provider.client("vault").await?;
    let before = courier_tests::ProcessMemory::of(provider.pid())?;

    // Each reaches rendering (the object exists and the pod may read it) and tries
    // to build far more than a template may: the renderer stops, the template is named.
    let bombs: &[(&str, &[&str])] = &[
        ("{% for i in range(20) %}{{ \"x\" * 100000000 }}{% endfor %}", &["templates[0]", "\"out\""]),
        ("{{ objects.v * 50000000 }}", &["templates[0]"]),
        (
            "{% set ns = namespace(s=\"xxxxxxxxxxxxxxxx\") %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
            &["templates[0]"],
        ),
        ("{{ range(100000) | join(\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\") }}", &["templates[0]"]),
        ("{% for i in range(100000) %}{{ objects.v }}{{ \"y\" * 1000 }}{% endfor %}", &["templates[0]"]),
        ("{{ (\"x\" * 10000000) | replace(\"x\", \"yyyyyyyyyy\") | length }}", &["templates[0]"]),
        ("{{ (\"a\\n\" * 1000) | indent(100000) | length }}", &["templates[0]"]),
    ];
    for (source, words) in bombs {
        let result = mount(
            &mut client,
            one_template(&case, "out", source)?,
        )
        .await;
        eprintln!("template {source:?}:");
        let status = assert_status(result, Code::InvalidArgument, words);
        eprintln!("  {}", status.message());
        assert_no_secret(&status, &["bomb-secret"]);
        // The provider keeps serving after each bomb.
        let ok = mount(
            &mut client,
            one_template(&case, "ok", "v={{ objects.v }}")?,
        )
        .await
        .map_err(|s| anyhow::anyhow!("after {source:?}: {s}"))?;
        assert_eq!(text(&ok, "ok"), "v=bomb-secret");
    }
    let after = courier_tests::ProcessMemory::of(provider.pid())?;
    eprintln!("provider memory before {before:?}, after {after:?}");
    // The values were built (and refused) in the renderer, not in the provider: its
    // peak stays far below even one bomb's 100 MB string.
    assert!(
        after.peak_rss_bytes < before.peak_rss_bytes + 48 * 1024 * 1024,
        "the provider's peak grew from {} to {} bytes",
        before.peak_rss_bytes,
        after.peak_rss_bytes
    );
    Ok(())
}

/// A mount of the object `v` (key `v` of the case's `app` secret) with one template at `path`.
fn one_template(case: &crate::support::VaultCase, path: &str, source: &str) -> anyhow::Result<courier_proto::v1alpha1::MountRequest> {
    case.request(VaultSocket::Vault, &[obj("v", &case.path("app")).key("v")])?
        .parameter("templates", templates_yaml(&[tpl(path, source)]))
        .build()
}
