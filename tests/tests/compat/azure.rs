//! `azure.sock`: SecretProviderClasses of Azure/secrets-store-csi-driver-provider-azure (its `examples/keyvault-*`
//! manifests, comments and all, and its e2e fixtures) mount as they mount there, against the HTTPS Entra/Key Vault
//! stand-in.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use courier_tests::calls::{assert_status, file, file_paths, mount, text};
use courier_tests::{CertFormat, TestCertificate, TestKey};
use tonic::Code;

use crate::azure_support::{Case, VAULT, case, obj};

/// The request for `objects` written as the anchor's manifests write them (the `objects` text verbatim).
fn request(case: &Case, objects: &str) -> anyhow::Result<courier_tests::MountRequestBuilder> {
    Ok(case
        .request(&[obj("unused", "secret")])?
        .parameter("objects", objects)
        .parameter("cloudName", ""))
}

// azure examples/keyvault-secrets/v1alpha1_secretproviderclass_secrets.yaml (its third object, whose
// `objectEncoding: "SECRET_ALIAS"` the Azure provider itself refuses, is left out).
#[tokio::test]
async fn keyvault_secrets_example() -> anyhow::Result<()> {
    let case = case("compat-azure-secrets").await?;
    case.secret("secret1", "value-1");
    case.secret("secret2", "value-2");
    let provider = case.provider().await?;
    let objects = r#"array:
  - |
    objectName: secret1
    objectType: secret                    # object types: secret, key or cert
    objectVersion: ""                     # [OPTIONAL] object versions, default to latest if empty
  - |
    objectName: secret2
    objectType: secret
    objectVersion: ""
    objectAlias: "SECRET_ALIAS"           # [OPTIONAL] specify the filename of the object when written to disk.
"#;
    let response = mount(
        &mut provider.client("azure").await?,
        request(&case, objects)?.build()?,
    )
    .await?;
    assert_eq!(file_paths(&response), ["SECRET_ALIAS", "secret1"]);
    assert_eq!(text(&response, "secret1"), "value-1");
    assert_eq!(text(&response, "SECRET_ALIAS"), "value-2");
    assert_eq!(file(&response, "secret1").mode, 0o644);
    Ok(())
}

// azure examples/keyvault-keys/v1alpha1_secretproviderclass_keys.yaml.
#[tokio::test]
async fn keyvault_keys_example() -> anyhow::Result<()> {
    let case = case("compat-azure-keys").await?;
    let (key1, key2) = (TestKey::rsa()?, TestKey::ec_p256()?);
    case.standin.set_key(VAULT, "key1", &key1);
    case.standin.set_key(VAULT, "key2", &key2);
    let provider = case.provider().await?;
    let objects = r#"array:
  - |
    objectName: key1
    objectType: key                       # object types: secret, key or cert
    objectVersion: ""                     # [OPTIONAL] object versions, default to latest if empty
  - |
    objectName: key2
    objectType: key
    objectVersion: ""
    objectAlias: "KEY_ALIAS"              # [OPTIONAL] specify the filename of the object when written to disk.
"#;
    let response = mount(
        &mut provider.client("azure").await?,
        request(&case, objects)?.build()?,
    )
    .await?;
    assert_eq!(text(&response, "key1"), key1.public_key_pem());
    assert_eq!(text(&response, "KEY_ALIAS"), key2.public_key_pem());
    Ok(())
}

// azure examples/keyvault-certs/v1alpha1_secretproviderclass_certs.yaml: one certificate as cert, key and secret,
// and a PKCS#12 one as PFX text and as PFX bytes.
#[tokio::test]
async fn keyvault_certs_example() -> anyhow::Result<()> {
    let case = case("compat-azure-certs").await?;
    let cert1 = TestCertificate::generate("cert1.example")?;
    let cert2 = TestCertificate::generate("cert2.example")?;
    case.standin
        .import_certificate(VAULT, "cert1", &cert1, CertFormat::Pem);
    case.standin
        .import_certificate(VAULT, "cert2-pfx", &cert2, CertFormat::Pfx);
    let provider = case.provider().await?;
    let objects = r#"array:
  - |
    objectName: cert1
    objectType: cert                      # Setting objectType: cert will fetch and write only the certificate from keyvault
    objectVersion: ""                     # [OPTIONAL] object versions, default to latest if empty
  - |
    objectName: cert1
    objectAlias: cert1-pub-key
    objectType: key                       # Setting objectType: key will fetch and write only the public key from keyvault
    objectVersion: ""
  - |
    objectName: cert1
    objectAlias: cert1-secret
    objectType: secret                    # the certificate and private key, in a single file
    objectVersion: ""
  - |
    objectName: cert2-pfx
    objectAlias: cert2-secret-pfx
    objectType: secret
    objectVersion: ""
    objectFormat: pfx                     # [OPTIONAL] pem or pfx; pfx only with objectType: secret
  - |
    objectName: cert2-pfx
    objectAlias: cert2-secret-pfx-binary
    objectType: secret
    objectVersion: ""
    objectFormat: pfx
    objectEncoding: base64                # the base64 decoded pfx binary
"#;
    let response = mount(
        &mut provider.client("azure").await?,
        request(&case, objects)?
            .parameter("useVMManagedIdentity", "false")
            .build()?,
    )
    .await?;
    assert_eq!(text(&response, "cert1"), cert1.leaf_pem());
    assert_eq!(
        text(&response, "cert1-pub-key"),
        cert1.key().public_key_pem()
    );
    assert_eq!(
        text(&response, "cert1-secret"),
        format!("{}{}", cert1.private_key_pem(), cert1.chain_pem().concat())
    );
    assert_eq!(
        text(&response, "cert2-secret-pfx"),
        BASE64.encode(cert2.pfx()?)
    );
    assert_eq!(
        file(&response, "cert2-secret-pfx-binary").contents,
        cert2.pfx()?
    );
    Ok(())
}

