use super::*;

fn defaults() -> Defaults {
    Defaults { vault_address: "https://127.0.0.1:8200".into(), aws_region: None }
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

const OBJECTS: &str = "- objectName: db\n  secretPath: secret/data/db\n  secretKey: password\n";

fn vault_cfg(plan: &MountPlan) -> &VaultConfig {
    match &plan.backend {
        Plan::Vault(plan) => &plan.config,
        _ => panic!("expected vault"),
    }
}

#[test]
fn defaults_per_flavor() {
    let a = attrs(&[("roleName", "app"), ("objects", OBJECTS)]);
    let plan = parse(&a, Flavor::Vault, Socket::Compatible, &defaults()).expect("valid");
    let cfg = vault_cfg(&plan);
    assert_eq!(cfg.audience, "vault");
    assert_eq!(cfg.auth_mount, "kubernetes");
    assert_eq!(cfg.address, "https://127.0.0.1:8200");
    let plan = parse(&a, Flavor::OpenBao, Socket::Compatible, &defaults()).expect("valid");
    assert_eq!(vault_cfg(&plan).audience, "openbao");
}

#[test]
fn each_socket_reads_its_providers_spellings() {
    let base = [("roleName", "app"), ("objects", OBJECTS)];
    let with = |extra: &[(&str, &str)]| {
        let mut a = attrs(&base);
        a.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        a
    };
    // vault.sock: only `vault*` keys, as vault-csi-provider.
    let a = with(&[("openbaoAddress", "http://bao:8200/"), ("baoAuthMountPath", "jwt")]);
    let cfg = parse(&a, Flavor::Vault, Socket::Compatible, &defaults()).expect("valid");
    assert_eq!((vault_cfg(&cfg).address.as_str(), vault_cfg(&cfg).auth_mount.as_str()), ("https://127.0.0.1:8200", "kubernetes"));
    // openbao.sock: bao > openbao > vault, the first present winning (openbao-csi-provider internal/config).
    let a = with(&[("baoAddress", "http://b"), ("openbaoAddress", "http://o"), ("vaultAddress", "http://v"), ("baoNamespace", "team"), ("baoAuthMountPath", "jwt"), ("baoRoleName", "bao-role")]);
    let plan = parse(&a, Flavor::OpenBao, Socket::Compatible, &defaults()).expect("valid");
    let cfg = vault_cfg(&plan);
    assert_eq!((cfg.address.as_str(), cfg.namespace.as_deref(), cfg.auth_mount.as_str(), cfg.role.as_str()), ("http://b", Some("team"), "jwt", "bao-role"));
    let a = with(&[("openbaoAddress", "http://o"), ("vaultAddress", "http://v")]);
    assert_eq!(vault_cfg(&parse(&a, Flavor::OpenBao, Socket::Compatible, &defaults()).expect("valid")).address, "http://o");
    let a = with(&[("baoSkipTLSVerify", "True"), ("vaultSkipTLSVerify", "nonsense")]);
    assert_eq!(vault_cfg(&parse(&a, Flavor::OpenBao, Socket::Compatible, &defaults()).expect("valid")).tls.verify, TlsVerify::DangerousDisabled);
    let a = with(&[("baoKubernetesMountPath", "k8s"), ("vaultAuthMountPath", "jwt")]);
    assert_eq!(parse(&a, Flavor::OpenBao, Socket::Compatible, &defaults()).expect_err("exclusive").field, "vaultAuthMountPath");
    // The native socket: every spelling, conflicts named.
    let a = with(&[("openbaoAddress", "http://bao:8200/"), ("openbaoAuthMountPath", "jwt")]);
    let plan = parse(&a, Flavor::Vault, Socket::Native, &defaults()).expect("valid");
    assert_eq!(vault_cfg(&plan).address, "http://bao:8200");
    assert_eq!(vault_cfg(&plan).auth_mount, "jwt");
    let a = with(&[("vaultAddress", "http://a"), ("openbaoAddress", "http://b")]);
    assert_eq!(parse(&a, Flavor::OpenBao, Socket::Native, &defaults()).expect_err("conflict").field, "vaultAddress");
}

#[test]
fn skip_verify_takes_every_anchor_boolean() {
    for (text, off) in [("1", true), ("t", true), ("T", true), ("TRUE", true), ("true", true), ("True", true), ("0", false), ("f", false), ("F", false), ("FALSE", false), ("false", false), ("False", false)] {
        let a = attrs(&[("roleName", "r"), ("objects", OBJECTS), ("vaultSkipTLSVerify", text)]);
        let verify = vault_cfg(&parse(&a, Flavor::Vault, Socket::Compatible, &defaults()).expect(text)).tls.verify;
        assert_eq!(verify == TlsVerify::DangerousDisabled, off, "{text}");
    }
}

#[test]
fn whole_responses_ignore_encoding_on_the_compatibility_sockets() {
    let a = attrs(&[("roleName", "r"), ("objects", "- {objectName: a, secretPath: s, encoding: base64}")]);
    assert_eq!(parse(&a, Flavor::Vault, Socket::Compatible, &defaults()).expect("valid").objects[0].encoding, Encoding::Utf8);
    assert_eq!(parse(&a, Flavor::Vault, Socket::Native, &defaults()).expect_err("native").field, "objects[0].encoding");
    let a = attrs(&[("roleName", "r"), ("objects", "- {objectName: a, secretPath: s, secretKey: k, encoding: hex}")]);
    assert_eq!(parse(&a, Flavor::Vault, Socket::Compatible, &defaults()).expect("valid").objects[0].encoding, Encoding::Hex);
}

#[test]
fn mount_paths_are_exclusive() {
    let a = attrs(&[("roleName", "r"), ("objects", OBJECTS), ("vaultAuthMountPath", "jwt"), ("vaultKubernetesMountPath", "k8s")]);
    assert!(parse(&a, Flavor::Vault, Socket::Compatible, &defaults()).expect_err("exclusive").problem.contains("mutually exclusive"));
    let a = attrs(&[("roleName", "r"), ("objects", OBJECTS), ("vaultKubernetesMountPath", "auth/k8s/")]);
    assert_eq!(vault_cfg(&parse(&a, Flavor::Vault, Socket::Compatible, &defaults()).expect("valid")).auth_mount, "k8s");
}

#[test]
fn parameter_errors_name_the_field() {
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("objects", OBJECTS)], "roleName"),
        (vec![("roleName", "r")], "objects"),
        (vec![("roleName", "r"), ("objects", OBJECTS), ("vaultSkipTLSVerify", "maybe")], "vaultSkipTLSVerify"),
        (vec![("roleName", "r"), ("objects", OBJECTS), ("shareLeases", "yes")], "shareLeases"),
        (vec![("roleName", "r"), ("objects", OBJECTS), ("revokeOnUnmount", "on")], "revokeOnUnmount"),
        (vec![("roleName", "r"), ("objects", OBJECTS), ("vaultTLSClientCertPath", "/c")], "vaultTLSClientCertPath"),
        (vec![("roleName", "r"), ("objects", "- objectName: a\n")], "objects[0].secretPath"),
        (vec![("roleName", "r"), ("objects", "- secretPath: a\n")], "objects[0].objectName"),
        (vec![("roleName", "r"), ("objects", "- {objectName: a, secretPath: s, method: DELETE}")], "objects[0].method"),
        (vec![("roleName", "r"), ("objects", "- {objectName: a, secretPath: s, secretKey: k, encoding: rot13}")], "objects[0].encoding"),
        (vec![("roleName", "r"), ("objects", "- {objectName: ../x, secretPath: s}")], "objects[0].objectName"),
        (vec![("roleName", "r"), ("objects", "- {objectName: /abs, secretPath: s}")], "objects[0].objectName"),
        (vec![("roleName", "r"), ("objects", "- {objectName: '', secretPath: s}")], "objects[0].objectName"),
        (vec![("roleName", "r"), ("objects", "- {objectName: a, secretPath: s}\n- {objectName: a, secretPath: t}")], "objects[1].objectName"),
        (vec![("roleName", "r"), ("objects", "- {objectName: a, secretPath: secret/../sys}")], "objects[0].secretPath"),
        (vec![("roleName", "r"), ("objects", "- {objectName: a, secretPath: s, secretArgs: [1]}")], "objects[0].secretArgs"),
    ];
    for (pairs, field) in cases {
        let err = parse(&attrs(&pairs), Flavor::Vault, Socket::Compatible, &defaults()).expect_err(field);
        assert_eq!(err.field, field, "{err}");
    }
}

