//! `courier-provider check`: the corpus's plain SecretProviderClasses checked offline give the very status a
//! running provider answers for them; the JSON shape; exit codes; hostile files stay bounded; nothing is
//! contacted.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::Context;
use courier_tests::calls::mount;
use courier_tests::corpus::{CorpusSetup, load_corpus, request_for};
use courier_tests::{TokenIssuer, tools};
use serde_json::{Value, json};

/// A check of a hostile file must end well within this (it is bounded, not merely fast on this machine).
const HOSTILE_DEADLINE: Duration = Duration::from_secs(20);

fn run_check(args: &[&str]) -> anyhow::Result<Output> {
    run_check_env(args, &[])
}

fn run_check_env(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Output> {
    let mut command = Command::new(tools::provider_binary()?);
    command.arg("check").args(args).stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context("starting courier-provider check")?;
    wait_bounded(child, HOSTILE_DEADLINE)
}

/// Waits for `child`, killing it (and failing) after `deadline`.
fn wait_bounded(child: std::process::Child, deadline: Duration) -> anyhow::Result<Output> {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(deadline) {
        Ok(output) => Ok(output?),
        Err(_) => {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
            anyhow::bail!("courier-provider check did not finish within {deadline:?}")
        }
    }
}

fn spc(name: &str, provider: &str, parameters: &BTreeMap<String, String>) -> Value {
    json!({
        "apiVersion": "secrets-store.csi.x-k8s.io/v1",
        "kind": "SecretProviderClass",
        "metadata": {"name": name, "namespace": "corpus"},
        "spec": {"provider": provider, "parameters": parameters},
    })
}

/// A manifest written to `dir/name` and checked with `--output json`: the file, the process output and the report.
fn check_manifest(dir: &tempfile::TempDir, name: &str, manifest: &str) -> anyhow::Result<(std::path::PathBuf, Output, Value)> {
    let file = dir.path().join(name);
    std::fs::write(&file, manifest)?;
    let output = run_check(&["--output", "json", file.to_str().context("path")?])?;
    let report = json_report(&output)?;
    Ok((file, output, report))
}

fn json_report(output: &Output) -> anyhow::Result<Value> {
    serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "not a JSON report; stdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test]
async fn corpus_classes_get_the_status_a_mount_answers() -> anyhow::Result<()> {
    // Every plain corpus case small enough for a manifest file, as a SecretProviderClass of its socket. (The large
    // recipes are alias bombs and megabyte values; the hostile-file test covers those shapes.)
    let cases: Vec<_> = load_corpus()?
        .into_iter()
        .enumerate()
        .filter(|(_, c)| c.known_issue.is_none())
        .filter_map(|(n, c)| c.plain_parameters().map(|p| (n, c, p)))
        // Cases that overwrite kubelet's pod information: the real driver sets those keys after the parameters.
        .filter(|(_, _, p)| !p.keys().any(|k| k.starts_with("csi.storage.k8s.io/")))
        .filter(|(_, _, p)| p.values().map(String::len).sum::<usize>() < 64 * 1024)
        .collect();
    assert!(cases.len() >= 150, "only {} plain corpus cases", cases.len());
    let dir = tempfile::tempdir()?;
    for (n, case, parameters) in &cases {
        // JSON is YAML: no escaping question for the hostile strings.
        std::fs::write(dir.path().join(format!("{n:04}.json")), spc(&format!("corpus-{n}"), &case.socket, parameters).to_string())?;
    }
    let dir_arg = dir.path().to_str().context("temp dir path")?;
    let output = run_check(&["--output", "json", dir_arg])?;
    let report = json_report(&output)?;
    let classes = report["classes"].as_array().context("classes")?;
    assert_eq!(classes.len(), cases.len(), "{report}");

    // The same cases mounted on a running provider whose backends are all closed ports.
    let setup = CorpusSetup::new()?;
    let provider = setup.provider_builder()?.log_level("warn").start().await?;
    let issuer = TokenIssuer::new()?;
    let mut mismatches = Vec::new();
    let (mut invalid, mut valid) = (0, 0);
    for ((n, case, _), class) in cases.iter().zip(classes) {
        let (request, _) = request_for(case, *n, &issuer)?;
        let mut client = provider.client(&case.socket).await?;
        let answer = mount(&mut client, request).await;
        let errors = class["errors"].as_array().context("errors")?;
        match (&answer, errors.first()) {
            // Parameters refused: check says the same thing with the same code.
            (Err(status), Some(error)) => {
                invalid += 1;
                let same = error["code"] == json!(format!("{:?}", status.code())) && error["message"] == json!(status.message());
                if !same {
                    mismatches.push(format!("{}: mount {:?} {:?}, check {error}", case.name, status.code(), status.message()));
                }
            }
            // Parameters accepted: the mount may only fail later, at a backend check does not contact.
            (Err(status), None) => {
                valid += 1;
                let audiences = class["audiences"].as_array().context("audiences")?;
                let token_missing = audiences.iter().filter_map(Value::as_str).any(|a| {
                    status.message().contains(&format!("passed no service-account token for audience {a:?}"))
                });
                // A token the CSIDriver does not request: check lists its audience for exactly that review.
                if status.code() == tonic::Code::InvalidArgument && !token_missing {
                    mismatches.push(format!("{}: mount refused {:?} but check found it valid", case.name, status.message()));
                }
            }
            (Ok(_), _) => mismatches.push(format!("{}: a closed-port backend answered a mount", case.name)),
        }
        assert_eq!(class["valid"], json!(errors.is_empty()), "{class}");
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
    assert!(invalid >= 100 && valid >= 10, "{invalid} invalid, {valid} valid");
    assert_eq!(output.status.code(), Some(1), "some classes are invalid");
    assert_eq!(report["invalid"], json!(invalid));
    assert_eq!(report["valid"], json!(valid));
    Ok(())
}

const GOOD: &str = r#"# a GitOps directory mixes kinds
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
data: {a: b}
---
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata:
  name: app
  namespace: team-a
spec:
  provider: vault
  parameters:
    roleName: app
    vaultAddress: https://vault.vault:8200
    vaultAuthMountPath: jwt
    objects: |
      - objectName: password
        secretPath: secret/data/app/config
        secretKey: password
        filePermission: 0600
      - objectName: certs
        secretPath: pki/issue/app
        method: PUT
        secretArgs: {common_name: app.example.internal}
        render: false
    templates: |
      - path: tls/bundle.pem
        template: "{{ objects.certs.data.certificate }}"
---
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: aws-app, namespace: team-b}
spec:
  provider: courier
  parameters:
    backend: aws
    region: eu-west-1
    usePodIdentity: "true"
    objects: |
      - objectName: prod/db
        objectType: secretsmanager
        objectAlias: db.json
        jmesPath:
          - path: username
            objectAlias: db-user
"#;

#[test]
fn reports_dialect_backend_files_modes_and_audiences_as_json() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (file, output, report) = check_manifest(&dir, "classes.yaml", GOOD)?;
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(report["skipped"], json!(1), "the ConfigMap is skipped: {report}");
    assert_eq!((report["valid"].clone(), report["invalid"].clone()), (json!(2), json!(0)));
    let vault = &report["classes"][0];
    let expected_vault = json!({
        "file": file.display().to_string(), "document": 2, "name": "app", "namespace": "team-a",
        "provider": "vault", "dialect": "vault",
        "backend": {"name": "vault", "address": "https://vault.vault:8200", "authMount": "jwt", "role": "app"},
        "audiences": ["vault"],
        "files": [
            {"path": "password", "mode": "0600", "source": "objects[0]"},
            {"path": "tls/bundle.pem", "mode": "0644", "source": "templates[0]"},
        ],
        "valid": true, "errors": [],
    });
    assert_eq!(vault, &expected_vault);
    let aws = &report["classes"][1];
    assert_eq!(aws["dialect"], "native");
    assert_eq!(aws["backend"], json!({"name": "aws", "region": "eu-west-1"}));
    assert_eq!(aws["audiences"], json!(["pods.eks.amazonaws.com"]));
    assert_eq!(
        aws["files"],
        json!([
            {"path": "db.json", "mode": "0644", "source": "objects[0]"},
            {"path": "db-user", "mode": "0644", "source": "objects[0].jmesPath[0]"},
        ])
    );

    // The text form says the same for people.
    let text = run_check(&[file.to_str().context("path")?])?;
    let shown = String::from_utf8(text.stdout)?;
    assert!(shown.contains("team-a/app") && shown.contains("file 0600 password") && shown.contains("token audiences: vault"), "{shown}");
    assert!(shown.contains("2 SecretProviderClass(es): 2 valid, 0 invalid; 1 other document(s) skipped"), "{shown}");
    Ok(())
}

/// SecretProviderClasses for `gcp.sock`, as the Google provider's users write them, and its mistakes.
const GCP: &str = r#"apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: gcp-app, namespace: team-c}
spec:
  provider: gcp
  parameters:
    secrets: |
      - resourceName: "projects/p1/secrets/db/versions/latest"
        path: "db.json"
        mode: 0400
      - resourceName: "projects/p1/locations/us-central1/secrets/api/versions/3"
        fileName: "api-key"
---
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: gcp-pool, namespace: team-c}
spec:
  provider: gcp
  parameters:
    audience: other-project.svc.id.goog
    secrets: |
      - resourceName: "projects/p1/secrets/db/versions/1"
        path: "db"
