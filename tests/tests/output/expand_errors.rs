//! What `expandKeys` refuses, and how it says so: unsafe key names, empty secrets, values that are not JSON
//! objects, and files that clash with other outputs. No message may show a secret value.

use courier_tests::ParameterType;
use courier_tests::calls::{assert_status, mount};
use serde_json::json;
use tonic::Code;

use crate::support::{
    AwsSocket, VaultSocket, assert_no_secret, aws_case, mount_on, obj, sm, ssm, templates_yaml,
    tpl, vault_case, vault_provider,
};

#[tokio::test]
async fn unsafe_key_names_are_refused_naming_the_object_and_the_key() -> anyhow::Result<()> {
    let case = vault_case("expand-unsafe").await?;
    let provider = vault_provider().await?;
    let mut client = provider.client("vault").await?;

    // (key, what the message says about it)
    let cases = [
        ("../x", "'/'"),
        ("a/b", "'/'"),
        ("..data", "'..'"),
        ("", "empty"),
    ];
    for (i, (key, why)) in cases.iter().enumerate() {
        let secret = format!("secret-value-{i}-{}", case.id);
        let name = format!("s{i}");
        let mut data = serde_json::Map::new();
        data.insert("fine".to_owned(), json!("ok"));
        data.insert((*key).to_owned(), json!(secret));
        case.put(&name, serde_json::Value::Object(data)).await?;
        let result = mount(
            &mut client,
            case.request(
                VaultSocket::Vault,
                &[
                    obj("other", &case.path(&name)).key("fine"),
                    obj("cfg", &case.path(&name)).expand(),
                ],
            )?
            .build()?,
        )
        .await;
        let quoted = format!("{key:?}");
        let status = assert_status(
            result,
            Code::InvalidArgument,
            &["objects[1]", "\"cfg\"", "expandKeys", &quoted, why],
        );
        assert_no_secret(&status, &[&secret]);
    }
    Ok(())
}

#[tokio::test]
async fn unsafe_json_keys_of_an_aws_secret_are_refused() -> anyhow::Result<()> {
    let case = aws_case("sm-expand-unsafe").await?;
    case.secret(
        "bad",
        json!({"ok": "fine", "../../etc/passwd": "sm-secret-value"}).to_string(),
    )
    .await?;
    let provider = case.provider().await?;

    for socket in AwsSocket::ALL {
        let result = mount_on(
            &provider,
            socket.socket(),
            &case.request(socket, &[sm(&case.name("bad")).alias("bad").expand()])?,
        )
        .await?;
        let status = assert_status(
            result,
            Code::InvalidArgument,
            &[
                "objects[0]",
                "\"bad\"",
                "\"../../etc/passwd\"",
                "not a safe file name",
            ],
        );
        assert_no_secret(&status, &["sm-secret-value"]);
    }
    Ok(())
}

#[tokio::test]
async fn an_ssm_parameter_name_that_is_not_a_safe_file_is_refused() -> anyhow::Result<()> {
    let case = aws_case("param-tree-unsafe").await?;
    case.parameter("app/ok", "fine", ParameterType::String)
        .await?;
    case.parameter("app/..data", "ssm-secret-value", ParameterType::String)
        .await?;
    let provider = case.provider().await?;

    let result = mount_on(
        &provider,
        "aws",
        &case.request(
            AwsSocket::Aws,
            &[ssm(&format!("{}/", case.param("app")))
                .alias("conf")
                .expand()],
        )?,
    )
    .await?;

    let status = assert_status(
        result,
        Code::InvalidArgument,
        &[
            "objects[0]",
            "expandKeys",
            "\"..data\"",
            "not a safe file name",
        ],
    );
    assert_no_secret(&status, &["ssm-secret-value"]);
    Ok(())
}

#[tokio::test]
async fn an_empty_secret_has_nothing_to_expand() -> anyhow::Result<()> {
    let case = vault_case("expand-empty").await?;
    case.put("empty", json!({})).await?;
    let provider = vault_provider().await?;

    for socket in VaultSocket::ALL {
        let result = mount_on(
            &provider,
            socket.socket(),
            &case.request(socket, &[obj("cfg", &case.path("empty")).expand()])?,
        )
        .await?;
        assert_status(
            result,
            Code::NotFound,
            &["objects[0]", "\"cfg\"", "expandKeys", "no keys"],
        );
    }

    let aws = aws_case("sm-expand-empty").await?;
    aws.secret("empty", "{}").await?;
    let provider = aws.provider().await?;
    for socket in AwsSocket::ALL {
        let result = mount_on(
            &provider,
            socket.socket(),
            &aws.request(socket, &[sm(&aws.name("empty")).alias("cfg").expand()])?,
        )
        .await?;
        assert_status(
            result,
            Code::NotFound,
            &["objects[0]", "\"cfg\"", "no keys"],
        );
    }
    Ok(())
}