// azure test/e2e/multiple_secret_versions_test.go: objectVersionHistory 5 writes `secret1/0` (the newest) and, with
// an alias, `SECRET_1/0`.
#[tokio::test]
async fn e2e_multiple_secret_versions() -> anyhow::Result<()> {
    let case = case("compat-azure-history").await?;
    case.secret("secret1", "old");
    case.secret("secret1", "secret");
    let provider = case.provider().await?;
    let objects = "array:\n  - |\n    objectName: secret1\n    objectType: secret\n    objectVersionHistory: 5\n  - |\n    objectName: secret1\n    objectType: secret\n    objectAlias: SECRET_1\n    objectVersionHistory: 5\n";
    let response = mount(
        &mut provider.client("azure").await?,
        request(&case, objects)?.build()?,
    )
    .await?;
    assert_eq!(
        file_paths(&response),
        ["SECRET_1/0", "SECRET_1/1", "secret1/0", "secret1/1"]
    );
    assert_eq!(text(&response, "secret1/0"), "secret");
    assert_eq!(text(&response, "SECRET_1/0"), "secret");
    assert_eq!(text(&response, "SECRET_1/1"), "old");
    Ok(())
}

// azure pkg/provider/validate.go and provider.go: what the Azure provider refuses is refused, naming the field.
#[tokio::test]
async fn refusals_of_the_azure_provider() -> anyhow::Result<()> {
    let case = case("compat-azure-refusals").await?;
    let provider = case.provider().await?;
    let mut client = provider.client("azure").await?;
    let entry = |fields: &str| {
        format!(
            "array:\n  - |\n{}",
            fields
                .lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        )
    };
    let secret = entry("objectName: s\nobjectType: secret");
    let refused = [
        (
            request(&case, &entry("objectName: c\nobjectType: cert\nobjectFormat: pfx"))?,
            &[
                "objectFormat",
                "PFX format only supported for objectType: secret",
            ][..],
        ),
        (
            request(&case, &entry("objectName: k\nobjectType: key\nobjectEncoding: base64"))?,
            &["objectEncoding only supported for objectType: secret"][..],
        ),
        (
            request(&case, &entry("objectName: s\nobjectType: secret\nobjectEncoding: rot13"))?,
            &["objects[0].objectEncoding"][..],
        ),
        (
            request(&case, &entry("objectName: s\nobjectType: secret\nobjectFormat: der"))?,
            &["invalid objectFormat"][..],
        ),
        (
            request(&case, &entry("objectName: s\nobjectType: secret\nobjectAlias: ../escape"))?,
            &["objects[0].objectAlias"][..],
        ),
        (
            request(&case, &entry("objectName: s\nobjectType: blob"))?,
            &["Invalid vaultObjectTypes"][..],
        ),
        (request(&case, &secret)?.parameter("keyvaultName", "k"), &["keyvaultName", "between 3 and 24"][..]),
        (request(&case, &secret)?.parameter("usePodIdentity", "true"), &["usePodIdentity"][..]),
        (case.request(&[])?.without_parameter("objects"), &["objects"][..]),
    ];
    for (builder, words) in refused {
        let result = mount(&mut client, builder.build()?).await;
        assert_status(result, Code::InvalidArgument, words);
    }
    assert!(
        case.standin.calls().is_empty(),
        "refused before any call: {:?}",
        case.standin.calls()
    );
    Ok(())
}
