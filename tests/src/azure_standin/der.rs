//! Just enough PEM and DER to read the public keys openssl writes: PEM blocks, and the JWK of a
//! SubjectPublicKeyInfo (RSA, or EC on P-256).

use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::material::PublicJwk;

/// The DER of every PEM block labelled `label` in `text`.
pub(super) fn pem_blocks(text: &str, label: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let body = &rest[start + begin.len()..];
        let stop = body.find(&end).ok_or_else(|| anyhow!("unterminated {label} block"))?;
        let b64: String = body[..stop].chars().filter(|c| !c.is_whitespace()).collect();
        blocks.push(BASE64.decode(b64).with_context(|| format!("{label} block is not base64"))?);
        rest = &body[stop + end.len()..];
    }
    Ok(blocks)
}

/// The JWK of a SubjectPublicKeyInfo (RSA or EC P-256).
pub(super) fn jwk_of_spki(spki: &[u8]) -> anyhow::Result<PublicJwk> {
    // SubjectPublicKeyInfo ::= SEQUENCE { algorithm SEQUENCE { OID, params }, subjectPublicKey BIT STRING }
    let (outer, _) = der_element(spki, 0x30)?;
    let (algorithm, rest) = der_element(outer, 0x30)?;
    let (key_bits, _) = der_element(rest, 0x03)?;
    let key = key_bits.strip_prefix(&[0u8]).ok_or_else(|| anyhow!("public key bit string has unused bits"))?;
    let (oid, params) = der_element(algorithm, 0x06)?;
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    if oid == RSA {
        // RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        let (sequence, _) = der_element(key, 0x30)?;
        let (n, rest) = der_element(sequence, 0x02)?;
        let (e, _) = der_element(rest, 0x02)?;
        let trim = |v: &[u8]| v.iter().position(|b| *b != 0).map_or_else(|| vec![0], |i| v[i..].to_vec());
        Ok(PublicJwk::Rsa { n: trim(n), e: trim(e) })
    } else if oid == EC {
        let (curve, _) = der_element(params, 0x06)?;
        if curve != P256 {
            bail!("only P-256 EC keys are supported");
        }
        match key {
            [0x04, point @ ..] if point.len() == 64 => {
                Ok(PublicJwk::Ec { x: point[..32].to_vec(), y: point[32..].to_vec() })
            }
            _ => bail!("EC public key is not an uncompressed P-256 point"),
        }
    } else {
        bail!("unsupported public key algorithm")
    }
}

/// The content of the DER element at the start of `data`, which must have `tag`, and what follows it.
fn der_element(data: &[u8], tag: u8) -> anyhow::Result<(&[u8], &[u8])> {
    let (&found, rest) = data.split_first().ok_or_else(|| anyhow!("DER ends early"))?;
    if found != tag {
        bail!("DER tag {found:#04x} where {tag:#04x} was expected");
    }
    let (&first, rest) = rest.split_first().ok_or_else(|| anyhow!("DER ends early"))?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            bail!("bad DER length");
        }
        let length = rest[..count].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (length, &rest[count..])
    };
    if rest.len() < length {
        bail!("DER element longer than its container");
    }
    Ok(rest.split_at(length))
}
