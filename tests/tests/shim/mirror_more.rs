//! More of Secret mirroring: kubernetes.io/tls Secrets split from PEM and from PKCS#12, a write that meets a
//! conflict, and a Secret shared by two bare pods that outlives the first one.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use courier_tests::{KubeFault, KubeResource};
use serde_json::{Value, json};

use crate::support::{FAKE_PROVIDER, Node, SPC};

fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("openssl").args(args).current_dir(dir).output()?;
    anyhow::ensure!(status.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&status.stderr));
    Ok(())
}

/// A fresh EC key and a self-signed certificate, as (key PEM, cert PEM, PKCS#12 with an empty password).
fn key_and_cert() -> anyhow::Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
    let dir = tempfile::tempdir()?;
    openssl(dir.path(), &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "key.pem"])?;
    openssl(dir.path(), &["req", "-new", "-x509", "-key", "key.pem", "-subj", "/CN=app.example.internal", "-days", "1", "-out", "cert.pem"])?;
    openssl(dir.path(), &["pkcs12", "-export", "-inkey", "key.pem", "-in", "cert.pem", "-passout", "pass:", "-out", "bundle.p12"])?;
    Ok((
        std::fs::read(dir.path().join("key.pem"))?,
        std::fs::read(dir.path().join("cert.pem"))?,
        std::fs::read(dir.path().join("bundle.p12"))?,
    ))
}

fn decoded(secret: &Value, key: &str) -> String {
    let text = secret["data"][key].as_str().unwrap_or_default();
    String::from_utf8(base64::engine::general_purpose::STANDARD.decode(text).unwrap_or_default()).unwrap_or_default()
}

fn tls_spec(object: &str) -> Value {
    json!({
        "provider": FAKE_PROVIDER,
        "parameters": {"objects": "x"},
        "secretObjects": [{
            "secretName": "web-tls",
            "type": "kubernetes.io/tls",
            "data": [{"objectName": object, "key": "tls.key"}, {"objectName": object, "key": "tls.crt"}],
        }],
    })
}

#[tokio::test]
async fn tls_secrets_split_key_and_chain_from_pem_and_pkcs12() -> anyhow::Result<()> {
    let (key, cert, p12) = key_and_cert()?;
    for (label, object, content) in [
        ("pem", "bundle.pem", [key.clone(), cert.clone(), cert.clone()].concat()),
        ("pkcs12", "bundle.p12", p12.clone()),
    ] {
        let node = Node::start_with(|shim| shim.arg("--sync-secrets=true")).await?;
        let pod = node.pod("team-a");
        node.kube.put_secret_provider_class_spec(pod.namespace(), SPC, tls_spec(object));
        node.provider.set_files(&[(object, 0o400, content.as_slice())]);
        let mut kubelet = node.kubelet().await?;
        node.publish_when_synced(&mut kubelet, &node.volume(&pod)).await?;

        let secret = node
            .kube
            .get(KubeResource::SECRETS, pod.namespace(), "web-tls")
            .ok_or_else(|| anyhow::anyhow!("{label}: no Secret; events: {:?}\n{}", node.kube.events(), node.logs()))?;
        assert_eq!(secret["type"], "kubernetes.io/tls", "{label}");
        let tls_key = decoded(&secret, "tls.key");
        let tls_crt = decoded(&secret, "tls.crt");
        assert!(tls_key.contains("PRIVATE KEY-----") && !tls_key.contains("CERTIFICATE"), "{label}: tls.key holds only the key");
        assert!(tls_crt.contains("BEGIN CERTIFICATE") && !tls_crt.contains("PRIVATE"), "{label}: tls.crt holds only certificates");
        let expected_certs = if label == "pem" { 2 } else { 1 };
        assert_eq!(tls_crt.matches("BEGIN CERTIFICATE").count(), expected_certs, "{label}: the whole chain");
        assert_eq!(secret["data"].as_object().map(|m| m.len()), Some(2), "{label}: only tls.key and tls.crt");
    }
    Ok(())
}

#[tokio::test]
async fn a_conflicting_update_is_retried() -> anyhow::Result<()> {
    let node = Node::start_with(|shim| shim.arg("--sync-secrets=true")).await?;
    let pod = node.pod("team-a");
    node.kube.put_secret_provider_class_spec(
        pod.namespace(),
        SPC,
        json!({
            "provider": FAKE_PROVIDER,
            "parameters": {"objects": "x"},
            "secretObjects": [{"secretName": "db", "type": "Opaque", "data": [{"objectName": "password", "key": "password"}]}],
        }),
    );
    node.provider.set_files(&[("password", 0o400, b"one")]);
    let volume = node.volume(&pod);
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &volume).await?;

    // Someone else writes the Secret between the shim's read and its write: the first PUT gets 409.
    let path = format!("/api/v1/namespaces/{}/secrets/db", pod.namespace());
    node.kube.inject_fault("PUT", &path, 1, KubeFault::Conflict);
    node.provider.set_files(&[("password", 0o400, b"two")]);
    kubelet.publish(&volume).await?;

    let secret = node.kube.get(KubeResource::SECRETS, pod.namespace(), "db").ok_or_else(|| anyhow::anyhow!("gone"))?;
    assert_eq!(decoded(&secret, "password"), "two", "updated after the conflict; log:\n{}", node.logs());
    let puts = node.kube.requests_to("PUT", &path).len();
    assert_eq!(puts, 2, "one refused write and one retried write");
    let rotations: Vec<Value> =
        node.kube.events_about(pod.namespace(), pod.name()).into_iter().filter(|e| e["reason"] == "SecretRotationComplete").collect();
    assert_eq!(rotations.len(), 1, "one Event records the rotation");
    let message = rotations[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("db") && !message.contains("two"), "names the Secret, never the value: {message}");
    Ok(())
}

#[tokio::test]
async fn a_secret_shared_by_two_bare_pods_outlives_the_first() -> anyhow::Result<()> {
    let node = Node::start_with(|shim| shim.arg("--sync-secrets=true")).await?;
    let first = node.pod("team-a");
    let second = node.pod("team-a");
    node.kube.put_secret_provider_class_spec(
        first.namespace(),
        SPC,
        json!({
            "provider": FAKE_PROVIDER,
            "parameters": {"objects": "x"},
            "secretObjects": [{"secretName": "shared", "type": "Opaque", "data": [{"objectName": "token", "key": "token"}]}],
        }),
    );
    node.provider.set_files(&[("token", 0o400, b"t")]);
    let mut kubelet = node.kubelet().await?;
    node.publish_when_synced(&mut kubelet, &node.volume(&first)).await?;
    node.publish_when_synced(&mut kubelet, &node.volume(&second)).await?;
    let secret = node.kube.get(KubeResource::SECRETS, first.namespace(), "shared").ok_or_else(|| anyhow::anyhow!("no Secret"))?;
    let owners = secret["metadata"]["ownerReferences"].as_array().map_or(0, Vec::len);
    assert_eq!(owners, 2, "both pods' status records own it: {secret}");

    node.kube.delete(KubeResource::PODS, first.namespace(), first.name());
    let collected = node.kube.collect_garbage();
    assert!(
        node.kube.get(KubeResource::SECRETS, first.namespace(), "shared").is_some(),
        "the second pod still uses it; collected {collected:?}"
    );
    node.kube.delete(KubeResource::PODS, second.namespace(), second.name());
    let collected = node.kube.collect_garbage();
    assert!(
        collected.contains(&format!("secrets/{}/shared", first.namespace())),
        "gone with its last owner: {collected:?}"
    );
    Ok(())
}
