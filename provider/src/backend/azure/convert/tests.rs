//! Material is made in each test with the `openssl` command the test support
//! already needs (keys, a root -> intermediate -> leaf chain with key ids), and
//! PKCS#12 files are written with p12-keystore in a chosen certificate order.

use std::path::Path;
use std::process::Command;

use super::*;

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A new EC P-256 private key in `dir/file`.
fn ec_key(dir: &Path, file: &str) {
    openssl(dir, &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", file]);
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).expect("read")
}

/// The DER of the first PEM block of `text`.
fn der_of(text: &str) -> Vec<u8> {
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    BASE64.decode(body).expect("base64")
}

/// A root, intermediate and leaf (EC P-256), each with subject and authority key ids.
struct Chain {
    root: Vec<u8>,
    intermediate: Vec<u8>,
    leaf: Vec<u8>,
    leaf_key_pkcs8: Vec<u8>,
}

fn chain(dir: &Path) -> Chain {
    std::fs::write(
        dir.join("ca.ext"),
        "basicConstraints=critical,CA:TRUE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    )
    .expect("write");
    for name in ["root", "intermediate", "leaf"] {
        ec_key(dir, &format!("{name}.key"));
    }
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "root.key",
            "-subj",
            "/CN=root",
            "-days",
            "1",
            "-addext",
            "subjectKeyIdentifier=hash",
            "-out",
            "root.pem",
        ],
    );
    for (name, issuer, ext) in [
        ("intermediate", "root", "ca.ext"),
        ("leaf", "intermediate", "leaf.ext"),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                &format!("/CN={name}"),
                "-out",
                &format!("{name}.csr"),
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{issuer}.pem"),
                "-CAkey",
                &format!("{issuer}.key"),
                "-CAcreateserial",
                "-days",
                "1",
                "-extfile",
                ext,
                "-out",
                &format!("{name}.pem"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "leaf.key", "-outform", "DER", "-out", "leaf.p8",
        ],
    );
    Chain {
        root: der_of(&read(dir, "root.pem")),
        intermediate: der_of(&read(dir, "intermediate.pem")),
        leaf: der_of(&read(dir, "leaf.pem")),
        leaf_key_pkcs8: std::fs::read(dir.join("leaf.p8")).expect("read"),
    }
}

/// A PKCS#12 with an empty password holding `key` and `certs` in that order, base64.
fn pkcs12(key: &[u8], certs: &[&[u8]]) -> String {
    let key = p12_keystore::PrivateKey::from_der(key).expect("pkcs8");
    let certs: Vec<p12_keystore::Certificate> = certs
        .iter()
        .map(|c| p12_keystore::Certificate::from_der(c).expect("cert"))
        .collect();
    let chain = p12_keystore::PrivateKeyChain::new(b"id".to_vec(), key, certs);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry("cert", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    BASE64.encode(store.writer("").write().expect("write pkcs12"))
}

/// The DER of every block of `pem_text`, with its tag.
fn blocks(pem_text: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut tag = None;
    let mut body = String::new();
    for line in pem_text.lines() {
        if let Some(t) = line.strip_prefix("-----BEGIN ") {
            tag = Some(t.trim_end_matches('-').to_owned());
            body.clear();
        } else if line.starts_with("-----END ") {
            out.push((
                tag.take().expect("begin"),
                BASE64.decode(&body).expect("base64"),
            ));
        } else {
            assert!(line.len() <= 64, "lines of 64 characters");
            body.push_str(line);
        }
    }
    out
}

#[test]
fn pem_blocks_are_wrapped_at_64() {
    let text = pem("CERTIFICATE", &[7u8; 100]);
    assert!(
        text.starts_with("-----BEGIN CERTIFICATE-----\n")
            && text.ends_with("-----END CERTIFICATE-----\n")
    );
    assert_eq!(blocks(&text), [("CERTIFICATE".to_owned(), vec![7u8; 100])]);
}

#[test]
fn public_keys_match_openssl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.key",
        ],
    );
    openssl(d, &["pkey", "-in", "rsa.key", "-pubout", "-out", "rsa.pub"]);
    let modulus = String::from_utf8(openssl(d, &["rsa", "-in", "rsa.key", "-noout", "-modulus"]))
        .expect("utf8");
    let n = hex::decode(modulus.trim().trim_start_matches("Modulus=")).expect("hex");
    let rsa = Jwk {
        kty: Some("RSA".into()),
        // Key Vault may send a leading zero byte; it is not part of the integer.
        n: Some(BASE64URL.encode([&[0u8][..], &n].concat())),
        e: Some(BASE64URL.encode([1, 0, 1])),
        ..Jwk::default()
    };
    assert_eq!(public_key_pem(&rsa).expect("rsa"), read(d, "rsa.pub"));

    ec_key(d, "ec.key");
    openssl(d, &["pkey", "-in", "ec.key", "-pubout", "-out", "ec.pub"]);
    let spki = der_of(&read(d, "ec.pub"));
    let point = &spki[spki.len() - 65..];
    assert_eq!(point[0], 4);
    let ec = |crv: &str, x: &[u8], y: &[u8]| Jwk {
        kty: Some("EC".into()),
        crv: Some(crv.into()),
        x: Some(BASE64URL.encode(x)),
        y: Some(BASE64URL.encode(y)),
        ..Jwk::default()
    };
    assert_eq!(
        public_key_pem(&ec("P-256", &point[1..33], &point[33..])).expect("ec"),
        read(d, "ec.pub")
    );
    assert_eq!(
        public_key_pem(&Jwk {
            kty: Some("EC-HSM".into()),
            ..ec("P-256", &point[1..33], &point[33..])
        })
        .expect("hsm"),
        read(d, "ec.pub")
    );

    // Hostile keys are refused by name, never quoted.
    assert_eq!(
        public_key_pem(&ec("P-256K", &[1], &[2])),
        Err(ConvertError::Curve("P-256K".into()))
    );
    assert_eq!(
        public_key_pem(&ec("P-256", &[1; 33], &[2; 32])),
        Err(ConvertError::Coordinates("P-256"))
    );
    assert_eq!(
        public_key_pem(&Jwk {
            kty: Some("oct".into()),
            ..Jwk::default()
        }),
        Err(ConvertError::KeyType("oct".into()))
    );
    assert_eq!(
        public_key_pem(&Jwk {
            n: Some("!!".into()),
            ..rsa_like()
        }),
        Err(ConvertError::JwkField("n"))
    );
    assert_eq!(
        public_key_pem(&Jwk {
            n: Some(BASE64URL.encode(vec![1u8; 4096])),
            ..rsa_like()
        }),
        Err(ConvertError::RsaSize)
    );
    assert_eq!(
        public_key_pem(&Jwk {
            n: Some("A".repeat(1 << 20)),
            ..rsa_like()
        }),
        Err(ConvertError::JwkField("n"))
    );
    assert_eq!(
        public_key_pem(&Jwk {
            n: Some(BASE64URL.encode([0, 0])),
            ..rsa_like()
        }),
        Err(ConvertError::RsaSize)
    );
}

