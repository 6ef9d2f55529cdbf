//! Key and certificate material for Key Vault objects, made in-process with the `openssl` CLI the test
//! support already needs for [`TokenIssuer`](crate::TokenIssuer).
//!
//! A [`TestKey`] is an RSA 2048 or EC P-256 key pair whose public half Key Vault hands out as a JWK; a
//! [`TestCertificate`] is a leaf with its private key and a three-certificate chain (leaf, intermediate, root), as
//! a certificate imported into Key Vault carries.

use std::ffi::OsStr;
use std::path::Path;

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use serde_json::{Value, json};

use super::der::{jwk_of_spki, pem_blocks};
use crate::tools::{openssl_program, run_openssl};

/// How an imported certificate's backing secret holds it, as Key Vault's certificate import takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertFormat {
    /// `application/x-pem-file`: the private key, then the chain, in PEM.
    Pem,
    /// `application/x-pkcs12`: a PKCS#12 file with an empty password, base64.
    Pfx,
}

impl CertFormat {
    /// The `contentType` Key Vault gives the certificate's secret.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Pem => "application/x-pem-file",
            Self::Pfx => "application/x-pkcs12",
        }
    }
}

/// The public half of a key as Key Vault describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PublicJwk {
    /// `kty: RSA` with modulus and exponent (big-endian, no leading zeros).
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// `kty: EC`, `crv: P-256`, with the point's coordinates.
    Ec { x: Vec<u8>, y: Vec<u8> },
}

impl PublicJwk {
    /// The JWK Key Vault answers in `key`, with the operations a key of this type allows.
    pub(super) fn to_json(&self, kid: &str) -> Value {
        match self {
            Self::Rsa { n, e } => json!({
                "kid": kid, "kty": "RSA",
                "key_ops": ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"],
                "n": BASE64URL.encode(n), "e": BASE64URL.encode(e),
            }),
            Self::Ec { x, y } => json!({
                "kid": kid, "kty": "EC", "crv": "P-256",
                "key_ops": ["sign", "verify"],
                "x": BASE64URL.encode(x), "y": BASE64URL.encode(y),
            }),
        }
    }
}

/// A key pair generated for a test.
#[derive(Clone)]
pub struct TestKey {
    private_pem: String,
    public_pem: String,
    jwk: PublicJwk,
}

impl std::fmt::Debug for TestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.jwk {
            PublicJwk::Rsa { .. } => "RSA",
            PublicJwk::Ec { .. } => "EC P-256",
        };
        f.debug_struct("TestKey").field("kty", &kind).finish_non_exhaustive()
    }
}

impl TestKey {
    /// A fresh RSA 2048 key.
    pub fn rsa() -> anyhow::Result<Self> {
        Self::generate(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
    }

    /// A fresh EC key on P-256.
    pub fn ec_p256() -> anyhow::Result<Self> {
        Self::generate(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])
    }

    fn generate(options: &[&str]) -> anyhow::Result<Self> {
        let mut args = vec!["genpkey"];
        args.extend_from_slice(options);
        let private_pem = String::from_utf8(run_openssl(args)?).context("openssl printed a non-UTF-8 key")?;
        Self::from_private_pem(private_pem)
    }

    /// Reads a PKCS#8 private key in PEM (RSA or EC P-256).
    fn from_private_pem(private_pem: String) -> anyhow::Result<Self> {
        let dir = tempdir()?;
        let key_path = dir.path().join("key.pem");
        write(&key_path, private_pem.as_bytes())?;
        let public_pem =
            run_openssl([OsStr::new("pkey"), OsStr::new("-pubout"), OsStr::new("-in"), key_path.as_os_str()])?;
        let public_pem = String::from_utf8(public_pem).context("openssl printed a non-UTF-8 public key")?;
        let spki = pem_blocks(&public_pem, "PUBLIC KEY")?.into_iter().next().ok_or_else(|| anyhow!("no public key"))?;
        let jwk = jwk_of_spki(&spki)?;
        Ok(Self { private_pem, public_pem, jwk })
    }

    /// The public key as SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`): what the provider should write for
    /// an object of type key.
    pub fn public_key_pem(&self) -> String {
        self.public_pem.clone()
    }

    /// The private key, PKCS#8 PEM.
    pub fn private_key_pem(&self) -> String {
        self.private_pem.clone()
    }

    pub(super) fn jwk(&self) -> &PublicJwk {
        &self.jwk
    }
}

