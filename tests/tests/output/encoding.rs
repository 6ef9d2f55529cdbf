//! `encoding` and `objectEncoding` (utf-8, base64, hex) on Vault and on AWS Secrets Manager and SSM: the file gets
//! the decoded bytes; the two spellings cannot disagree; a value not in its encoding is named, never shown.

use courier_tests::ParameterType;
use courier_tests::calls::{assert_status, file, mount, text};
use serde_json::json;
use tonic::Code;

use crate::support::{
    AwsSocket, VaultSocket, assert_no_secret, aws_case, b64, hex, mount_on, obj, sm, ssm,
    vault_case, vault_provider,
};

/// A Java keystore's magic number and some bytes that are not UTF-8.
const KEYSTORE: &[u8] = &[
    0xfe, 0xed, 0xfe, 0xed, 0x00, 0x00, 0x00, 0x02, 0x80, 0xff, 0x0a,
];

#[tokio::test]
async fn vault_values_are_decoded_with_either_spelling() -> anyhow::Result<()> {
    let case = vault_case("enc-vault").await?;
    case.put(
        "blob",
        json!({"b64": b64(KEYSTORE), "hex": hex(KEYSTORE), "text": "grüße"}),
    )
    .await?;
    let provider = vault_provider().await?;
    let path = case.path("blob");
    let objects = [
        obj("via-encoding.jks", &path).key("b64").encoding("base64"),
        obj("via-object-encoding.jks", &path)
            .key("b64")
            .object_encoding("base64"),
        obj("hex.jks", &path).key("hex").object_encoding("hex"),
        obj("both-agree.jks", &path)
            .key("hex")
            .encoding("hex")
            .object_encoding("HEX"),
        obj("text", &path).key("text").object_encoding("utf-8"),
    ];

    for socket in VaultSocket::ALL {
        let response = mount_on(&provider, socket.socket(), &case.request(socket, &objects)?)
            .await?
            .map_err(|s| anyhow::anyhow!("{socket:?}: {s}"))?;
        for name in [
            "via-encoding.jks",
            "via-object-encoding.jks",
            "hex.jks",
            "both-agree.jks",
        ] {
            assert_eq!(
                file(&response, name).contents,
                KEYSTORE,
                "{socket:?}: {name}"
            );
        }
        assert_eq!(text(&response, "text"), "grüße");
    }
    Ok(())
}

#[tokio::test]
async fn an_aws_keystore_stored_base64_comes_out_as_its_bytes() -> anyhow::Result<()> {
    let case = aws_case("enc-aws").await?;
    case.secret("keystore", b64(KEYSTORE)).await?;
    case.parameter("keystore-hex", &hex(KEYSTORE), ParameterType::SecureString)
        .await?;
    case.parameter("keystore-b64", &b64(KEYSTORE), ParameterType::String)
        .await?;
    let provider = case.provider().await?;
    let objects = [
        sm(&case.name("keystore"))
            .alias("sm.jks")
            .encoding("base64"),
        ssm(&case.param("keystore-hex"))
            .alias("ssm-hex.jks")
            .object_encoding("hex"),
        ssm(&case.param("keystore-b64"))
            .alias("ssm-b64.jks")
            .object_encoding("base64"),
    ];

    for socket in AwsSocket::ALL {
        let response = mount_on(&provider, socket.socket(), &case.request(socket, &objects)?)
            .await?
            .map_err(|s| anyhow::anyhow!("{socket:?}: {s}"))?;
        assert_eq!(file(&response, "sm.jks").contents, KEYSTORE, "{socket:?}");
        assert_eq!(
            file(&response, "ssm-hex.jks").contents,
            KEYSTORE,
            "{socket:?}"
        );
        assert_eq!(
            file(&response, "ssm-b64.jks").contents,
            KEYSTORE,
            "{socket:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn conflicting_encoding_and_object_encoding_are_refused() -> anyhow::Result<()> {
    let case = vault_case("enc-conflict").await?;
    let provider = vault_provider().await?;
    for socket in VaultSocket::ALL {
        let result = mount_on(
            &provider,
            socket.socket(),
            &case.request(
                socket,
                &[
                    obj("ok", &case.path("x")).key("a"),
                    obj("bad", &case.path("x"))
                        .key("a")
                        .encoding("base64")
                        .object_encoding("hex"),
                ],
            )?,
        )
        .await?;
        assert_status(
            result,
            Code::InvalidArgument,
            &["objects[1].objectEncoding", "conflicts with encoding"],
        );
    }

    let aws = aws_case("enc-conflict-aws").await?;
    let provider = aws.provider().await?;
    for socket in AwsSocket::ALL {
        let result = mount_on(
            &provider,
            socket.socket(),
            &aws.request(
                socket,
                &[sm(&aws.name("x")).encoding("hex").object_encoding("base64")],
            )?,
        )
        .await?;
        assert_status(
            result,
            Code::InvalidArgument,
            &["objects[0].objectEncoding", "conflicts with encoding"],
        );
    }
    assert!(aws.proxy.calls().is_empty(), "refused before any AWS call");
    Ok(())
}

#[tokio::test]
async fn a_value_not_in_its_encoding_is_named_but_not_shown() -> anyhow::Result<()> {
    let case = vault_case("enc-bad").await?;
    case.put("x", json!({"a": "not-base64-secret!!"})).await?;
    let provider = vault_provider().await?;
    let result = mount_on(
        &provider,
        "vault",
        &case.request(
            VaultSocket::Vault,
            &[obj("x.bin", &case.path("x")).key("a").encoding("base64")],
        )?,
    )
    .await?;
    let status = assert_status(
        result,
        Code::InvalidArgument,
        &["objects[0]", "\"x.bin\"", "not valid base64"],
    );
    assert_no_secret(&status, &["not-base64-secret"]);

    let aws = aws_case("enc-bad-aws").await?;
    aws.parameter("p", "zz-not-hex-secret", ParameterType::SecureString)
        .await?;
    let provider = aws.provider().await?;
    let result = mount(
        &mut provider.client("aws").await?,
        aws.request(
            AwsSocket::Aws,
            &[ssm(&aws.param("p")).alias("p.bin").object_encoding("hex")],
        )?
        .build()?,
    )
    .await;
    let status = assert_status(
        result,
        Code::InvalidArgument,
        &["objects[0]", "\"p.bin\"", "not valid hex"],
    );
    assert_no_secret(&status, &["zz-not-hex-secret"]);
    Ok(())
}