fn rsa_like() -> Jwk {
    Jwk {
        kty: Some("RSA".into()),
        n: Some(BASE64URL.encode([0xc1; 256])),
        e: Some(BASE64URL.encode([1, 0, 1])),
        ..Jwk::default()
    }
}

#[test]
fn pkcs12_becomes_key_then_chain_leaf_to_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = chain(dir.path());
    let shuffled = pkcs12(&c.leaf_key_pkcs8, &[&c.root, &c.leaf, &c.intermediate]);

    let ordered = blocks(&pkcs12_to_pem(&shuffled, true).expect("convert"));
    let tags: Vec<&str> = ordered.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        tags,
        ["PRIVATE KEY", "CERTIFICATE", "CERTIFICATE", "CERTIFICATE"]
    );
    assert_eq!(ordered[0].1, c.leaf_key_pkcs8, "the key as PKCS#8");
    assert_eq!(
        [&ordered[1].1, &ordered[2].1, &ordered[3].1],
        [&c.leaf, &c.intermediate, &c.root]
    );

    // Without --construct-pem-chain the certificates stay in the PKCS#12's order.
    let kept = blocks(&pkcs12_to_pem(&shuffled, false).expect("convert"));
    assert_eq!(
        [&kept[1].1, &kept[2].1, &kept[3].1],
        [&c.root, &c.leaf, &c.intermediate]
    );

    // A chain with a gap cannot be ordered and keeps Key Vault's order.
    let gap = pkcs12(&c.leaf_key_pkcs8, &[&c.root, &c.leaf]);
    let kept = blocks(&pkcs12_to_pem(&gap, true).expect("convert"));
    assert_eq!([&kept[1].1, &kept[2].1], [&c.root, &c.leaf]);
}

#[test]
fn chain_order_links_key_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = chain(dir.path());
    assert_eq!(
        chain_order(&[&c.intermediate, &c.root, &c.leaf]),
        Ok(vec![2, 0, 1])
    );
    assert_eq!(chain_order(&[&c.leaf]), Ok(vec![0]));
    assert_eq!(chain_order(&[]), Ok(vec![]));
    // Two copies of a self-signed root sign each other: no leaf.
    assert_eq!(chain_order(&[&c.root, &c.root]), Err(ConvertError::NoLeaf));
    assert_eq!(
        chain_order(&[b"not a certificate"]),
        Err(ConvertError::Certificate)
    );
}

#[test]
fn hostile_pkcs12_values_are_refused_without_quoting_them() {
    assert_eq!(
        pkcs12_to_pem("not base64!", true).map(|_| ()),
        Err(ConvertError::Pkcs12Base64)
    );
    assert_eq!(
        pkcs12_to_pem(&BASE64.encode(b"canary-not-a-pfx"), true).map(|_| ()),
        Err(ConvertError::Pkcs12)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let c = chain(dir.path());
    let many: Vec<&[u8]> = std::iter::repeat_n(c.leaf.as_slice(), MAX_CERTIFICATES + 1).collect();
    let too_many = pkcs12(&c.leaf_key_pkcs8, &many);
    assert_eq!(
        pkcs12_to_pem(&too_many, true).map(|_| ()),
        Err(ConvertError::TooManyCertificates)
    );
    for e in [
        ConvertError::Pkcs12,
        ConvertError::Pkcs12Base64,
        ConvertError::TooManyCertificates,
    ] {
        assert!(!e.to_string().contains("canary"));
    }
}