/// A leaf certificate with its private key and its chain (leaf <- intermediate <- root).
#[derive(Clone)]
pub struct TestCertificate {
    key: TestKey,
    /// Leaf, intermediate, root, in PEM.
    chain: Vec<String>,
    leaf_der: Vec<u8>,
    /// SHA-1 of the leaf's DER (Key Vault's `x5t`).
    thumbprint: Vec<u8>,
    /// The leaf's `notBefore` and `notAfter`, Unix seconds.
    validity: (i64, i64),
    /// The PKCS#12 bundle, made once.
    pfx: Vec<u8>,
    common_name: String,
}

impl std::fmt::Debug for TestCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCertificate").field("common_name", &self.common_name).finish_non_exhaustive()
    }
}

impl TestCertificate {
    /// A fresh chain: an EC P-256 root and intermediate, and an RSA 2048 leaf for `common_name` valid for a day.
    pub fn generate(common_name: &str) -> anyhow::Result<Self> {
        if common_name.is_empty() || !common_name.chars().all(|c| c.is_ascii_alphanumeric() || "-. ".contains(c)) {
            bail!("common name {common_name:?}: use letters, digits, '-', '.' and spaces");
        }
        let dir = tempdir()?;
        let path = |name: &str| dir.path().join(name);
        let ca_ext = "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n\
                      subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";
        let leaf_ext = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
                        extendedKeyUsage=serverAuth,clientAuth\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n";
        write(&path("ca.ext"), ca_ext.as_bytes())?;
        write(
            &path("leaf.ext"),
            format!("{leaf_ext}subjectAltName=DNS:{}\n", common_name.replace(' ', "-")).as_bytes(),
        )?;
        let root = TestKey::ec_p256()?;
        let intermediate = TestKey::ec_p256()?;
        let leaf = TestKey::rsa()?;
        write(&path("root.key"), root.private_pem.as_bytes())?;
        write(&path("intermediate.key"), intermediate.private_pem.as_bytes())?;
        write(&path("leaf.key"), leaf.private_pem.as_bytes())?;
        write(&path("req.cnf"), REQ_CONFIG.as_bytes())?;
        openssl_in(
            dir.path(),
            &[
                "req",
                "-config",
                "req.cnf",
                "-x509",
                "-new",
                "-key",
                "root.key",
                "-subj",
                "/CN=Courier Test Root CA",
                "-days",
                "2",
                "-sha256",
                "-out",
                "root.pem",
            ],
        )?;
        sign(dir.path(), "intermediate", "/CN=Courier Test Intermediate CA", "root", "ca.ext")?;
        sign(dir.path(), "leaf", &format!("/CN={common_name}"), "intermediate", "leaf.ext")?;
        let mut chain = Vec::new();
        for name in ["leaf.pem", "intermediate.pem", "root.pem"] {
            chain.push(std::fs::read_to_string(path(name)).with_context(|| format!("cannot read {name}"))?);
        }
        let leaf_der = pem_blocks(&chain[0], "CERTIFICATE")?.into_iter().next().ok_or_else(|| anyhow!("no leaf"))?;
        write(&path("ca.pem"), chain[1..].concat().as_bytes())?;
        openssl_in(
            dir.path(),
            &[
                "pkcs12",
                "-export",
                "-inkey",
                "leaf.key",
                "-in",
                "leaf.pem",
                "-certfile",
                "ca.pem",
                "-name",
                common_name,
                "-passout",
                "pass:",
                "-out",
                "bundle.pfx",
            ],
        )?;
        let pfx = std::fs::read(path("bundle.pfx")).context("cannot read the PKCS#12 file openssl wrote")?;
        let facts = openssl_in(
            dir.path(),
            &[
                "x509",
                "-in",
                "leaf.pem",
                "-noout",
                "-fingerprint",
                "-sha1",
                "-startdate",
                "-enddate",
                "-dateopt",
                "iso_8601",
            ],
        )?;
        let (thumbprint, validity) = parse_facts(&String::from_utf8(facts).context("openssl printed non-UTF-8 text")?)?;
        Ok(Self { key: leaf, chain, leaf_der, thumbprint, validity, pfx, common_name: common_name.to_owned() })
    }

    /// The leaf certificate, PEM.
    pub fn leaf_pem(&self) -> String {
        self.chain[0].clone()
    }

    /// Leaf, intermediate and root, PEM each.
    pub fn chain_pem(&self) -> Vec<String> {
        self.chain.clone()
    }

