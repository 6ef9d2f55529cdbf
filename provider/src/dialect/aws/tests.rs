use super::*;

fn defaults() -> Defaults {
    Defaults { vault_address: String::new(), aws_region: Some("us-east-1".into()) }
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn aws(plan: &MountPlan) -> &AwsConfig {
    match &plan.backend {
        Plan::Aws(plan) => &plan.config,
        _ => panic!("expected aws"),
    }
}

#[test]
fn names_aliases_and_translation() {
    let yaml = "- {objectName: app/db, objectType: secretsmanager}\n- {objectName: /team/key, objectType: ssmparameter, objectAlias: key}\n- {objectName: 'arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf', objectAlias: x}";
    let plan = parse(&attrs(&[("objects", yaml)]), Flavor::Compatible, &defaults()).expect("valid");
    let paths: Vec<&str> = plan.objects.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(paths, ["app_db", "key", "x"]);
    assert_eq!(aws(&plan).region, "us-east-1");
    assert_eq!(aws(&plan).auth, AwsAuth::Irsa { role_arn: None });
    let plan = parse(&attrs(&[("objects", "- {objectName: /a/b, objectType: ssmparameter}"), ("pathTranslation", "False")]), Flavor::Compatible, &defaults()).expect("valid");
    assert_eq!(plan.objects[0].path.as_str(), "a/b");
    let plan = parse(&attrs(&[("objects", "- {objectName: a/b, objectType: ssmparameter}"), ("pathTranslation", "-")]), Flavor::Compatible, &defaults()).expect("valid");
    assert_eq!(plan.objects[0].path.as_str(), "a-b");
}

#[test]
fn rejected_combinations_name_the_field() {
    let d = defaults();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("objects", "- {objectName: a}")], "objects[0].objectName"),
        (vec![("objects", "- {objectName: a, objectType: vault}")], "objects[0].objectName"),
        (vec![("objects", "- {objectName: a, objectType: ssmparameter, objectVersion: '1', objectVersionLabel: l}")], "objects[0].objectVersionLabel"),
        (vec![("objects", "- {objectName: a, objectType: secretsmanager}\n- {objectName: b, objectType: secretsmanager, objectAlias: a}")], "objects[1].objectAlias"),
        (vec![("objects", "- {objectName: a, objectType: secretsmanager}\n- {objectName: a, objectType: ssmparameter}")], "objects[1].objectName"),
        (vec![("objects", "- {objectName: a, objectType: secretsmanager, objectAlias: x}\n- {objectName: b, objectType: secretsmanager, objectAlias: x}")], "objects[1].objectAlias"),
        (vec![("objects", "- {objectName: 'arn:aws:secretsmanager:eu-west-1:1:secret:x', objectAlias: x}")], "objects[0].objectName"),
        (vec![("objects", "- {objectName: 'arn:aws:secretsmanager:us-east-1:1:secret:x', objectType: ssmparameter}")], "objects[0].objectName"),
        (vec![("objects", "- {objectName: a, objectType: secretsmanager, jmesPath: [{path: user}]}")], "objects[0].jmesPath[0].objectAlias"),
        (vec![("objects", "- {objectName: a, objectType: secretsmanager, jmesPath: [{path: '[[', objectAlias: u}]}")], "objects[0].jmesPath[0].path"),
        (vec![("objects", "- {objectName: a, objectType: secretsmanager, failoverObject: {objectName: b}}"), ("failoverRegion", "us-west-2")], "objects[0].objectAlias"),
        (vec![("objects", "- {objectName: a, objectType: secretsmanager, objectAlias: a1, failoverObject: {objectName: b}}")], "objects[0].failoverObject"),
        (vec![("objects", "- {objectName: a, objectType: secretsmanager, objectAlias: a1, objectVersion: v1, failoverObject: {objectName: b}}"), ("failoverRegion", "us-west-2")], "objects[0].failoverObject.objectVersion"),
        (vec![("objects", "- {objectName: a, objectType: secretsmanager}"), ("failoverRegion", "us-east-1")], "failoverRegion"),
        (vec![("objects", "- {objectName: a, objectType: secretsmanager}"), ("pathTranslation", "ab")], "pathTranslation"),
        (vec![("objects", "- {objectName: a, objectType: secretsmanager}"), ("usePodIdentity", "yes")], "usePodIdentity"),
        (vec![("objects", "- {objectName: ../x, objectType: secretsmanager}"), ("pathTranslation", "False")], "objects[0].objectName"),
        (vec![("objects", "- {objectName: a, objectType: secretsmanager, encoding: rot13}")], "objects[0].encoding"),
    ];
    for (pairs, field) in cases {
        let err = parse(&attrs(&pairs), Flavor::Compatible, &d).expect_err(field);
        assert_eq!(err.field, field, "{err}");
    }
}

#[test]
fn one_secret_under_several_aliases_and_versions() {
    let yaml = "- {objectName: t, objectType: secretsmanager, objectAlias: current}\n- {objectName: t, objectType: secretsmanager, objectAlias: previous, objectVersionLabel: AWSPREVIOUS}\n- {objectName: same, objectType: ssmparameter, objectAlias: same}";
    let plan = parse(&attrs(&[("objects", yaml)]), Flavor::Compatible, &defaults()).expect("valid");
    assert_eq!(plan.objects.len(), 3);
}

