//! `aws.sock`: SecretProviderClasses of aws/secrets-store-csi-driver-provider-aws (its README, `examples/`,
//! `tests/BasicTestMountSPC.yaml.template`, and the behaviour of `provider/` and `server/`) mount as they mount
//! there, on a real moto.

use courier_tests::calls::{assert_status, file, file_paths, mount, text};
use courier_tests::{AwsFault, ParameterType};
use tonic::Code;

use crate::aws_support::{FAILOVER_REGION, REGION, arn, case, quote, sm, ssm};

// aws tests/BasicTestMountSPC.yaml.template: SSM parameters by name and with an alias, a Secrets Manager secret by
// name; names with `/` are translated to `_` (pathTranslation unset); the driver's 0644 applies.
#[tokio::test]
async fn basic_test_mount_names() -> anyhow::Result<()> {
    let case = case("compat-basic").await?;
    case.parameter("ParameterStoreTest1", "ssm-one").await?;
    case.parameter("ParameterStoreTestWithLongName", "ssm-two").await?;
    case.secret("SecretsManagerTest1", "sm-one").await?;
    let provider = case.provider(&["aws"]).await?;
    let request = case
        .request(&[
            ssm(&case.param("ParameterStoreTest1")),
            ssm(&case.param("ParameterStoreTestWithLongName")).alias("ParameterStoreTest2"),
            sm(&case.name("SecretsManagerTest1")),
        ])?
        .build()?;

    let response = mount(&mut provider.client("aws").await?, request).await?;

    let p1 = format!("_{}_ParameterStoreTest1", case.id);
    let s1 = format!("{}_SecretsManagerTest1", case.id);
    let mut expected = vec![p1.clone(), "ParameterStoreTest2".to_owned(), s1.clone()];
    expected.sort();
    assert_eq!(file_paths(&response), expected);
    assert_eq!((file(&response, &p1).mode, text(&response, &p1).as_str()), (0o644, "ssm-one"));
    assert_eq!(text(&response, "ParameterStoreTest2"), "ssm-two");
    assert_eq!(text(&response, &s1), "sm-one");
    Ok(())
}

