//! Secret Manager versions: latest and pinned, regional, the resolved version in the object version, keys cut out
//! of JSON and YAML values, modes, and the payload checksum.

use courier_tests::calls::{assert_status, file, file_paths, mount, object_version, text};
use courier_tests::{Checksum, GcpApi};
use tonic::Code;

use crate::support::{LOCATION, case, sec};

#[tokio::test]
async fn latest_and_pinned_versions_and_the_resolved_version_in_the_object_version() -> anyhow::Result<()> {
    let case = case("versions").await?;
    case.secret("db", "one").await?;
    case.global.add_version(&case.project, "db", "two").await?;
    let provider = case.provider(&["gcp"]).await?;
    let mut client = provider.client("gcp").await?;
    let secrets = [sec(&case.version("db", "latest"), "latest.txt"), sec(&case.version("db", "1"), "first.txt")];

    let response = mount(&mut client, case.request(&secrets)?.build()?).await?;
    assert_eq!(file_paths(&response), ["first.txt", "latest.txt"]);
    assert_eq!(text(&response, "latest.txt"), "two");
    assert_eq!(text(&response, "first.txt"), "one");
    assert_eq!(file(&response, "latest.txt").mode, 0o644);
    let before = object_version(&response, "latest.txt").to_owned();
    let pinned = object_version(&response, "first.txt").to_owned();

    // A new version moves `latest`: its object version changes, the pinned one's does not.
    case.global.add_version(&case.project, "db", "three").await?;
    let response = mount(&mut client, case.request(&secrets)?.build()?).await?;
    assert_eq!(text(&response, "latest.txt"), "three");
    assert_ne!(object_version(&response, "latest.txt"), before);
    assert_eq!(object_version(&response, "first.txt"), pinned);

    let paths: Vec<String> = case.calls(GcpApi::SecretManager).into_iter().map(|c| c.path).collect();
    assert!(paths.contains(&format!("/v1/{}:access", case.version("db", "latest"))), "{paths:?}");
    Ok(())
}

#[tokio::test]
async fn regional_secrets_are_read_at_the_regional_path() -> anyhow::Result<()> {
    let case = case("regional").await?;
    let name = case.regional_secret("api", "regional-value").await?;
    assert!(name.contains(&format!("/locations/{LOCATION}/")), "{name}");
    let provider = case.provider(&["gcp"]).await?;

    let response = mount(&mut provider.client("gcp").await?, case.request(&[sec(&name, "api")])?.build()?).await?;
    assert_eq!(text(&response, "api"), "regional-value");
    let calls = case.calls(GcpApi::SecretManager);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].path, format!("/v1/{name}:access"));
    Ok(())
}

#[tokio::test]
async fn extract_keys_modes_and_the_older_file_name() -> anyhow::Result<()> {
    let case = case("extract").await?;
    case.secret("json", r#"{"user":"alice","port":5432}"#).await?;
    case.secret("yaml", "host: db.internal\nport: 5432\n").await?;
    let provider = case.provider(&["gcp"]).await?;
    let mut client = provider.client("gcp").await?;
    let secrets = [
        sec(&case.version("json", "1"), "user").field("extractJSONKey", "user").field("mode", "0400"),
        sec(&case.version("yaml", "latest"), "host").field("extractYAMLKey", "host").field("mode", "384"),
        sec(&case.version("json", "1"), "ignored").field("fileName", "raw.json").field("path", "\"\""),
    ];

    let response = mount(&mut client, case.request(&secrets)?.build()?).await?;
    assert_eq!(text(&response, "user"), "alice");
    assert_eq!(file(&response, "user").mode, 0o400);
    assert_eq!(text(&response, "host"), "db.internal");
    assert_eq!(file(&response, "host").mode, 0o600);
    assert_eq!(text(&response, "raw.json"), r#"{"user":"alice","port":5432}"#);
    // Two objects name the same version: it is read once.
    assert_eq!(case.calls(GcpApi::SecretManager).len(), 2);

    // A missing key, a key whose value is not a string, and a value that is not JSON fail the mount.
    for (field, key, code, words) in [
        ("extractJSONKey", "nope", Code::NotFound, &["\"nope\"", "not found"][..]),
        ("extractJSONKey", "port", Code::InvalidArgument, &["\"port\"", "a number"][..]),
    ] {
        let result = mount(&mut client, case.request(&[sec(&case.version("json", "1"), "x").field(field, key)])?.build()?).await;
        assert_status(result, code, words);
    }
    let result = mount(&mut client, case.request(&[sec(&case.version("yaml", "1"), "x").field("extractJSONKey", "host")])?.build()?).await;
    let status = assert_status(result, Code::InvalidArgument, &["not a JSON object"]);
    assert!(!status.message().contains("db.internal"), "{}", status.message());
    Ok(())
}

#[tokio::test]
async fn the_payload_checksum_is_checked_when_present() -> anyhow::Result<()> {
    let case = case("crc").await?;
    case.secret("s", "checked-value").await?;
    let provider = case.provider(&["gcp"]).await?;
    let mut client = provider.client("gcp").await?;
    let secrets = [sec(&case.version("s", "1"), "s")];

    case.standin.set_checksum(Checksum::Wrong);
    let status = assert_status(mount(&mut client, case.request(&secrets)?.build()?).await, Code::Unavailable, &["dataCrc32c"]);
    assert!(!status.message().contains("checked-value"));

    case.standin.set_checksum(Checksum::Omitted);
    assert_eq!(text(&mount(&mut client, case.request(&secrets)?.build()?).await?, "s"), "checked-value");
    case.standin.set_checksum(Checksum::Correct);
    assert_eq!(text(&mount(&mut client, case.request(&secrets)?.build()?).await?, "s"), "checked-value");
    Ok(())
}

#[tokio::test]
async fn parameter_manager_versions_are_rendered() -> anyhow::Result<()> {
    let case = case("parameters").await?;
    let global = format!("projects/{}/locations/global/parameters/app/versions/v1", case.project);
    let regional = format!("projects/{}/locations/{LOCATION}/parameters/app/versions/v2", case.project);
    case.standin.put_parameter_version(&global, b"{\"host\":\"db.internal\"}");
    case.standin.put_parameter_version(&regional, b"regional: true\n");
    let provider = case.provider(&["gcp"]).await?;
    let mut client = provider.client("gcp").await?;

    let response = mount(
        &mut client,
        case.request(&[sec(&global, "host").field("extractJSONKey", "host"), sec(&regional, "regional.yaml")])?.build()?,
    )
    .await?;
    assert_eq!(text(&response, "host"), "db.internal");
    assert_eq!(text(&response, "regional.yaml"), "regional: true\n");
    let paths: Vec<String> = case.calls(GcpApi::ParameterManager).into_iter().map(|c| c.path).collect();
    assert_eq!(paths.len(), 2, "{paths:?}");

    let missing = format!("projects/{}/locations/global/parameters/app/versions/v9", case.project);
    let result = mount(&mut client, case.request(&[sec(&missing, "x")])?.build()?).await;
    assert_status(result, Code::NotFound, &[&missing, "parameter version", "does not exist"]);
    Ok(())
}