#[test]
fn region_must_be_known() {
    let none = Defaults { vault_address: String::new(), aws_region: None };
    let err = parse(&attrs(&[("objects", "- {objectName: a, objectType: ssmparameter}")]), Flavor::Compatible, &none).expect_err("no region");
    assert_eq!(err.field, "region");
    let plan = parse(&attrs(&[("objects", "- {objectName: a, objectType: ssmparameter}"), ("region", "eu-west-1")]), Flavor::Compatible, &none).expect("valid");
    assert_eq!(aws(&plan).region, "eu-west-1");
}

#[test]
fn identity_choices() {
    let d = defaults();
    let o = ("objects", "- {objectName: a, objectType: ssmparameter}");
    let plan = parse(&attrs(&[o, ("usePodIdentity", "true")]), Flavor::Compatible, &d).expect("valid");
    assert_eq!(aws(&plan).auth, AwsAuth::PodIdentity { prefer_ipv6: false });
    let arn = "arn:aws:iam::123456789012:role/app";
    let plan = parse(&attrs(&[o, ("roleArn", arn)]), Flavor::Native, &d).expect("valid");
    assert_eq!(aws(&plan).auth, AwsAuth::Irsa { role_arn: Some(arn.into()) });
    let plan = parse(&attrs(&[o, ("roleArn", arn)]), Flavor::Compatible, &d).expect("valid");
    assert_eq!(aws(&plan).auth, AwsAuth::Irsa { role_arn: None }, "the AWS provider has no roleArn");
}

#[test]
fn field_names_are_matched_case_insensitively() {
    // The AWS provider's tests/BasicTestMountSPC.yaml.template spells jmesPath entries `Path:` / `ObjectAlias:`.
    let yaml = "- ObjectName: db\n  OBJECTTYPE: secretsmanager\n  objectalias: database\n  JmesPath:\n    - {Path: username, ObjectAlias: user, FilePermission: \"0600\"}\n";
    let plan = parse(&attrs(&[("objects", yaml)]), Flavor::Compatible, &defaults()).expect("valid");
    assert_eq!(plan.objects[0].path.as_str(), "database");
    let d = &plan.objects[0].derived;
    assert_eq!((d[0].path.as_str(), d[0].mode, d[0].jmes_path.as_str()), ("user", Some(0o600), "username"));
    let yaml = "- {objectName: a, objectType: secretsmanager, objectAlias: a1, FailoverObject: {ObjectName: b}}";
    let plan = parse(&attrs(&[("objects", yaml), ("failoverRegion", "us-west-2")]), Flavor::Compatible, &defaults()).expect("valid");
    let Plan::Aws(aws) = &plan.backend else { panic!("aws") };
    let o = &aws.objects[0];
    assert_eq!(o.failover.as_ref().map(|(n, _)| n.as_str()), Some("b"));
}

#[test]
fn booleans_and_address_types_as_the_aws_provider_reads_them() {
    let o = ("objects", "- {objectName: a, objectType: ssmparameter}");
    for (text, pod_identity) in [("True", true), ("1", true), ("T", true), ("False", false), ("0", false), ("f", false)] {
        let plan = parse(&attrs(&[o, ("usePodIdentity", text)]), Flavor::Compatible, &defaults()).expect(text);
        assert_eq!(matches!(aws(&plan).auth, AwsAuth::PodIdentity { .. }), pod_identity, "{text}");
    }
    let a = attrs(&[o, ("usePodIdentity", "true"), ("preferredAddressType", "dual")]);
    assert_eq!(aws(&parse(&a, Flavor::Compatible, &defaults()).expect("auto")).auth, AwsAuth::PodIdentity { prefer_ipv6: false });
    assert_eq!(parse(&a, Flavor::Native, &defaults()).expect_err("native").field, "preferredAddressType");
}

#[test]
fn failover_modes_per_socket() {
    let a = attrs(&[("objects", "- {objectName: a, objectType: ssmparameter}"), ("failoverRegion", "us-west-2")]);
    assert_eq!(aws(&parse(&a, Flavor::Compatible, &defaults()).expect("valid")).failover_mode, FailoverMode::AskBoth);
    assert_eq!(aws(&parse(&a, Flavor::Native, &defaults()).expect("valid")).failover_mode, FailoverMode::OnUnavailable);
}

#[test]
fn jmes_paths_become_derived_files() {
    let yaml = "- objectName: db\n  objectType: secretsmanager\n  jmesPath:\n    - {path: username, objectAlias: user}\n    - {path: password, objectAlias: pass, filePermission: \"0600\"}\n";
    let plan = parse(&attrs(&[("objects", yaml)]), Flavor::Compatible, &defaults()).expect("valid");
    let d = &plan.objects[0].derived;
    assert_eq!(d.len(), 2);
    assert_eq!((d[1].path.as_str(), d[1].mode, d[1].jmes_path.as_str()), ("pass", Some(0o600), "password"));
}
