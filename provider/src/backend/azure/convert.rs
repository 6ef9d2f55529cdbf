//! Key Vault material as the Azure provider writes it: a key's public half as a
//! `PUBLIC KEY` PEM, a certificate as a `CERTIFICATE` PEM, and a certificate's
//! PKCS#12 as PEM (PKCS#8 private key, then the certificates, ordered leaf to
//! root when the chain can be built).
//!
//! Every input is hostile: sizes are bounded before parsing, and errors never
//! quote the material.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use zeroize::Zeroizing;

/// Most certificates read from one PKCS#12 (chain building is quadratic).
const MAX_CERTIFICATES: usize = 32;
/// Longest RSA modulus accepted (16384 bits).
const MAX_RSA_MODULUS_BYTES: usize = 2048;

/// Why material cannot be converted; never holds the material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ConvertError {
    /// A JWK field is missing or not base64url.
    #[error("the key's JWK field {0} is missing or not base64url")]
    JwkField(&'static str),
    /// The key type is not RSA or EC.
    #[error("key type {0:?} currently not supported")]
    KeyType(String),
    /// The curve is not P-256, P-384 or P-521.
    #[error("curve {0:?} is not supported")]
    Curve(String),
    /// An EC point's coordinates do not fit the curve.
    #[error("the key's EC coordinates do not match curve {0}")]
    Coordinates(&'static str),
    /// An RSA modulus or exponent is empty or too large.
    #[error("the key's RSA modulus or exponent is empty or too large")]
    RsaSize,
    /// The PKCS#12 is not base64.
    #[error("the certificate's PKCS#12 value is not base64")]
    Pkcs12Base64,
    /// The PKCS#12 cannot be read with an empty password.
    #[error(
        "the certificate's PKCS#12 value cannot be read (it must be unencrypted or use an empty password)"
    )]
    Pkcs12,
    /// The PKCS#12 holds more certificates than [`MAX_CERTIFICATES`].
    #[error("the certificate's PKCS#12 value holds more than {MAX_CERTIFICATES} certificates")]
    TooManyCertificates,
    /// A certificate in the PKCS#12 cannot be parsed.
    #[error("a certificate in the PKCS#12 value cannot be parsed")]
    Certificate,
    /// The certificates' issuer links form a cycle.
    #[error("constructing chain resulted in cycle")]
    Cycle,
    /// Every certificate signs another one.
    #[error("no leaf certificate found in the chain")]
    NoLeaf,
}

/// `der` as a PEM block of `tag`, 64 characters a line, as Go's encoder writes it.
pub(crate) fn pem(tag: &str, der: &[u8]) -> Zeroizing<String> {
    let encoded = Zeroizing::new(BASE64.encode(der));
    let mut out = Zeroizing::new(String::with_capacity(
        encoded.len() + encoded.len() / 64 + 2 * tag.len() + 40,
    ));
    out.push_str("-----BEGIN ");
    out.push_str(tag);
    out.push_str("-----\n");
    for line in encoded.as_bytes().chunks(64) {
        // Base64 output is ASCII.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(tag);
    out.push_str("-----\n");
    out
}

/// The JSON Web Key fields of a Key Vault key that make its public half.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct Jwk {
    pub(crate) kty: Option<String>,
    pub(crate) n: Option<String>,
    pub(crate) e: Option<String>,
    pub(crate) crv: Option<String>,
    pub(crate) x: Option<String>,
    pub(crate) y: Option<String>,
}

/// The key's public half as a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM.
pub(crate) fn public_key_pem(jwk: &Jwk) -> Result<String, ConvertError> {
    let field = |name: &'static str, value: &Option<String>| -> Result<Vec<u8>, ConvertError> {
        let text = value
            .as_deref()
            .filter(|v| v.len() <= 4 * MAX_RSA_MODULUS_BYTES)
            .ok_or(ConvertError::JwkField(name))?;
        // Key Vault writes base64url without padding; tolerate padding.
        BASE64URL
            .decode(text.trim_end_matches('='))
            .map_err(|_| ConvertError::JwkField(name))
    };
    let kty = jwk.kty.as_deref().unwrap_or_default();
    let spki = match kty {
        "RSA" | "RSA-HSM" => {
            let n = field("n", &jwk.n)?;
            let e = field("e", &jwk.e)?;
            let (n, e) = (strip_zeros(&n), strip_zeros(&e));
            if n.is_empty() || e.is_empty() || n.len() > MAX_RSA_MODULUS_BYTES || e.len() > 8 {
                return Err(ConvertError::RsaSize);
            }
            let key = der::sequence(&[der::unsigned(n), der::unsigned(e)]);
            let algorithm = der::sequence(&[der::oid(OID_RSA_ENCRYPTION), der::NULL.to_vec()]);
            der::sequence(&[algorithm, der::bit_string(&key)])
        }
        "EC" | "EC-HSM" => {
            let crv = jwk.crv.as_deref().unwrap_or_default();
            let (curve, size, name) = match crv {
                "P-256" => (OID_P256, 32, "P-256"),
                "P-384" => (OID_P384, 48, "P-384"),
                "P-521" => (OID_P521, 66, "P-521"),
                other => return Err(ConvertError::Curve(other.chars().take(32).collect())),
            };
            let x = field("x", &jwk.x)?;
            let y = field("y", &jwk.y)?;
            let (x, y) = (
                fit(&x, size).ok_or(ConvertError::Coordinates(name))?,
                fit(&y, size).ok_or(ConvertError::Coordinates(name))?,
            );
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            let algorithm = der::sequence(&[der::oid(OID_EC_PUBLIC_KEY), der::oid(curve)]);
            der::sequence(&[algorithm, der::bit_string(&point)])
        }
        other => return Err(ConvertError::KeyType(other.chars().take(32).collect())),
    };
    Ok(pem("PUBLIC KEY", &spki).to_string())
}

