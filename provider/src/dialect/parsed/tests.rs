use super::*;

fn defaults() -> Defaults {
    Defaults { vault_address: "https://127.0.0.1:8200".into(), aws_region: None }
}

/// A class's parameters as the driver sends them for pod `pod`.
fn attributes(pod: &str, role: &str) -> BTreeMap<String, String> {
    [
        ("roleName", role),
        ("objects", "- objectName: db\n  secretPath: secret/data/db\n  secretKey: password\n"),
        ("csi.storage.k8s.io/pod.namespace", "team-a"),
        ("csi.storage.k8s.io/serviceAccount.name", "app"),
        (POD_NAME_KEY, pod),
        (POD_UID_KEY, &format!("uid-{pod}")),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

#[test]
fn pods_of_one_class_share_its_plan_and_other_parameters_get_their_own() {
    let plans = ParsedPlans::default();
    let first = plans.parse(Dialect::Vault, &attributes("app-0", "app"), &defaults()).expect("valid");
    let again = plans.parse(Dialect::Vault, &attributes("app-1", "app"), &defaults()).expect("valid");
    assert!(Arc::ptr_eq(&first, &again), "another pod of the same class parses again");
    // What is kept is what a parse gives.
    let fresh = Dialect::Vault.parse(&attributes("app-0", "app"), &defaults()).expect("valid");
    assert_eq!(format!("{:?}", *first), format!("{fresh:?}"));

    let other_role = plans.parse(Dialect::Vault, &attributes("app-0", "other"), &defaults()).expect("valid");
    assert!(!Arc::ptr_eq(&first, &other_role));
    assert_ne!(format!("{:?}", *first), format!("{:?}", *other_role));
    let openbao = plans.parse(Dialect::OpenBao, &attributes("app-0", "app"), &defaults()).expect("valid");
    assert!(!Arc::ptr_eq(&first, &openbao), "a plan is kept per dialect");
    // The namespace is part of the key, though no dialect reads it today.
    let mut elsewhere = attributes("app-0", "app");
    elsewhere.insert("csi.storage.k8s.io/pod.namespace".into(), "team-b".into());
    assert!(!Arc::ptr_eq(&first, &plans.parse(Dialect::Vault, &elsewhere, &defaults()).expect("valid")));
    assert_eq!(plans.held().0, 4);
}

#[test]
fn names_and_values_cannot_run_into_each_other() {
    let a: BTreeMap<String, String> = [("ab".to_owned(), "c".to_owned())].into();
    let b: BTreeMap<String, String> = [("a".to_owned(), "bc".to_owned())].into();
    assert_ne!(key(Dialect::Vault, &a), key(Dialect::Vault, &b));
    assert_ne!(key(Dialect::Vault, &a), key(Dialect::Native, &a));
}

#[test]
fn refused_parameters_are_not_kept_and_are_refused_again() {
    let plans = ParsedPlans::default();
    let mut bad = attributes("app-0", "app");
    bad.insert("objects".into(), "- objectName: db\n".into());
    for _ in 0..2 {
        let error = plans.parse(Dialect::Vault, &bad, &defaults()).expect_err("no secretPath");
        assert!(error.to_string().contains("secretPath"), "{error}");
    }
    assert_eq!(plans.held(), (0, 0));
}

#[test]
fn what_is_kept_is_bounded() {
    let plans = ParsedPlans::default();
    // Large parameters are parsed every time, never kept.
    let mut large = attributes("app-0", "app");
    large.insert("padding".into(), "x".repeat(MAX_ENTRY_BYTES));
    plans.parse(Dialect::Vault, &large, &defaults()).expect("valid");
    assert_eq!(plans.held(), (0, 0));

    // Many classes just under the entry bound: the bytes stay under the total.
    let padding = "x".repeat(MAX_ENTRY_BYTES - 512);
    for i in 0..2 * MAX_TOTAL_BYTES / MAX_ENTRY_BYTES {
        let mut a = attributes("app-0", &format!("role-{i}"));
        a.insert("padding".into(), padding.clone());
        plans.parse(Dialect::Vault, &a, &defaults()).expect("valid");
        let (_, bytes) = plans.held();
        assert!(bytes <= MAX_TOTAL_BYTES, "{bytes} bytes held");
    }
    // Many small classes: the count stays under its bound.
    let plans = ParsedPlans::default();
    for i in 0..MAX_PLANS + 50 {
        plans.parse(Dialect::Vault, &attributes("app-0", &format!("role-{i}")), &defaults()).expect("valid");
        assert!(plans.held().0 <= MAX_PLANS);
    }
    assert_eq!(plans.held().0, MAX_PLANS);
}
