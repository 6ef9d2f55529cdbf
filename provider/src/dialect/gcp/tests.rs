use super::*;
use crate::backend::gcp::ResourceKind;

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn gcp(plan: &MountPlan) -> &BackendPlan<GcpConfig, GcpObject> {
    match &plan.backend {
        Plan::Gcp(plan) => plan,
        other => panic!("expected gcp, got {}", other.name()),
    }
}

#[test]
fn reads_the_gcp_provider_fields() {
    let yaml = "\
- resourceName: projects/p1/secrets/db/versions/latest
  path: db.txt
  mode: 0400
- resourceName: projects/p1/locations/us-east1/secrets/api/versions/2
  fileName: api.txt
- resourceName: projects/p1/secrets/cfg/versions/1
  path: nested/user
  fileName: ignored
  extractJSONKey: user
- resourceName: projects/p1/locations/global/parameters/app/versions/v1
  path: app.yaml
  extractYAMLKey: host
  mode: 256
";
    let plan = parse(&attrs(&[("secrets", yaml)])).expect("valid");
    let paths: Vec<&str> = plan.objects.iter().map(|o| o.path.as_str()).collect();
    assert_eq!(paths, ["db.txt", "api.txt", "nested/user", "app.yaml"]);
    assert_eq!(plan.objects[0].mode, Some(0o400));
    assert_eq!(plan.objects[1].mode, None);
    assert_eq!(plan.objects[3].mode, Some(256));
    let g = gcp(&plan);
    assert_eq!(g.config.auth, GcpAuth::Pod { audience: None });
    assert_eq!(g.objects[1].resource.location.as_deref(), Some("us-east1"));
    assert_eq!(g.objects[2].extract, Some(Extract::Json("user".into())));
    assert_eq!(g.objects[3].extract, Some(Extract::Yaml("host".into())));
    assert_eq!(g.objects[3].resource.kind, ResourceKind::Parameter);
}

#[test]
fn auth_and_audience() {
    let secrets = ("secrets", "- {resourceName: projects/p/secrets/s/versions/1, path: s}");
    for value in ["", "pod-adc"] {
        let plan = parse(&attrs(&[secrets, ("auth", value)])).expect("pod");
        assert_eq!(gcp(&plan).config.auth, GcpAuth::Pod { audience: None });
    }
    let plan = parse(&attrs(&[secrets, ("audience", "other.svc.id.goog")])).expect("audience");
    assert_eq!(gcp(&plan).config.auth, GcpAuth::Pod { audience: Some("other.svc.id.goog".into()) });
    let plan = parse(&attrs(&[secrets, ("auth", "provider-adc")])).expect("provider");
    assert_eq!(gcp(&plan).config.auth, GcpAuth::ProviderAdc);
    // Compared exactly, as the GCP provider does.
    for bad in ["Pod-ADC", " pod-adc", "node-adc"] {
        assert_eq!(parse(&attrs(&[secrets, ("auth", bad)])).expect_err(bad).field, "auth");
    }
    let both = parse(&attrs(&[secrets, ("auth", "provider-adc"), ("audience", "a")])).expect_err("both");
    assert_eq!(both.field, "audience");
}

#[test]
fn rejected_input_names_the_field() {
    let cases: &[(&str, &str)] = &[
        ("- {path: a}", "secrets[0].resourceName"),
        ("- {resourceName: projects/p/secrets/s, path: a}", "secrets[0].resourceName"),
        ("- {resourceName: x/projects/p/secrets/s/versions/1, path: a}", "secrets[0].resourceName"),
        ("- {resourceName: projects/p/secrets/s/versions/1}", "secrets[0].path"),
        ("- {resourceName: projects/p/secrets/s/versions/1, path: ../a}", "secrets[0].path"),
        ("- {resourceName: projects/p/secrets/s/versions/1, fileName: /etc/a}", "secrets[0].fileName"),
        ("- {resourceName: projects/p/secrets/s/versions/1, path: a, mode: 01777}", "secrets[0].mode"),
        ("- {resourceName: projects/p/secrets/s/versions/1, path: a, mode: -1}", "secrets[0].mode"),
        ("- {resourceName: projects/p/secrets/s/versions/1, path: a, extractJSONKey: k, extractYAMLKey: k}", "secrets[0].extractYAMLKey"),
        ("- {resourceName: projects/p/secrets/s/versions/1, path: a, extractJSONKey: k, expandKeys: true}", "secrets[0].expandKeys"),
        ("- {resourceName: projects/p/secrets/s/versions/1, path: a, encoding: rot13}", "secrets[0].encoding"),
        ("- {resourceName: projects/p/secrets/s/versions/1, path: a}\n- {resourceName: projects/p/secrets/t/versions/1, fileName: a}", "secrets[1].path"),
        ("- {resourceName: [a], path: a}", "secrets[0].resourceName"),
        ("{resourceName: projects/p/secrets/s/versions/1}", "secrets"),
        ("- just-a-string", "secrets[0]"),
        ("", "secrets"),
    ];
    for (yaml, field) in cases {
        let error = parse(&attrs(&[("secrets", yaml)])).expect_err(yaml);
        assert_eq!(error.field, *field, "{yaml}: {error}");
    }
    assert_eq!(parse(&attrs(&[])).expect_err("missing").field, "secrets");
    let long = "a".repeat(MAX_AUDIENCE_LEN + 1);
    let secrets = ("secrets", "- {resourceName: projects/p/secrets/s/versions/1, path: s}");
    assert_eq!(parse(&attrs(&[secrets, ("audience", &long)])).expect_err("long").field, "audience");
}

#[test]
fn courier_additions() {
    let yaml = "- {resourceName: projects/p/secrets/s/versions/1, path: cfg, expandKeys: true, encoding: base64, render: false}";
    let plan = parse(&attrs(&[("secrets", yaml)])).expect("valid");
    let spec = &plan.objects[0];
    assert!(spec.expand.is_some());
    assert_eq!(spec.encoding, crate::plan::Encoding::Base64);
    assert!(!spec.write);
    // Unknown fields are ignored, as the GCP provider's decoder does; field names are exact.
    let plan = parse(&attrs(&[("secrets", "- {resourceName: projects/p/secrets/s/versions/1, path: a, ExtractJSONKey: k, other: 1}")]))
        .expect("valid");
    assert_eq!(gcp(&plan).objects[0].extract, None);
}
