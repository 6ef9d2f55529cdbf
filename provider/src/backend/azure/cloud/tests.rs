use super::*;

fn settings() -> AzureSettings {
    AzureSettings::default()
}

#[test]
fn cloud_names_fold_case() {
    assert_eq!(parse_cloud_name(""), Ok(Some(Cloud::Public)));
    assert_eq!(
        parse_cloud_name("azurepubliccloud"),
        Ok(Some(Cloud::Public))
    );
    assert_eq!(
        parse_cloud_name("AzureUSGovernmentCloud"),
        Ok(Some(Cloud::UsGovernment))
    );
    assert_eq!(parse_cloud_name("AzureChinaCloud"), Ok(Some(Cloud::China)));
    assert_eq!(parse_cloud_name("AzureStackCloud"), Ok(None));
    assert!(parse_cloud_name("AzureGermanCloud").is_err());
    assert!(
        parse_cloud_name("Mars")
            .expect_err("unknown")
            .contains("AzureChinaCloud")
    );
}

#[tokio::test]
async fn built_in_clouds_and_overrides() {
    let public = resolve(&settings(), &Cloud::Public, "kv1")
        .await
        .expect("public");
    assert_eq!(public.vault, "https://kv1.vault.azure.net");
    assert_eq!(public.authority, "https://login.microsoftonline.com");
    assert_eq!(public.resource, "https://vault.azure.net");
    let gov = resolve(&settings(), &Cloud::UsGovernment, "kv1")
        .await
        .expect("gov");
    assert_eq!(
        (gov.vault.as_str(), gov.authority.as_str()),
        (
            "https://kv1.vault.usgovcloudapi.net",
            "https://login.microsoftonline.us"
        )
    );
    let china = resolve(&settings(), &Cloud::China, "kv1")
        .await
        .expect("china");
    assert_eq!(
        (china.vault.as_str(), china.resource.as_str()),
        ("https://kv1.vault.azure.cn", "https://vault.azure.cn")
    );
    let overridden = AzureSettings {
        authority_host: Some("https://127.0.0.1:9443/".into()),
        keyvault_endpoint: Some("https://127.0.0.1:9443/vaults/{vault}/".into()),
        ..settings()
    };
    let local = resolve(&overridden, &Cloud::China, "kv1")
        .await
        .expect("local");
    assert_eq!(local.vault, "https://127.0.0.1:9443/vaults/kv1");
    assert_eq!(local.authority, "https://127.0.0.1:9443");
    assert_eq!(
        local.resource, "https://vault.azure.cn",
        "the resource stays the cloud's"
    );
}

#[tokio::test]
async fn custom_cloud_files_only_from_the_allowed_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = r#"{"name":"AzureStackCloud","activeDirectoryEndpoint":"https://login.stack.example/adfs/",
        "keyVaultEndpoint":"https://vault.stack.example/","keyVaultDNSSuffix":"vault.stack.example"}"#;
    std::fs::write(dir.path().join("stack.json"), good).expect("write");
    std::fs::write(dir.path().join("big.json"), vec![b' '; 70 * 1024]).expect("write");
    std::fs::write(
        dir.path().join("http.json"),
        good.replace("https://login", "http://login"),
    )
    .expect("write");
    let outside = tempfile::NamedTempFile::new().expect("outside");
    std::fs::write(outside.path(), good).expect("write");
    let stack = |file: &str| Cloud::Stack {
        file: file.to_owned(),
    };

    let off = resolve(&settings(), &stack("stack.json"), "kv1")
        .await
        .expect_err("off");
    assert!(off.message.contains("--azure-cloud-env-dir"), "{off}");
    assert_eq!(off.kind, ErrorKind::Denied, "the operator's policy");

    let allowed = AzureSettings {
        cloud_env_dir: Some(dir.path().to_owned()),
        ..settings()
    };
    let ends = resolve(&allowed, &stack("stack.json"), "kv1")
        .await
        .expect("stack");
    assert_eq!(ends.vault, "https://kv1.vault.stack.example");
    assert_eq!(ends.authority, "https://login.stack.example/adfs");
    assert_eq!(ends.resource, "https://vault.stack.example");
    let absolute = dir.path().join("stack.json");
    assert!(
        resolve(&allowed, &stack(&absolute.to_string_lossy()), "kv1")
            .await
            .is_ok()
    );

    for (file, expected) in [
        (
            outside.path().to_string_lossy().into_owned(),
            "not a file below",
        ),
        ("../../../../etc/passwd".to_owned(), "below"),
        ("/etc/passwd".to_owned(), "not a file below"),
        (".".to_owned(), "not a file below"),
        ("big.json".to_owned(), "larger than"),
        ("http.json".to_owned(), "https://"),
        ("missing.json".to_owned(), "cannot be opened"),
    ] {
        let err = resolve(&allowed, &stack(&file), "kv1")
            .await
            .expect_err(&file);
        assert!(err.message.contains(expected), "{file}: {err}");
        let policy = expected.contains("below");
        let kind = if policy {
            ErrorKind::Denied
        } else {
            ErrorKind::Invalid
        };
        assert_eq!(err.kind, kind, "{file}");
    }
}

#[test]
fn cloud_file_fields() {
    let with_identifier = br#"{"activeDirectoryEndpoint":"https://a/","resourceIdentifiers":{"keyVault":"https://kv"},"keyVaultDNSSuffix":".s"}"#;
    let custom = parse_cloud_file(with_identifier).expect("valid");
    assert_eq!(
        (custom.resource.as_str(), custom.suffix.as_str()),
        ("https://kv", "s")
    );
    assert!(parse_cloud_file(b"[]").is_err());
    assert!(
        parse_cloud_file(br#"{"activeDirectoryEndpoint":"https://a"}"#)
            .expect_err("no kv")
            .contains("keyVaultEndpoint")
    );
    let bad_suffix = br#"{"activeDirectoryEndpoint":"https://a","keyVaultEndpoint":"https://k","keyVaultDNSSuffix":"x/y"}"#;
    assert!(parse_cloud_file(bad_suffix).is_err());
}