---
apiVersion: secrets-store.csi.x-k8s.io/v1
kind: SecretProviderClass
metadata: {name: gcp-bad, namespace: team-c}
spec:
  provider: gcp
  parameters:
    secrets: |
      - resourceName: "projects/p1/secrets/db"
        path: "db"
"#;

#[test]
fn reports_the_gcp_dialect_its_files_modes_and_audience() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_, output, report) = check_manifest(&dir, "gcp.yaml", GCP)?;
    assert_eq!(output.status.code(), Some(1), "one class is invalid: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!((report["valid"].clone(), report["invalid"].clone()), (json!(2), json!(1)), "{report}");

    let app = &report["classes"][0];
    assert_eq!((app["provider"].clone(), app["dialect"].clone()), (json!("gcp"), json!("gcp")), "{app}");
    assert_eq!(app["backend"]["name"], "gcp", "{app}");
    // Without `audience` the workload pool comes from the provider's flag, which an offline check cannot see.
    assert_eq!(app["audiences"], json!([]), "{app}");
    assert_eq!(
        app["files"],
        json!([
            {"path": "db.json", "mode": "0400", "source": "objects[0]"},
            {"path": "api-key", "mode": "0644", "source": "objects[1]"},
        ]),
        "{app}"
    );
    let pool = &report["classes"][1];
    assert_eq!(pool["audiences"], json!(["other-project.svc.id.goog"]), "{pool}");

    // A resource name without a version is refused as a mount would refuse it, naming the object and field.
    let bad = &report["classes"][2];
    assert_eq!(bad["valid"], json!(false), "{bad}");
    let errors = bad["errors"].to_string();
    assert!(errors.contains("resourceName") && errors.contains("projects/p1/secrets/db"), "{errors}");
    Ok(())
}