#[tokio::test]
async fn expand_keys_on_a_value_that_is_not_a_json_object_says_what_it_found() -> anyhow::Result<()>
{
    let case = vault_case("expand-shape").await?;
    case.put(
        "shapes",
        json!({
            "list": ["list-secret-1", "list-secret-2"],
            "text": "text-secret-value",
            "number": 987654321,
            "flag": true,
        }),
    )
    .await?;
    let provider = vault_provider().await?;
    let mut client = provider.client("openbao").await?;
    let secrets = ["list-secret-1", "text-secret-value", "987654321"];

    for (key, found) in [
        ("list", "a list"),
        ("text", "not JSON"),
        ("number", "a number"),
        ("flag", "a boolean"),
    ] {
        let result = mount(
            &mut client,
            case.request(
                VaultSocket::OpenBao,
                &[obj(key, &case.path("shapes")).key(key).expand()],
            )?
            .build()?,
        )
        .await;
        let status = assert_status(
            result,
            Code::InvalidArgument,
            &["objects[0]", "expandKeys", "needs a JSON object", found],
        );
        assert_no_secret(&status, &secrets);
    }

    let aws = aws_case("sm-expand-shape").await?;
    aws.secret("text", "sm-plain-secret").await?;
    aws.secret("list", json!(["sm-list-secret"]).to_string())
        .await?;
    let provider = aws.provider().await?;
    for (local, found) in [("text", "not JSON"), ("list", "a list")] {
        let result = mount_on(
            &provider,
            "courier",
            &aws.request(
                AwsSocket::Native,
                &[sm(&aws.name(local)).alias(local).expand()],
            )?,
        )
        .await?;
        let status = assert_status(
            result,
            Code::InvalidArgument,
            &["objects[0]", "expandKeys", found],
        );
        assert_no_secret(&status, &["sm-plain-secret", "sm-list-secret"]);
    }
    Ok(())
}

#[tokio::test]
async fn an_expanded_file_that_another_object_also_writes_is_refused() -> anyhow::Result<()> {
    let case = vault_case("expand-clash").await?;
    case.put("app", json!({"x": "from-expansion", "y": "y"}))
        .await?;
    case.put("other", json!({"v": "from-plain"})).await?;
    let provider = vault_provider().await?;

    for socket in VaultSocket::ALL {
        // `cfg` expands to cfg/x and cfg/y; a plain object writes cfg/x too.
        let result = mount_on(
            &provider,
            socket.socket(),
            &case.request(
                socket,
                &[
                    obj("cfg", &case.path("app")).expand(),
                    obj("cfg/x", &case.path("other")).key("v"),
                ],
            )?,
        )
        .await?;
        let status = assert_status(
            result,
            Code::InvalidArgument,
            &["\"cfg/x\" and \"cfg/x\"", "same file"],
        );
        assert_no_secret(&status, &["from-expansion", "from-plain"]);
    }

    // A template writing an expanded file, and two templates writing one file.
    for (templates, words) in [
        (
            templates_yaml(&[tpl("cfg/y", "{{ objects.cfg.x }}")]),
            ["\"cfg/y\" and \"cfg/y\"", "same file"],
        ),
        (
            templates_yaml(&[tpl("out.txt", "a"), tpl("out.txt", "b")]),
            ["\"out.txt\" and \"out.txt\"", "same file"],
        ),
    ] {
        let result = mount_on(
            &provider,
            "openbao",
            &case
                .request(
                    VaultSocket::OpenBao,
                    &[obj("cfg", &case.path("app")).expand()],
                )?
                .parameter("templates", templates),
        )
        .await?;
        let status = assert_status(result, Code::InvalidArgument, &words);
        assert_no_secret(&status, &["from-expansion"]);
    }
    Ok(())
}

#[tokio::test]
async fn a_file_where_an_expansion_needs_a_directory_is_refused() -> anyhow::Result<()> {
    let case = vault_case("expand-dir-clash").await?;
    case.put("app", json!({"x": "from-expansion"})).await?;
    let provider = vault_provider().await?;

    // A template writing `cfg` where the expansion needs `cfg/` as a directory.
    let result = mount_on(
        &provider,
        "vault",
        &case
            .request(
                VaultSocket::Vault,
                &[obj("cfg", &case.path("app")).expand()],
            )?
            .parameter(
                "templates",
                templates_yaml(&[tpl("cfg", "{{ objects.cfg.x }}")]),
            ),
    )
    .await?;
    let status = assert_status(
        result,
        Code::InvalidArgument,
        &["\"cfg\"", "\"cfg/x\"", "directory"],
    );
    assert_no_secret(&status, &["from-expansion"]);

    // On AWS: an SSM path expanded at the root writes app/x; a secret aliased `app` is a file there.
    let aws = aws_case("param-tree-clash").await?;
    aws.parameter("tree/app/x", "ssm-x", ParameterType::String)
        .await?;
    aws.secret("plain", "sm-plain").await?;
    let provider = aws.provider().await?;
    for socket in AwsSocket::ALL {
        let result = mount_on(
            &provider,
            socket.socket(),
            &aws.request(
                socket,
                &[
                    sm(&aws.name("plain")).alias("app"),
                    ssm(&format!("{}/", aws.param("tree"))).expand(),
                ],
            )?,
        )
        .await?;
        let status = assert_status(
            result,
            Code::InvalidArgument,
            &["\"app\" and \"app/x\"", "directory"],
        );
        assert_no_secret(&status, &["ssm-x", "sm-plain"]);
    }
    Ok(())
}