    /// The leaf's private key, PKCS#8 PEM.
    pub fn private_key_pem(&self) -> String {
        self.key.private_pem.clone()
    }

    /// The leaf's key pair.
    pub fn key(&self) -> &TestKey {
        &self.key
    }

    /// The leaf, DER.
    pub fn leaf_der(&self) -> &[u8] {
        &self.leaf_der
    }

    /// Key, leaf and chain as PKCS#12 with an empty password (openssl's defaults: AES-256 and PBKDF2, SHA-256 MAC).
    pub fn pfx(&self) -> anyhow::Result<Vec<u8>> {
        Ok(self.pfx.clone())
    }

    /// What Key Vault keeps as the certificate's secret value for `format`: the private key then the chain in PEM,
    /// or the PKCS#12 file in base64.
    pub(super) fn secret_value(&self, format: CertFormat) -> String {
        match format {
            CertFormat::Pem => format!("{}{}", self.key.private_pem, self.chain.concat()),
            CertFormat::Pfx => BASE64.encode(&self.pfx),
        }
    }

    /// `notBefore`/`notAfter` of the leaf, Unix seconds.
    pub(super) fn validity(&self) -> (i64, i64) {
        self.validity
    }

    /// SHA-1 of the leaf's DER.
    pub(super) fn sha1_thumbprint(&self) -> &[u8] {
        &self.thumbprint
    }

    pub(super) fn common_name(&self) -> &str {
        &self.common_name
    }
}

/// The SHA-1 fingerprint and validity openssl printed for a certificate.
fn parse_facts(text: &str) -> anyhow::Result<(Vec<u8>, (i64, i64))> {
    let line = |prefix: &str| {
        text.lines().find_map(|l| l.trim().strip_prefix(prefix)).ok_or_else(|| anyhow!("openssl printed no {prefix}"))
    };
    // OpenSSL 3 prints `sha1 Fingerprint=`, older releases `SHA1 Fingerprint=`.
    let fingerprint = text
        .lines()
        .find_map(|l| l.split_once('=').filter(|(name, _)| name.eq_ignore_ascii_case("sha1 fingerprint")))
        .map(|(_, value)| value.trim().replace(':', ""))
        .ok_or_else(|| anyhow!("openssl printed no SHA-1 fingerprint"))?;
    let thumbprint = hex::decode(fingerprint).context("fingerprint is not hex")?;
    let format = time::format_description::parse_borrowed::<2>("[year]-[month]-[day] [hour]:[minute]:[second]Z")?;
    let date = |prefix: &str| -> anyhow::Result<i64> {
        let value = line(prefix)?;
        let parsed =
            time::PrimitiveDateTime::parse(value.trim(), &format).with_context(|| format!("date {value:?}"))?;
        Ok(parsed.assume_utc().unix_timestamp())
    };
    Ok((thumbprint, (date("notBefore=")?, date("notAfter=")?)))
}

/// A self-contained `openssl req` configuration, so the host's openssl.cnf plays no part; `-x509` uses `[v3]`.
pub(super) const REQ_CONFIG: &str = "[req]\ndistinguished_name = dn\nx509_extensions = v3\nprompt = no\n[dn]\n\
                          [v3]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
                          subjectKeyIdentifier = hash\n";

/// Signs `name.key` into `name.pem` with the CA `issuer` (`issuer.key`, `issuer.pem`) and the extensions file `ext`.
fn sign(dir: &Path, name: &str, subject: &str, issuer: &str, ext: &str) -> anyhow::Result<()> {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    openssl_in(dir, &["req", "-config", "req.cnf", "-new", "-key", &key, "-subj", subject, "-out", &csr])?;
    openssl_in(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{issuer}.pem"),
            "-CAkey",
            &format!("{issuer}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-sha256",
            "-extfile",
            ext,
            "-out",
            &format!("{name}.pem"),
        ],
    )?;
    Ok(())
}

/// Runs openssl in `dir`, so that file names in `args` are relative to it; fails with its standard error.
pub(super) fn openssl_in(dir: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let output = std::process::Command::new(openssl_program()?)
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("cannot run openssl {}", args.join(" ")))?;
    if !output.status.success() {
        bail!("openssl {} failed with {}: {}", args.join(" "), output.status, String::from_utf8_lossy(&output.stderr));
    }
    Ok(output.stdout)
}

fn tempdir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new().prefix("courier-azure-material-").tempdir().context("cannot create a temporary directory")
}

fn write(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
}
