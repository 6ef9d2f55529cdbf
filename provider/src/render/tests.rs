use super::*;

fn spec(name: &str, encoding: Encoding, mode: Option<u32>) -> ObjectSpec {
    ObjectSpec {
        index: 0,
        name: name.to_owned(),
        path: ObjectPath::parse(name).expect("path"),
        write: true,
        expand: None,
        mode,
        encoding,
        descriptor: name.to_owned(),
        derived: Vec::new(),
    }
}

fn fetched(bytes: &[u8]) -> Fetched {
    Fetched::value(SecretBytes::new(bytes.to_vec()), None)
}

#[test]
fn decodes_and_sets_modes() {
    let v = Versioner::random();
    let specs = [spec("a", Encoding::Base64, Some(0o600)), spec("b", Encoding::Hex, None), spec("c", Encoding::Utf8, None)];
    let out = render(&specs, vec![fetched(b"aGVsbG8=\n"), fetched(b"68690a"), fetched(b"raw")], &[], 0o644, &v).expect("ok");
    assert_eq!(out.files[0].contents.expose_secret(), b"hello");
    assert_eq!(out.files[0].mode, 0o600);
    assert_eq!(out.files[1].contents.expose_secret(), b"hi\n");
    assert_eq!(out.files[1].mode, 0o644);
    assert_eq!(out.files[2].contents.expose_secret(), b"raw");
    assert_eq!(out.versions.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
}

#[test]
fn jmes_paths_cut_strings_out_of_json() {
    let v = Versioner::random();
    let mut s = spec("db", Encoding::Utf8, None);
    s.derived = vec![
        Derived { path: ObjectPath::parse("user").expect("p"), mode: Some(0o600), jmes_path: "username".into() },
        Derived { path: ObjectPath::parse("host").expect("p"), mode: None, jmes_path: "conn.host".into() },
    ];
    let body = br#"{"username":"u1","port":5432,"conn":{"host":"db.internal"}}"#;
    let out = render(&[s.clone()], vec![fetched(body)], &[], 0o644, &v).expect("ok");
    let names: Vec<&str> = out.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(names, ["db", "user", "host"]);
    assert_eq!(out.files[1].contents.expose_secret(), b"u1");
    assert_eq!(out.files[1].mode, 0o600);
    assert_eq!(out.files[2].contents.expose_secret(), b"db.internal");
    assert_eq!(out.versions.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["db", "user", "host"]);

    s.derived = vec![Derived { path: ObjectPath::parse("port").expect("p"), mode: None, jmes_path: "port".into() }];
    let err = render(&[s.clone()], vec![fetched(body)], &[], 0o644, &v).expect_err("number").to_string();
    assert!(err.contains("a number, not a string") && err.contains("objects[0]"), "{err}");
    assert!(!err.contains("5432"));
    let err = render(&[s], vec![fetched(b"not json secret")], &[], 0o644, &v).expect_err("not json").to_string();
    assert!(err.contains("not JSON") && !err.contains("not json secret"), "{err}");
}

#[test]
fn backend_version_ids_are_keyed_into_versions() {
    let v = Versioner::with_key(vec![1; 32]).expect("key");
    let s = spec("a", Encoding::Utf8, None);
    let with = |id: Option<&str>| {
        let f = Fetched::value(SecretBytes::new(b"same".to_vec()), id.map(str::to_owned));
        render(std::slice::from_ref(&s), vec![f], &[], 0o644, &v).expect("ok").versions[0].version.clone()
    };
    assert_ne!(with(Some("v1")), with(Some("v2")));
    assert_eq!(with(Some("v1")), with(Some("v1")));
    assert!(!with(Some("v1")).contains("v1"));
}

#[test]
fn expand_keys_writes_one_file_per_key() {
    let v = Versioner::random();
    let mut s = spec("app", Encoding::Utf8, Some(0o600));
    s.expand = Some(crate::plan::Expand { base: Some(ObjectPath::parse("app").expect("p")) });
    let out = render(&[s.clone()], vec![fetched(br#"{"user":"u","port":5432}"#)], &[], 0o644, &v).expect("ok");
    let names: Vec<(&str, u32)> = out.files.iter().map(|f| (f.path.as_str(), f.mode)).collect();
    assert_eq!(names, [("app/port", 0o600), ("app/user", 0o600)]);
    assert_eq!(out.files[0].contents.expose_secret(), b"5432");

    let err = render(&[s.clone()], vec![fetched(br#"{"../x":"secret-1"}"#)], &[], 0o644, &v).expect_err("unsafe");
    assert!(err.to_string().contains("\"../x\"") && !err.to_string().contains("secret-1"), "{err}");
    let err = render(&[s.clone()], vec![fetched(br#"{"a/b":"v"}"#)], &[], 0o644, &v).expect_err("slash");
    assert!(err.to_string().contains("contains '/'"), "{err}");
    let err = render(&[s.clone()], vec![fetched(b"{}")], &[], 0o644, &v).expect_err("empty");
    assert!(err.is_not_found());
    let err = render(&[s], vec![fetched(b"[1,2]")], &[], 0o644, &v).expect_err("list");
    assert!(err.to_string().contains("a list"), "{err}");
}

#[test]
fn conflicts_and_nothing_to_write() {
    let v = Versioner::random();
    let mut a = spec("app", Encoding::Utf8, None);
    a.expand = Some(crate::plan::Expand { base: Some(ObjectPath::parse("app").expect("p")) });
    let b = spec("app", Encoding::Utf8, None);
    let err = render(&[b.clone(), a], vec![fetched(b"x"), fetched(br#"{"k":"v"}"#)], &[], 0o644, &v).expect_err("conflict");
    assert!(matches!(err, RenderError::Conflict { .. }), "{err}");
    let mut hidden = b;
    hidden.write = false;
    assert!(matches!(render(&[hidden.clone()], vec![fetched(b"x")], &[], 0o644, &v), Err(RenderError::Nothing)));
    let t = TemplateSpec { index: 0, path: ObjectPath::parse("out").expect("p"), source: "v={{ objects.app }}".into(), mode: Some(0o400) };
    let out = render(&[hidden], vec![fetched(b"x")], &[t], 0o644, &v).expect("template only");
    assert_eq!(out.files.len(), 1);
    assert_eq!((out.files[0].path.as_str(), out.files[0].mode), ("out", 0o400));
    assert_eq!(out.files[0].contents.expose_secret(), b"v=x");
}

#[test]
fn bad_encodings_name_the_object_not_the_value() {
    let v = Versioner::random();
    let err = render(&[spec("k", Encoding::Hex, None)], vec![fetched(b"zz-secret")], &[], 0o644, &v).expect_err("bad hex");
    let text = err.to_string();
    assert!(text.contains("objects[0]") && text.contains("hex"), "{text}");
    assert!(!text.contains("zz-secret"));
}