// aws tests/BasicTestMountSPC.yaml.template: `jmesPath` entries written `Path:` / `ObjectAlias:` (the provider
// decodes field names case-insensitively), for SSM and Secrets Manager.
#[tokio::test]
async fn basic_test_mount_jmes_path_with_capitalised_fields() -> anyhow::Result<()> {
    let case = case("compat-jmes-caps").await?;
    let json = r#"{"username": "SecretsManagerUser", "password": "SecretsManagerPassword"}"#;
    case.secret("secretsManagerJson", json).await?;
    case.parameter("jsonSsm", r#"{"username": "ParameterStoreUser", "password": "ParameterStorePassword"}"#).await?;
    let provider = case.provider(&["aws"]).await?;
    let jmes = |user: &str, pass: &str| {
        format!("[{{Path: \"username\", ObjectAlias: {}}}, {{Path: \"password\", ObjectAlias: {}}}]", quote(user), quote(pass))
    };
    let request = case
        .request(&[
            ssm(&case.param("jsonSsm")).alias("jsonSsm").field("jmesPath", jmes("ssmUsername", "ssmPassword")),
            sm(&case.name("secretsManagerJson")).alias("secretsManagerJson").field("jmesPath", jmes("secretsManagerUsername", "secretsManagerPassword")),
        ])?
        .build()?;

    let response = mount(&mut provider.client("aws").await?, request).await?;

    assert_eq!(text(&response, "ssmUsername"), "ParameterStoreUser");
    assert_eq!(text(&response, "ssmPassword"), "ParameterStorePassword");
    assert_eq!(text(&response, "secretsManagerUsername"), "SecretsManagerUser");
    assert_eq!(text(&response, "secretsManagerPassword"), "SecretsManagerPassword");
    assert_eq!(text(&response, "secretsManagerJson"), json);
    Ok(())
}

// aws provider/secret_descriptor.go (sigs.k8s.io/yaml, then Go encoding/json): every field of an object, of a
// jmesPath entry and of failoverObject matches in any letter case.
#[tokio::test]
async fn every_field_name_in_any_case() -> anyhow::Result<()> {
    let case = case("compat-fold").await?;
    case.secret("db", r#"{"user": "u1"}"#).await?;
    case.moto.create_secret(FAILOVER_REGION, &case.name("db-replica"), r#"{"user": "u2"}"#).await?;
    let version = case.parameter("conf", "v1").await?;
    case.moto.put_parameter(REGION, &case.param("conf"), "v2", ParameterType::String, true).await?;
    // Both regions are asked on aws.sock, so the parameter exists in the failover region too.
    case.moto.put_parameter(FAILOVER_REGION, &case.param("conf"), "failover-v1", ParameterType::String, false).await?;
    let provider = case.provider(&["aws"]).await?;
    let yaml = format!(
        "- OBJECTNAME: {}\n  ObjectType: secretsmanager\n  objectalias: db\n  FilePermission: \"0640\"\n  JMESPATH: [{{PATH: user, objectALIAS: db-user, FILEPERMISSION: \"0400\"}}]\n  FailoverObject: {{OBJECTNAME: {}}}\n- Objectname: {}\n  OBJECTTYPE: ssmparameter\n  ObjectAlias: conf\n  ObjectVersion: {version}\n",
        quote(&case.name("db")),
        quote(&case.name("db-replica")),
        quote(&case.param("conf")),
    );
    let request = case.request(&[])?.parameter("objects", yaml).parameter("failoverRegion", FAILOVER_REGION).build()?;

    let response = mount(&mut provider.client("aws").await?, request).await?;

    assert_eq!(file_paths(&response), ["conf", "db", "db-user"]);
    assert_eq!((file(&response, "db").mode, text(&response, "db").as_str()), (0o640, r#"{"user": "u1"}"#));
    assert_eq!((file(&response, "db-user").mode, text(&response, "db-user").as_str()), (0o400, "u1"));
    assert_eq!(text(&response, "conf"), "v1", "ObjectVersion pins the first version");
    Ok(())
}

// aws README (jmesPath): lowercase `path`/`objectAlias`; an entry without filePermission takes its parent's;
// a hyphenated key is a quoted JMESPath identifier and a quoted alias keeps its quotes in the file name.
#[tokio::test]
async fn readme_jmes_path() -> anyhow::Result<()> {
    let case = case("compat-readme-jmes").await?;
    case.secret("MySecret", r#"{"username": "testuser", "password": "testpassword", "hyphenated-path": "h"}"#).await?;
    let provider = case.provider(&["aws"]).await?;
    let request = case
        .request(&[sm(&case.name("MySecret")).alias("MySecret").file_permission("0600").field(
            "jmesPath",
            "[{path: \"username\", objectAlias: \"MySecretUsername\"}, {path: \"password\", objectAlias: \"MySecretPassword\", filePermission: \"0440\"}, {path: '\"hyphenated-path\"', objectAlias: '\"hyphenated-alias\"'}]".to_owned(),
        )])?
        .build()?;

    let response = mount(&mut provider.client("aws").await?, request).await?;

    assert_eq!((file(&response, "MySecretUsername").mode, text(&response, "MySecretUsername").as_str()), (0o600, "testuser"));
    assert_eq!((file(&response, "MySecretPassword").mode, text(&response, "MySecretPassword").as_str()), (0o440, "testpassword"));
    assert_eq!(text(&response, "\"hyphenated-alias\""), "h");
    Ok(())
}

// aws README (pathTranslation): unset is `_`, `"False"` keeps the path (leading `/` stripped), any other single
// character replaces `/`.
#[tokio::test]
async fn path_translation() -> anyhow::Result<()> {
    let case = case("compat-translate").await?;
    case.parameter("My/Path/Secret", "v").await?;
    let provider = case.provider(&["aws"]).await?;
    let name = case.param("My/Path/Secret");
    let id = &case.id;
    for (translation, expected) in [
        (None, format!("_{id}_My_Path_Secret")),
        (Some("False"), format!("{id}/My/Path/Secret")),
        (Some("false"), format!("{id}/My/Path/Secret")),
        (Some("-"), format!("-{id}-My-Path-Secret")),
    ] {
        let mut request = case.request(&[ssm(&name)])?;
        if let Some(t) = translation {
            request = request.parameter("pathTranslation", t);
        }
        let response = mount(&mut provider.client("aws").await?, request.build()?).await?;
        assert_eq!(file_paths(&response), std::slice::from_ref(&expected), "{translation:?}");
        assert_eq!(text(&response, &expected), "v");
    }
    let request = case.request(&[ssm(&name)])?.parameter("pathTranslation", "ab").build()?;
    assert_status(mount(&mut provider.client("aws").await?, request).await, Code::InvalidArgument, &["pathTranslation"]);
    Ok(())
}

// aws examples/ExampleSecretProviderClass-PodIdentity.yaml (`usePodIdentity: "true"`) and server/server.go
// (strconv.ParseBool): every Go spelling picks Pod Identity or IRSA; others fail naming the parameter.
#[tokio::test]
async fn use_pod_identity_takes_every_go_boolean() -> anyhow::Result<()> {
    let case = case("compat-podid").await?;
    case.secret("MySecret", "s").await?;
    let provider = case.provider(&["aws"]).await?;
    for (spelling, pod_identity) in [("true", true), ("True", true), ("TRUE", true), ("1", true), ("t", true), ("T", true), ("false", false), ("False", false), ("FALSE", false), ("0", false), ("f", false), ("F", false)] {
        let request = case.request(&[sm(&case.name("MySecret")).alias("MySecret")])?.parameter("usePodIdentity", spelling).build()?;
        let before = case.calls("sts", "AssumeRoleWithWebIdentity").len();
        let response = mount(&mut provider.client("aws").await?, request).await?;
        assert_eq!(text(&response, "MySecret"), "s", "{spelling}");
        let assumed = case.calls("sts", "AssumeRoleWithWebIdentity").len() > before;
        assert!(!(pod_identity && assumed), "{spelling}: Pod Identity must not call STS");
    }
    let request = case.request(&[sm(&case.name("MySecret"))])?.parameter("usePodIdentity", "yes").build()?;
    assert_status(mount(&mut provider.client("aws").await?, request).await, Code::InvalidArgument, &["usePodIdentity", "yes"]);
    Ok(())
}

// aws credential_provider/pod_identity_credential_provider.go: an unknown preferredAddressType means `auto`.
#[tokio::test]
async fn unknown_preferred_address_type_is_auto() -> anyhow::Result<()> {
    let case = case("compat-addr").await?;
    case.secret("MySecret", "s").await?;
    let provider = case.provider(&["aws"]).await?;
    let request = case
        .request(&[sm(&case.name("MySecret")).alias("MySecret")])?
        .parameter("usePodIdentity", "true")
        .parameter("preferredAddressType", "dualstack")
        .build()?;

    let response = mount(&mut provider.client("aws").await?, request).await?;

    assert_eq!(text(&response, "MySecret"), "s");
    Ok(())
}

// aws README (objects fields): objectVersionLabel, objectVersion, a full ARN without objectType, and the
// 4-digit filePermission.
#[tokio::test]
async fn versions_arns_and_modes() -> anyhow::Result<()> {
    let case = case("compat-versions").await?;
    let created = case.secret("rotating", "old").await?;
    case.moto.put_secret_value(REGION, &case.name("rotating"), "new").await?;
    let provider = case.provider(&["aws"]).await?;
    let request = case
        .request(&[
            sm(&case.name("rotating")).alias("current").file_permission("0400"),
            sm(&case.name("rotating")).alias("previous").label("AWSPREVIOUS"),
            sm(&case.name("rotating")).alias("pinned").version(&created.version_id),
            arn(&created.arn).alias("by-arn"),
        ])?
        .build()?;

    let response = mount(&mut provider.client("aws").await?, request).await?;

    assert_eq!((file(&response, "current").mode, text(&response, "current").as_str()), (0o400, "new"));
    assert_eq!(text(&response, "previous"), "old");
    assert_eq!(text(&response, "pinned"), "old");
    assert_eq!(text(&response, "by-arn"), "new");
    Ok(())
}

/// Objects, extra parameters, and the words the refusal must mention.
type RefusedCase<'a> = (Vec<crate::aws_support::AwsObj>, Vec<(&'a str, &'a str)>, Vec<&'a str>);

// aws provider/secret_descriptor.go validation: the classes it refuses are refused, naming the field.
#[tokio::test]
async fn refused_secretproviderclasses() -> anyhow::Result<()> {
    let case = case("compat-refused").await?;
    let provider = case.provider(&["aws"]).await?;
    let n = case.name("x");
    let cases: Vec<RefusedCase<'_>> = vec![
        // "Must use objectType when a full ARN is not specified".
        (vec![crate::aws_support::AwsObj::named(&n)], vec![], vec!["objectType"]),
        // "Invalid objectType".
        (vec![crate::aws_support::AwsObj::named(&n).field("objectType", quote("vault"))], vec![], vec!["objectType"]),
        // "ssm parameters can not specify both objectVersion and objectVersionLabel".
        (vec![ssm(&n).version("1").label("l")], vec![], vec!["objectVersionLabel"]),
        // "Invalid File Permission".
        (vec![sm(&n).file_permission("rw-r--r--")], vec![], vec!["filePermission"]),
        // "object alias must be specified for objects with failover entries".
        (vec![sm(&n).failover(&n, None, None)], vec![("failoverRegion", FAILOVER_REGION)], vec!["objectAlias"]),
        // "failover object allowed only when failover region is defined".
        (vec![sm(&n).alias("a").failover(&n, None, None)], vec![], vec!["failoverObject"]),
        // "object versions must match between primary and failover regions".
        (vec![sm(&n).alias("a").version("v1").failover(&n, Some("v2"), None)], vec![("failoverRegion", FAILOVER_REGION)], vec!["objectVersion"]),
        // "found duplicate object alias".
        (vec![sm(&n).alias("a"), sm(&case.name("y")).alias("a")], vec![], vec!["objectAlias"]),
        // "Path must be specified for JMES object" / "Object alias must be specified for JMES object".
        (vec![sm(&n).field("jmesPath", "[{objectAlias: u}]".to_owned())], vec![], vec!["jmesPath[0].path"]),
        (vec![sm(&n).field("jmesPath", "[{path: u}]".to_owned())], vec![], vec!["jmesPath[0].objectAlias"]),
        // "failover region cannot be the same as the primary region".
        (vec![sm(&n)], vec![("failoverRegion", REGION)], vec!["failoverRegion"]),
    ];
    for (objects, params, words) in cases {
        let mut request = case.request(&objects)?;
        for (k, v) in params {
            request = request.parameter(k, v);
        }
        assert_status(mount(&mut provider.client("aws").await?, request.build()?).await, Code::InvalidArgument, &words);
    }
    Ok(())
}

// aws README "Automated Failover Regions": both regions are asked; with both answering, the primary's value is
// mounted. The native socket asks the failover region only when the primary cannot answer.
#[tokio::test]
async fn failover_asks_both_regions() -> anyhow::Result<()> {
    let case = case("compat-fo-both").await?;
    case.secret("db", "from-primary").await?;
    case.moto.create_secret(FAILOVER_REGION, &case.name("db"), "from-failover").await?;
    case.parameter("conf", "conf-primary").await?;
    case.moto.put_parameter(FAILOVER_REGION, &case.param("conf"), "conf-failover", ParameterType::String, false).await?;
    let provider = case.provider(&["aws", "courier"]).await?;
    let objects = [sm(&case.name("db")).alias("db"), ssm(&case.param("conf")).alias("conf")];

    let request = case.request(&objects)?.parameter("failoverRegion", FAILOVER_REGION).build()?;
    let response = mount(&mut provider.client("aws").await?, request).await?;
    assert_eq!(text(&response, "db"), "from-primary");
    assert_eq!(text(&response, "conf"), "conf-primary");
    assert_eq!(case.regions_of("secretsmanager", "GetSecretValue"), [REGION, FAILOVER_REGION]);
    assert_eq!(case.regions_of("ssm", "GetParameters"), [REGION, FAILOVER_REGION]);

    let request = case.request(&objects)?.parameter("failoverRegion", FAILOVER_REGION).parameter("backend", "aws").build()?;
    let response = mount(&mut provider.client("courier").await?, request).await?;
    assert_eq!(text(&response, "db"), "from-primary");
    assert_eq!(case.regions_of("secretsmanager", "GetSecretValue"), [REGION, FAILOVER_REGION, REGION]);
    assert_eq!(case.regions_of("ssm", "GetParameters"), [REGION, FAILOVER_REGION, REGION]);
    Ok(())
}

// aws README "Automated Failover Regions": "If either region returns a client error (code 4XX), then the mount
// will fail" — here the secret and the parameter exist only in the primary region. The native socket mounts.
#[tokio::test]
async fn failover_region_4xx_fails_the_mount() -> anyhow::Result<()> {
    let case = case("compat-fo-4xx").await?;
    case.secret("db", "from-primary").await?;
    case.parameter("conf", "conf-primary").await?;
    let provider = case.provider(&["aws", "courier"]).await?;

    for object in [sm(&case.name("db")).alias("db"), ssm(&case.param("conf")).alias("conf")] {
        let request = case.request(std::slice::from_ref(&object))?.parameter("failoverRegion", FAILOVER_REGION).build()?;
        let result = mount(&mut provider.client("aws").await?, request).await;
        assert_status(result, Code::NotFound, &[FAILOVER_REGION]);

        let request = case.request(&[object])?.parameter("failoverRegion", FAILOVER_REGION).parameter("backend", "aws").build()?;
        let response = mount(&mut provider.client("courier").await?, request).await?;
        assert_eq!(response.files.len(), 1);
    }
    Ok(())
}

// aws README "Automated Failover Regions": "If one region returns a non-client error (code 5XX), and the other
// region succeeds, then the mount will contain the secret value of the non-failing region."
#[tokio::test]
async fn failover_5xx_in_either_region() -> anyhow::Result<()> {
    let case = case("compat-fo-5xx").await?;
    case.secret("db", "from-primary").await?;
    case.moto.create_secret(FAILOVER_REGION, &case.name("db"), "from-failover").await?;
    let provider = case.provider(&["aws"]).await?;
    let request = || -> anyhow::Result<_> {
        case.request(&[sm(&case.name("db")).alias("db")])?.parameter("failoverRegion", FAILOVER_REGION).build()
    };

    case.proxy.inject(AwsFault::status(500).region(FAILOVER_REGION).service("secretsmanager"));
    let response = mount(&mut provider.client("aws").await?, request()?).await?;
    assert_eq!(text(&response, "db"), "from-primary", "a 5xx from the failover region is ignored");
    Ok(())
}

// aws README "Automated Failover Regions": a primary that answers 5xx, and a failover object with its own ARN
// (the README's PrimarySecret/FailoverSecret example).
#[tokio::test]
async fn failover_object_when_the_primary_fails() -> anyhow::Result<()> {
    let case = case("compat-fo-object").await?;
    let primary = case.secret("PrimarySecret", "from-primary").await?;
    let failover = case.moto.create_secret(FAILOVER_REGION, &case.name("FailoverSecret"), "from-failover").await?;
    case.proxy.inject(AwsFault::status(503).region(REGION).service("secretsmanager"));
    let provider = case.provider(&["aws"]).await?;
    let request = case
        .request(&[arn(&primary.arn).alias("testArn").failover(&failover.arn, None, None)])?
        .parameter("failoverRegion", FAILOVER_REGION)
        .build()?;

    let response = mount(&mut provider.client("aws").await?, request).await?;

    assert_eq!(text(&response, "testArn"), "from-failover");
    Ok(())
}