#[test]
fn manifest_errors_and_exit_codes() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (_, output, report) = check_manifest(
        &dir,
        "bad.yaml",
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: flags}\nspec:\n  provider: vault\n  parameters:\n    roleName: app\n    vaultSkipTLSVerify: true\n    objects: \"- objectName: a\\n  secretPath: secret/data/a\\n\"\n---\napiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {name: noprovider}\nspec: {parameters: {roleName: app}}\n",
    )?;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        report["classes"][0]["errors"],
        json!([{"code": "Manifest", "message": "spec.parameters.vaultSkipTLSVerify: must be a string, found a boolean (quote it)"}])
    );
    assert_eq!(report["classes"][1]["errors"], json!([{"code": "Manifest", "message": "spec.provider: missing"}]));

    // Usage and input errors: 2, with the reason on stderr and nothing on stdout.
    for (args, needle) in [
        (vec![], "required"),
        (vec!["--output", "xml", "x.yaml"], "xml"),
        (vec!["/nonexistent/courier/spc.yaml"], "/nonexistent/courier/spc.yaml"),
    ] {
        let output = run_check(&args)?;
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains(needle), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "kind: [unclosed\n")?;
    let output = run_check(&[broken.to_str().context("path")?])?;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not valid YAML"), "{output:?}");
    Ok(())
}

