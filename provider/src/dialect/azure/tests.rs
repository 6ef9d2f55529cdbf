use super::*;

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn azure(plan: &MountPlan) -> &BackendPlan<AzureConfig, AzureObject> {
    match &plan.backend {
        Plan::Azure(plan) => plan,
        other => panic!("expected azure, got {}", other.name()),
    }
}

/// `objects` as the Azure provider's documentation writes it: `array:` of YAML strings.
fn objects(entries: &[&str]) -> String {
    let mut yaml = String::from("array:\n");
    for entry in entries {
        yaml.push_str("  - |\n");
        for line in entry.lines() {
            yaml.push_str("    ");
            yaml.push_str(line);
            yaml.push('\n');
        }
    }
    yaml
}

fn with_objects(entries: &[&str]) -> BTreeMap<String, String> {
    attrs(&[
        ("keyvaultName", "kv-1"),
        ("tenantId", "tid"),
        ("usePodIdentity", "false"),
        ("objects", &objects(entries)),
    ])
}

#[test]
fn reads_the_azure_provider_fields() {
    let plan = parse(&with_objects(&[
        "objectName: secret1\nobjectType: secret\nobjectVersion: \"\"",
        "objectName: key1\nobjectType: key\nobjectAlias: keys/k.pem\nobjectVersion: 0123456789abcdef0123456789abcdef",
        "objectName: cert1\nobjectType: cert\nfilePermission: \"0600\"",
        "objectName: cert1\nobjectType: secret\nobjectAlias: cert1.pfx\nobjectFormat: PFX\nobjectEncoding: base64",
        "objectName: hist\nobjectType: secret\nobjectVersionHistory: 3\nobjectVersion: latest",
    ]))
    .expect("valid");
    let paths: Vec<&str> = plan.objects.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(
        paths,
        ["secret1", "keys/k.pem", "cert1", "cert1.pfx", "hist"]
    );
    assert_eq!(plan.objects[2].mode, Some(0o600));
    assert_eq!(plan.objects[3].encoding, Encoding::Base64);
    assert_eq!(
        plan.objects[4].expand,
        Some(Expand {
            base: Some(ObjectPath::parse("hist").expect("path"))
        })
    );
    let a = azure(&plan);
    assert_eq!(a.config.vault, "kv-1");
    assert_eq!(a.config.tenant.as_deref(), Some("tid"));
    assert_eq!(a.config.auth, AzureAuth::Pod { client_id: None });
    assert_eq!(a.config.cloud, Cloud::Public);
    assert_eq!(
        (a.objects[0].kind, a.objects[0].version.as_deref()),
        (ObjectType::Secret, None)
    );
    assert_eq!(
        a.objects[1].version.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(a.objects[2].kind, ObjectType::Cert);
    assert!(
        a.objects[3].pfx,
        "objectFormat is matched case-insensitively"
    );
    assert_eq!(
        (a.objects[4].history, a.objects[4].version.as_deref()),
        (Some(3), None)
    );
}

#[test]
fn tenant_client_and_cloud() {
    let mut a = with_objects(&["objectName: s\nobjectType: secret"]);
    a.insert("tenantID".into(), "new-tenant".into());
    a.insert(
        "clientID".into(),
        "00000000-0000-0000-0000-000000000001".into(),
    );
    a.insert("cloudName".into(), "AzureUSGovernmentCloud".into());
    let plan = parse(&a).expect("valid");
    let c = &azure(&plan).config;
    assert_eq!(
        c.tenant.as_deref(),
        Some("new-tenant"),
        "tenantID wins over tenantId"
    );
    assert_eq!(
        c.auth_client_id(),
        Some("00000000-0000-0000-0000-000000000001")
    );
    assert_eq!(c.cloud, Cloud::UsGovernment);

    a.insert("cloudName".into(), "AzureStackCloud".into());
    assert_eq!(parse(&a).expect_err("no file").field, "cloudEnvFileName");
    a.insert("cloudEnvFileName".into(), "stack.json".into());
    assert_eq!(
        azure(&parse(&a).expect("stack")).config.cloud,
        Cloud::Stack {
            file: "stack.json".into()
        }
    );

    let no_tenant = attrs(&[
        ("keyvaultName", "kv1"),
        ("objects", &objects(&["objectName: s\nobjectType: secret"])),
    ]);
    assert_eq!(
        azure(&parse(&no_tenant).expect("annotation tenant"))
            .config
            .tenant,
        None
    );
}

#[test]
fn node_identities_are_refused_by_name() {
    for switch in [
        "usePodIdentity",
        "useVMManagedIdentity",
        "useAzureTokenProxy",
    ] {
        let mut a = with_objects(&["objectName: s\nobjectType: secret"]);
        a.insert(switch.into(), "true".into());
        let err = parse(&a).expect_err(switch);
        assert_eq!(err.field, switch);
        assert!(err.problem.contains("workload identity"), "{err}");
    }
    let mut a = with_objects(&["objectName: s\nobjectType: secret"]);
    a.insert("usePodIdentity".into(), "maybe".into());
    assert_eq!(parse(&a).expect_err("bad bool").field, "usePodIdentity");
}

#[test]
fn errors_name_the_parameter_and_object() {
    // (extra parameters, objects, field, problem)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str, &'a str);
    let cases: &[Case<'_>] = &[
        (
            &[("keyvaultName", " ")],
            &["objectName: s\nobjectType: secret"],
            "keyvaultName",
            "not provided",
        ),
        (
            &[("keyvaultName", "kv")],
            &["objectName: s\nobjectType: secret"],
            "keyvaultName",
            "between 3 and 24",
        ),
        (
            &[("keyvaultName", "kv1.evil.example")],
            &["objectName: s\nobjectType: secret"],
            "keyvaultName",
            "[-a-zA-Z0-9]",
        ),
        (
            &[("tenantId", "a/b")],
            &["objectName: s\nobjectType: secret"],
            "tenantId",
            "tenant",
        ),
        (
            &[("clientID", "x y")],
            &["objectName: s\nobjectType: secret"],
            "clientID",
            "client",
        ),
        (
            &[("cloudName", "Mars")],
            &["objectName: s\nobjectType: secret"],
            "cloudName",
            "not a known cloud",
        ),
        (
            &[],
            &["objectType: secret"],
            "objects[0].objectName",
            "missing",
        ),
        (
            &[],
            &["objectName: a/../b\nobjectType: secret"],
            "objects[0].objectName",
            "Key Vault object name",
        ),
        (
            &[],
            &["objectName: s\nobjectType: Secret"],
            "objects[0].objectType",
            "Should be secret, key, or cert",
        ),
        (
            &[],
            &["objectName: s"],
            "objects[0].objectType",
            "Invalid vaultObjectTypes",
        ),
        (
            &[],
            &["objectName: s\nobjectType: secret\nobjectVersion: ../x"],
            "objects[0].objectVersion",
            "version",
        ),
        (
            &[],
            &["objectName: s\nobjectType: secret\nobjectVersionHistory: 101"],
            "objects[0].objectVersionHistory",
            "more than 100",
        ),
        (
            &[],
            &["objectName: s\nobjectType: secret\nobjectVersionHistory: many"],
            "objects[0].objectVersionHistory",
            "integer",
        ),
        (
            &[],
            &["objectName: s\nobjectType: secret\nobjectFormat: der"],
            "objects[0].objectFormat",
            "should be PEM or PFX",
        ),
        (
            &[],
            &["objectName: c\nobjectType: cert\nobjectFormat: pfx"],
            "objects[0].objectFormat",
            "only supported for objectType: secret",
        ),
        (
            &[],
            &["objectName: k\nobjectType: key\nobjectEncoding: base64"],
            "objects[0].objectEncoding",
            "only supported",
        ),
        (
            &[],
            &["objectName: s\nobjectType: secret\nobjectEncoding: rot13"],
            "objects[0].objectEncoding",
            "not supported",
        ),
        (
            &[],
            &["objectName: s\nobjectType: secret\nobjectAlias: /etc/passwd"],
            "objects[0].objectAlias",
            "/etc/passwd",
        ),
        (
            &[],
            &["objectName: s\nobjectType: secret\nfilePermission: \"0999\""],
            "objects[0].filePermission",
            "mode",
        ),
        (
            &[],
            &["objectName: s\nobjectType: secret\nexpandKeys: true\nobjectVersionHistory: 2"],
            "objects[0].expandKeys",
            "objectVersionHistory",
        ),
        (
            &[],
            &[
                "objectName: s\nobjectType: secret",
                "objectName: s\nobjectType: key",
            ],
            "objects[1].objectAlias",
            "another object",
        ),
    ];
    for (extra, entries, field, problem) in cases {
        let mut a = attrs(&[("keyvaultName", "kv1"), ("objects", &objects(entries))]);
        for (k, v) in *extra {
            a.insert((*k).into(), (*v).into());
        }
        let err = parse(&a).expect_err(field);
        assert_eq!(err.field, *field, "{err}");
        assert!(err.problem.contains(problem), "{field}: {err}");
    }
}

#[test]
fn the_objects_shape_is_checked() {
    for (yaml, field) in [
        ("", "objects"),
        ("- objectName: s", "objects"),
        ("array: x", "objects.array"),
        ("array: []", "objects.array"),
        ("other: 1", "objects"),
        ("array:\n  - [1]", "objects[0]"),
        ("array:\n  - |\n    - a", "objects[0]"),
        ("array:\n  - |\n    objectName: [unclosed", "objects[0]"),
    ] {
        let err = parse(&attrs(&[("keyvaultName", "kv1"), ("objects", yaml)])).expect_err(yaml);
        assert_eq!(err.field, field, "{yaml:?}: {err}");
    }
    // One history of 1 (or less) is one file, as in the Azure provider.
    let plan = parse(&with_objects(&[
        "objectName: s\nobjectType: secret\nobjectVersionHistory: 1",
    ]))
    .expect("valid");
    assert_eq!(
        (
            azure(&plan).objects[0].history,
            plan.objects[0].expand.clone()
        ),
        (None, None)
    );
}

#[test]
fn versions_fold_the_configuration() {
    let one = parse(&with_objects(&["objectName: s\nobjectType: secret"])).expect("valid");
    let mut other_vault = with_objects(&["objectName: s\nobjectType: secret"]);
    other_vault.insert("keyvaultName".into(), "kv-2".into());
    let two = parse(&other_vault).expect("valid");
    assert_ne!(one.objects[0].descriptor, two.objects[0].descriptor);
}
