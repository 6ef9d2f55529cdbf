//! Key Vault objects as the Azure provider writes them: secrets at the current or a pinned version, version
//! histories as `alias/0..N-1`, keys as public PEM, certificates as PEM or PFX, encodings, aliases and modes, and
//! Key Vault's version id folded into the object version.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use courier_tests::calls::{file, file_paths, mount, object_version, text};
use courier_tests::{AzureApi, CertFormat, TestCertificate, TestKey};

use crate::support::{VAULT, case, obj, quote};

#[tokio::test]
async fn current_and_pinned_secrets_and_the_version_in_the_object_version() -> anyhow::Result<()> {
    let case = case("versions").await?;
    let first = case.secret("db", "one");
    case.secret("db", "two");
    let provider = case.provider().await?;
    let mut client = provider.client("azure").await?;
    let objects = [
        obj("db", "secret"),
        obj("db", "secret")
            .field("objectAlias", "db-first")
            .field("objectVersion", quote(&first)),
    ];

    let response = mount(&mut client, case.request(&objects)?.build()?).await?;
    assert_eq!(file_paths(&response), ["db", "db-first"]);
    assert_eq!(text(&response, "db"), "two");
    assert_eq!(text(&response, "db-first"), "one");
    assert_eq!(file(&response, "db").mode, 0o644);
    let current = object_version(&response, "db").to_owned();
    let pinned = object_version(&response, "db-first").to_owned();

    // Same value again under a new version id: the object version follows Key Vault's version.
    case.secret("db", "two");
    let response = mount(&mut client, case.request(&objects)?.build()?).await?;
    assert_eq!(text(&response, "db"), "two");
    assert_ne!(
        object_version(&response, "db"),
        current,
        "a new Key Vault version is a new object version"
    );
    assert_eq!(object_version(&response, "db-first"), pinned);

    let paths: Vec<String> = case
        .calls(AzureApi::KeyVault)
        .into_iter()
        .map(|c| c.path)
        .collect();
    assert!(
        paths.contains(&format!("/vaults/{VAULT}/secrets/db")),
        "{paths:?}"
    );
    assert!(
        paths.contains(&format!("/vaults/{VAULT}/secrets/db/{first}")),
        "{paths:?}"
    );
    Ok(())
}

#[tokio::test]
async fn version_history_is_written_newest_first_as_numbered_files() -> anyhow::Result<()> {
    let case = case("history").await?;
    let a = case.secret("db", "a");
    let b = case.secret("db", "b");
    let c = case.secret("db", "c");
    let provider = case.provider().await?;
    let mut client = provider.client("azure").await?;

    let newest = [obj("db", "secret").field("objectVersionHistory", "2")];
    let response = mount(&mut client, case.request(&newest)?.build()?).await?;
    assert_eq!(file_paths(&response), ["db/0", "db/1"]);
    assert_eq!(
        (text(&response, "db/0"), text(&response, "db/1")),
        ("c".to_owned(), "b".to_owned())
    );

    // From a pinned version on, with an alias, and more asked for than exist.
    let from_b = [obj("db", "secret")
        .field("objectAlias", "hist")
        .field("objectVersion", quote(&b))
        .field("objectVersionHistory", "5")];
    let response = mount(&mut client, case.request(&from_b)?.build()?).await?;
    assert_eq!(file_paths(&response), ["hist/0", "hist/1"]);
    assert_eq!(
        (text(&response, "hist/0"), text(&response, "hist/1")),
        ("b".to_owned(), "a".to_owned())
    );

    // Disabled versions are left out, as the Azure provider leaves them out.
    case.standin.disable(VAULT, "db", &c);
    let response = mount(&mut client, case.request(&newest)?.build()?).await?;
    assert_eq!(
        (text(&response, "db/0"), text(&response, "db/1")),
        ("b".to_owned(), "a".to_owned())
    );
    let listed = case
        .calls(AzureApi::KeyVault)
        .iter()
        .filter(|call| call.path.ends_with("/secrets/db/versions"))
        .count();
    assert_eq!(listed, 3, "one listing per mount");
    let _ = a;
    Ok(())
}