/// Writes `text` to `dir/name` and checks it, returning the output.
fn check_file(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> anyhow::Result<Output> {
    let path = dir.join(name);
    std::fs::File::create(&path)?.write_all(text.as_ref())?;
    run_check(&[path.to_str().context("path")?])
}

#[test]
fn hostile_files_are_refused_within_bounds() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Larger than the limit: refused before it is parsed.
    let huge = check_file(dir.path(), "huge.yaml", format!("a: \"{}\"\n", "x".repeat(5 * 1024 * 1024)))?;
    assert_eq!(huge.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&huge.stderr).contains("over 4194304 bytes"), "{huge:?}");
    // Deeper than any manifest.
    let deep = check_file(dir.path(), "deep.yaml", format!("{}1{}\n", "[".repeat(100_000), "]".repeat(100_000)))?;
    assert_eq!(deep.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&deep.stderr).contains("not valid YAML"), "{deep:?}");
    // An alias bomb: nine levels of ten references.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!("a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
    }
    let bombed = check_file(dir.path(), "bomb.yaml", bomb)?;
    assert_eq!(bombed.status.code(), Some(2), "{bombed:?}");
    // Endless documents.
    let many = check_file(dir.path(), "many.yaml", "---\na: 1\n".repeat(5_000))?;
    assert_eq!(many.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&many.stderr).contains("over 1000 YAML documents"), "{many:?}");
    // A huge parameter inside the limit is the provider's to refuse, as a mount would.
    let big_objects = format!(
        "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {{name: big}}\nspec:\n  provider: vault\n  parameters:\n    roleName: r\n    objects: |\n{}",
        "      - objectName: o\n        secretPath: secret/data/a\n".repeat(2_000)
    );
    let big = check_file(dir.path(), "big.yaml", big_objects)?;
    assert_eq!(big.status.code(), Some(1), "{big:?}");
    assert!(String::from_utf8_lossy(&big.stdout).contains("error InvalidArgument: objects"), "{}", String::from_utf8_lossy(&big.stdout));
    Ok(())
}

#[test]
fn offline_nothing_is_contacted() -> anyhow::Result<()> {
    // A listener where the class's Vault and the proxies point: it must see no connection.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = format!("http://{}", listener.local_addr()?);
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("spc.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: secrets-store.csi.x-k8s.io/v1\nkind: SecretProviderClass\nmetadata: {{name: app}}\nspec:\n  provider: courier\n  parameters:\n    roleName: app\n    vaultAddress: {addr}\n    objects: |\n      - objectName: db\n        secretPath: database/creds/app\n"
        ),
    )?;
    let output = run_check_env(
        &[file.to_str().context("path")?, "--vault-addr", &addr],
        &[("HTTPS_PROXY", &addr), ("HTTP_PROXY", &addr), ("AWS_ENDPOINT_URL", &addr), ("KUBECONFIG", "/nonexistent")],
    )?;
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Ok((_, peer)) => anyhow::bail!("check connected to the backend from {peer}"),
        Err(e) => Err(e.into()),
    }
}
