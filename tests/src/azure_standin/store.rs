//! What the stand-in's vaults hold (secrets, keys and certificates with their versions) and how Key Vault renders
//! each version: `SecretBundle`, `KeyBundle` and `CertificateBundle` bodies with their attributes.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use serde_json::{Map, Value, json};

use super::material::{CertFormat, PublicJwk, TestCertificate};

/// The deletion recovery level of a soft-delete vault with purge protection off.
const RECOVERY_LEVEL: &str = "Recoverable+Purgeable";
const RECOVERABLE_DAYS: u32 = 90;

/// Objects of one kind by lowercase name (Key Vault names are case-insensitive).
pub(super) type Kind<T> = BTreeMap<String, Object<T>>;

/// A named object and its versions, oldest first; the last is the current one.
pub(super) struct Object<T> {
    pub(super) name: String,
    pub(super) versions: Vec<Version<T>>,
}

pub(super) struct Version<T> {
    pub(super) id: String,
    pub(super) enabled: bool,
    pub(super) created: i64,
    pub(super) updated: i64,
    pub(super) body: T,
}

#[derive(Default)]
pub(super) struct Vault {
    pub(super) secrets: Kind<Secret>,
    pub(super) keys: Kind<Key>,
    pub(super) certificates: Kind<Certificate>,
}

impl Vault {
    pub(super) fn disable(&mut self, name: &str, version: &str, now: i64) {
        fn off<T>(kind: &mut Kind<T>, name: &str, version: &str, now: i64) {
            if let Some(object) = kind.get_mut(name) {
                for v in object.versions.iter_mut().filter(|v| v.id == version) {
                    v.enabled = false;
                    v.updated = now;
                }
            }
        }
        off(&mut self.secrets, name, version, now);
        off(&mut self.keys, name, version, now);
        off(&mut self.certificates, name, version, now);
    }
}

pub(super) struct Secret {
    pub(super) value: String,
    pub(super) content_type: Option<String>,
    /// Backs a certificate: carries `kid` and `managed: true`.
    pub(super) managed: bool,
}

pub(super) struct Key {
    pub(super) jwk: PublicJwk,
    pub(super) managed: bool,
}

pub(super) struct Certificate {
    der: Vec<u8>,
    x5t: String,
    not_before: i64,
    expires: i64,
    subject: String,
    content_type: &'static str,
}

impl Certificate {
    pub(super) fn of(cert: &TestCertificate, format: CertFormat) -> Self {
        let (not_before, expires) = cert.validity();
        Self {
            der: cert.leaf_der().to_vec(),
            x5t: BASE64URL.encode(cert.sha1_thumbprint()),
            not_before,
            expires,
            subject: format!("CN={}", cert.common_name()),
            content_type: format.content_type(),
        }
    }
}

fn attributes<T>(version: &Version<T>) -> Map<String, Value> {
    let mut attributes = Map::new();
    attributes.insert("enabled".to_owned(), json!(version.enabled));
    attributes.insert("created".to_owned(), json!(version.created));
    attributes.insert("updated".to_owned(), json!(version.updated));
    attributes.insert("recoveryLevel".to_owned(), json!(RECOVERY_LEVEL));
    attributes.insert("recoverableDays".to_owned(), json!(RECOVERABLE_DAYS));
    attributes
}

pub(super) fn secret_json(base: &str, object: &Object<Secret>, version: &Version<Secret>) -> Value {
    let mut body = json!({
        "value": version.body.value,
        "id": format!("{base}/secrets/{}/{}", object.name, version.id),
        "attributes": attributes(version),
        "tags": {},
    });
    if let Some(content_type) = &version.body.content_type {
        body["contentType"] = json!(content_type);
    }
    if version.body.managed {
        body["kid"] = json!(format!("{base}/keys/{}/{}", object.name, version.id));
        body["managed"] = json!(true);
    }
    body
}

pub(super) fn key_json(base: &str, object: &Object<Key>, version: &Version<Key>) -> Value {
    let kid = format!("{base}/keys/{}/{}", object.name, version.id);
    let mut attributes = attributes(version);
    attributes.insert("exportable".to_owned(), json!(false));
    let mut body = json!({"key": version.body.jwk.to_json(&kid), "attributes": attributes, "tags": {}});
    if version.body.managed {
        body["managed"] = json!(true);
    }
    body
}

pub(super) fn cert_json(base: &str, object: &Object<Certificate>, version: &Version<Certificate>) -> Value {
    let cert = &version.body;
    let mut attributes = attributes(version);
    attributes.insert("nbf".to_owned(), json!(cert.not_before));
    attributes.insert("exp".to_owned(), json!(cert.expires));
    let name = &object.name;
    json!({
        "id": format!("{base}/certificates/{name}/{}", version.id),
        "kid": format!("{base}/keys/{name}/{}", version.id),
        "sid": format!("{base}/secrets/{name}/{}", version.id),
        "x5t": cert.x5t,
        "cer": BASE64.encode(&cert.der),
        "attributes": attributes,
        "tags": {},
        "policy": {
            "id": format!("{base}/certificates/{name}/policy"),
            "key_props": {"exportable": true, "kty": "RSA", "key_size": 2048, "reuse_key": false},
            "secret_props": {"contentType": cert.content_type},
            "x509_props": {"subject": cert.subject, "ekus": ["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"],
                           "key_usage": ["digitalSignature", "keyEncipherment"], "validity_months": 1},
            "lifetime_actions": [],
            "issuer": {"name": "Unknown"},
            "attributes": {"enabled": true, "created": version.created, "updated": version.updated},
        },
    })
}