#[tokio::test]
async fn keys_are_written_as_public_key_pem() -> anyhow::Result<()> {
    let case = case("keys").await?;
    let rsa = TestKey::rsa()?;
    let ec = TestKey::ec_p256()?;
    case.standin.set_key(VAULT, "rsa", &rsa);
    case.standin.set_key(VAULT, "ec", &ec);
    let provider = case.provider().await?;

    let objects = [
        obj("rsa", "key"),
        obj("ec", "key").field("objectAlias", "ec.pem"),
    ];
    let response = mount(
        &mut provider.client("azure").await?,
        case.request(&objects)?.build()?,
    )
    .await?;
    assert_eq!(text(&response, "rsa"), rsa.public_key_pem());
    assert_eq!(text(&response, "ec.pem"), ec.public_key_pem());
    Ok(())
}

#[tokio::test]
async fn certificates_as_cert_pem_secret_pem_and_pfx() -> anyhow::Result<()> {
    let case = case("certs").await?;
    let cert = TestCertificate::generate("app.example.internal")?;
    case.standin
        .import_certificate(VAULT, "pem-cert", &cert, CertFormat::Pem);
    case.standin
        .import_certificate(VAULT, "pfx-cert", &cert, CertFormat::Pfx);
    let provider = case.provider().await?;
    let objects = [
        obj("pem-cert", "cert").field("objectAlias", "leaf.pem"),
        obj("pem-cert", "secret").field("objectAlias", "pem-bundle"),
        obj("pfx-cert", "secret").field("objectAlias", "pfx-as-pem"),
        obj("pfx-cert", "secret")
            .field("objectAlias", "bundle.pfx")
            .field("objectFormat", "pfx")
            .field("objectEncoding", "base64"),
        obj("pfx-cert", "secret")
            .field("objectAlias", "bundle.pfx.b64")
            .field("objectFormat", "pfx"),
        obj("pfx-cert", "cert").field("objectAlias", "pfx-leaf.pem"),
        obj("pfx-cert", "key").field("objectAlias", "leaf-public.pem"),
    ];

    let response = mount(
        &mut provider.client("azure").await?,
        case.request(&objects)?.build()?,
    )
    .await?;
    let chain = cert.chain_pem().concat();
    assert_eq!(text(&response, "leaf.pem"), cert.leaf_pem());
    assert_eq!(text(&response, "pfx-leaf.pem"), cert.leaf_pem());
    // A PEM certificate's secret is written as Key Vault keeps it: the key, then the chain.
    assert_eq!(
        text(&response, "pem-bundle"),
        format!("{}{chain}", cert.private_key_pem())
    );
    // A PKCS#12 one is converted: the PKCS#8 key, then the chain leaf to root.
    let converted = text(&response, "pfx-as-pem");
    let (key, certs) = converted
        .split_once("-----END PRIVATE KEY-----\n")
        .ok_or_else(|| anyhow::anyhow!("no key block"))?;
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{key}");
    assert_eq!(certs, chain);
    assert_eq!(file(&response, "bundle.pfx").contents, cert.pfx()?);
    assert_eq!(
        text(&response, "bundle.pfx.b64"),
        BASE64.encode(cert.pfx()?)
    );
    assert_eq!(
        text(&response, "leaf-public.pem"),
        cert.key().public_key_pem()
    );
    Ok(())
}

#[tokio::test]
async fn encodings_aliases_and_file_permissions() -> anyhow::Result<()> {
    let case = case("encodings").await?;
    case.secret("b64", &BASE64.encode("hello from base64"));
    case.secret("hex", &hex::encode("hello from hex"));
    case.secret("plain", "plain text");
    let provider = case.provider().await?;
    let objects = [
        obj("b64", "secret").field("objectEncoding", "base64"),
        obj("hex", "secret").field("objectEncoding", "HEX"),
        obj("plain", "secret")
            .field("objectAlias", "nested/dir/plain.txt")
            .field("filePermission", "\"0600\""),
        obj("plain", "secret").field("objectEncoding", "utf-8"),
    ];

    let response = mount(
        &mut provider.client("azure").await?,
        case.request(&objects)?.permission(0o640).build()?,
    )
    .await?;
    assert_eq!(text(&response, "b64"), "hello from base64");
    assert_eq!(text(&response, "hex"), "hello from hex");
    assert_eq!(text(&response, "nested/dir/plain.txt"), "plain text");
    assert_eq!(file(&response, "nested/dir/plain.txt").mode, 0o600);
    assert_eq!(
        file(&response, "plain").mode,
        0o640,
        "the volume's permission is the default"
    );
    // One read per distinct object and version.
    let reads = case
        .calls(AzureApi::KeyVault)
        .iter()
        .filter(|c| c.path.ends_with("/secrets/plain"))
        .count();
    assert_eq!(reads, 1);
    Ok(())
}