#[test]
fn secret_paths() {
    assert_eq!(split_secret_path("v1/secret/data/app?version=2"), Ok(("secret/data/app".into(), Some("version=2".into()))));
    assert_eq!(split_secret_path("/secret/app/"), Ok(("secret/app".into(), None)));
    assert!(split_secret_path("v1/").is_err());
    assert!(split_secret_path("a//b").is_err());
}

#[test]
fn objects_are_parsed() {
    let yaml = "- objectName: cert\n  secretPath: pki/issue/web\n  secretKey: certificate\n  method: put\n  secretArgs: {common_name: a.example}\n  encoding: BASE64\n  filePermission: 0600\n";
    let plan = parse(&attrs(&[("roleName", "r"), ("objects", yaml)]), Flavor::Vault, Socket::Compatible, &defaults()).expect("valid");
    let o = &plan.objects[0];
    assert_eq!(o.mode, Some(0o600));
    assert_eq!(o.encoding, Encoding::Base64);
    let Plan::Vault(vault) = &plan.backend else { panic!("expected a Vault plan") };
    let v = &vault.objects[0];
    assert_eq!(v.method, Method::Put);
    assert_eq!(v.args.as_ref().and_then(|a| a.get("common_name")).and_then(|v| v.as_str()), Some("a.example"));
}