/// `bytes` without leading zero bytes.
fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

/// `bytes` as exactly `size` big-endian bytes (left-padded), if it fits.
fn fit(bytes: &[u8], size: usize) -> Option<Vec<u8>> {
    let bytes = strip_zeros(bytes);
    if bytes.len() > size {
        return None;
    }
    let mut out = vec![0; size - bytes.len()];
    out.extend_from_slice(bytes);
    Some(out)
}

/// rsaEncryption, 1.2.840.113549.1.1.1.
const OID_RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1, 1.2.840.10045.3.1.7.
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1, 1.3.132.0.34.
const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// secp521r1, 1.3.132.0.35.
const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

/// The few DER encodings a SubjectPublicKeyInfo needs.
mod der {
    pub(super) const NULL: [u8; 2] = [0x05, 0x00];

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|b| *b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
        out.extend_from_slice(content);
        out
    }

    pub(super) fn sequence(items: &[Vec<u8>]) -> Vec<u8> {
        tlv(0x30, &items.concat())
    }

    /// A non-negative INTEGER from big-endian magnitude bytes without leading zeros.
    pub(super) fn unsigned(magnitude: &[u8]) -> Vec<u8> {
        let mut content = Vec::with_capacity(magnitude.len() + 1);
        if magnitude.first().is_some_and(|b| b & 0x80 != 0) {
            content.push(0);
        }
        content.extend_from_slice(magnitude);
        tlv(0x02, &content)
    }

    pub(super) fn oid(encoded: &[u8]) -> Vec<u8> {
        tlv(0x06, encoded)
    }

    pub(super) fn bit_string(bytes: &[u8]) -> Vec<u8> {
        let mut content = Vec::with_capacity(bytes.len() + 1);
        content.push(0);
        content.extend_from_slice(bytes);
        tlv(0x03, &content)
    }
}

/// A certificate-backed secret stored as PKCS#12 (base64 text, as Key Vault
/// returns it) converted to PEM: the private keys as PKCS#8 `PRIVATE KEY`
/// blocks, then the certificates, leaf to root when `construct_chain`.
pub(crate) fn pkcs12_to_pem(
    base64_value: &str,
    construct_chain: bool,
) -> Result<Zeroizing<String>, ConvertError> {
    let der = Zeroizing::new(
        BASE64
            .decode(base64_value.trim())
            .map_err(|_| ConvertError::Pkcs12Base64)?,
    );
    let archive =
        p12_keystore::Pkcs12Archive::from_pkcs12(&der, "").map_err(|_| ConvertError::Pkcs12)?;
    if archive.certs.len() > MAX_CERTIFICATES {
        return Err(ConvertError::TooManyCertificates);
    }
    let mut out = Zeroizing::new(String::new());
    for bag in &archive.keys {
        out.push_str(&pem("PRIVATE KEY", bag.key.as_der()));
    }
    let certs: Vec<&[u8]> = archive.certs.iter().map(|bag| bag.cert.as_der()).collect();
    let ordered = if construct_chain {
        chain_order(&certs)?
    } else {
        (0..certs.len()).collect()
    };
    for i in ordered {
        out.push_str(&pem("CERTIFICATE", certs[i]));
    }
    Ok(out)
}

/// A certificate's authority key id and subject key id, where it has them.
type KeyIds = (Option<Vec<u8>>, Option<Vec<u8>>);

/// The order leaf -> intermediates -> root of `certs`, linking each certificate
/// to the first other one whose subject key id is its authority key id; the
/// original order when the links do not cover every certificate.
pub(crate) fn chain_order(certs: &[&[u8]]) -> Result<Vec<usize>, ConvertError> {
    let mut ids: Vec<KeyIds> = Vec::with_capacity(certs.len());
    for der in certs {
        let (_, cert) =
            x509_parser::parse_x509_certificate(der).map_err(|_| ConvertError::Certificate)?;
        let mut authority = None;
        let mut subject = None;
        for extension in cert.extensions() {
            match extension.parsed_extension() {
                x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    authority = aki.key_identifier.as_ref().map(|k| k.0.to_vec());
                }
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(ski) => {
                    subject = Some(ski.0.to_vec())
                }
                _ => {}
            }
        }
        ids.push((authority, subject));
    }
    let n = certs.len();
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut is_parent = vec![false; n];
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            let (authority, _) = &ids[i];
            let (_, subject) = &ids[j];
            if authority.is_none() && subject.is_none() {
                continue;
            }
            if authority.as_deref().unwrap_or_default() == subject.as_deref().unwrap_or_default() {
                is_parent[j] = true;
                parent[i] = Some(j);
                break;
            }
        }
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut next = (0..n).find(|i| !is_parent[*i]);
    if next.is_none() {
        return Err(ConvertError::NoLeaf);
    }
    let mut order = Vec::with_capacity(n);
    while let Some(i) = next {
        if order.len() >= n {
            return Err(ConvertError::Cycle);
        }
        order.push(i);
        next = parent[i];
    }
    if order.len() != n {
        tracing::warn!(
            "certificate chain is not complete due to missing intermediate/root certificates; keeping Key Vault's order"
        );
        return Ok((0..n).collect());
    }
    Ok(order)
}

#[cfg(test)]
mod tests;
