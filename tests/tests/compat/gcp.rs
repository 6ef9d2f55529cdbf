//! `gcp.sock`: SecretProviderClasses of GoogleCloudPlatform/secrets-store-csi-driver-provider-gcp (its
//! `examples/*.yaml.tmpl` and the behaviour of `config/`, `server/` and `util/`) mount as they mount there, on a
//! real drongo behind the STS/IAM stand-in.

use courier_tests::calls::{assert_status, file, file_paths, mount, object_version, text};
use tonic::Code;

use crate::gcp_support::{case, quote, sec};

// gcp examples/app-secrets.yaml.tmpl: one secret `latest` written twice under two paths, the driver's 0644 applies.
#[tokio::test]
async fn app_secrets_one_version_two_paths() -> anyhow::Result<()> {
    let case = case("compat-gcp-secrets").await?;
    case.secret("testsecret", "v1").await?;
    case.global.add_version(&case.project, "testsecret", "v2").await?;
    let provider = case.provider(&["gcp"]).await?;
    let latest = case.version("testsecret", "latest");

    let response = mount(&mut provider.client("gcp").await?, case.request(&[sec(&latest, "good1.txt"), sec(&latest, "good2.txt")])?.build()?).await?;

    assert_eq!(file_paths(&response), ["good1.txt", "good2.txt"]);
    assert_eq!((text(&response, "good1.txt").as_str(), file(&response, "good1.txt").mode), ("v2", 0o644));
    assert_eq!(text(&response, "good2.txt"), "v2");
    assert!(!object_version(&response, "good1.txt").is_empty());
    Ok(())
}

// gcp examples/app-secrets-with-extract-key.yaml.tmpl: `extractJSONKey` on a global and a regional secret.
#[tokio::test]
async fn app_secrets_with_extract_key_global_and_regional() -> anyhow::Result<()> {
    let case = case("compat-gcp-extract").await?;
    case.secret("testsecret", r#"{"user":"global-user","password":"x"}"#).await?;
    case.regional.secret_with(&case.project, "testsecret", r#"{"user":"regional-user"}"#).await?;
    let provider = case.provider(&["gcp"]).await?;
    let regional = format!("projects/{}/locations/us-central1/secrets/testsecret/versions/latest", case.project);

    let response = mount(
        &mut provider.client("gcp").await?,
        case.request(&[
            sec(&case.version("testsecret", "latest"), "good1.txt").field("extractJSONKey", quote("user")),
            sec(&regional, "good2.txt").field("extractJSONKey", quote("user")),
        ])?
        .build()?,
    )
    .await?;

    assert_eq!(text(&response, "good1.txt"), "global-user");
    assert_eq!(text(&response, "good2.txt"), "regional-user");
    Ok(())
}

// gcp examples/app-parameters.yaml.tmpl: a Parameter Manager version, rendered.
#[tokio::test]
async fn app_parameters_rendered() -> anyhow::Result<()> {
    let case = case("compat-gcp-parameters").await?;
    let name = format!("projects/{}/locations/us-central1/parameters/testparameter/versions/testversion", case.project);
    case.standin.put_parameter_version(&name, b"rendered-value");
    let provider = case.provider(&["gcp"]).await?;

    let response = mount(&mut provider.client("gcp").await?, case.request(&[sec(&name, "good1.txt")])?.build()?).await?;
    assert_eq!(text(&response, "good1.txt"), "rendered-value");
    Ok(())
}

// gcp config.Secret: `fileName` is read when `path` is empty; `mode` is a YAML integer (octal with a leading
// zero, as yaml.v3 reads it) that overrides the driver's permission. config.Parse: an unknown `auth` and a
// missing `secrets` are refused; util: a name that is neither a secret nor a parameter version is refused.
#[tokio::test]
async fn file_name_mode_and_refusals() -> anyhow::Result<()> {
    let case = case("compat-gcp-config").await?;
    case.secret("s", "value").await?;
    let provider = case.provider(&["gcp"]).await?;
    let mut client = provider.client("gcp").await?;
    let version = case.version("s", "1");

    let legacy = sec(&version, "").field("path", quote("")).field("fileName", quote("legacy.txt")).field("mode", "0400");
    let response = mount(&mut client, case.request(&[legacy])?.build()?).await?;
    assert_eq!((text(&response, "legacy.txt").as_str(), file(&response, "legacy.txt").mode), ("value", 0o400));

    let result = mount(&mut client, case.request(&[sec(&version, "a")])?.parameter("auth", "bogus").build()?).await;
    assert_status(result, Code::InvalidArgument, &["auth", "unknown auth configuration"]);
    let result = mount(&mut client, case.request(&[sec(&version, "a")])?.without_parameter("secrets").build()?).await;
    assert_status(result, Code::InvalidArgument, &["missing required 'secrets' attribute"]);
    let result = mount(&mut client, case.request(&[sec(&format!("projects/{}/secrets/s", case.project), "a")])?.build()?).await;
    assert_status(result, Code::InvalidArgument, &["secrets[0].resourceName", "not a secret or parameter version"]);
    Ok(())
}
