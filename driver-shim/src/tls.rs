//! `kubernetes.io/tls` Secrets: the private key and the certificate chain split
//! out of a mounted file, from PEM or, failing that, from PKCS#12 with an empty
//! password (as the upstream driver reads them).

use zeroize::Zeroizing;

/// The two values of a TLS Secret.
pub struct TlsPair {
    /// PEM private key.
    pub key: Zeroizing<Vec<u8>>,
    /// PEM certificate chain, leaf first.
    pub certs: Vec<u8>,
}

/// Why a file is not a TLS key pair. Nothing here quotes the file: it is secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// PEM without a private key.
    #[error("the file holds no PEM private key")]
    NoPemKey,
    /// PEM without a certificate.
    #[error("the file holds no PEM certificate")]
    NoPemCertificate,
    /// Neither format.
    #[error("the file is neither PEM nor PKCS#12 with an empty password")]
    Unreadable,
    /// PKCS#12 without a private key.
    #[error("the PKCS#12 file holds no private key")]
    NoPkcs12Key,
    /// PKCS#12 without a certificate.
    #[error("the PKCS#12 file holds no certificate")]
    NoPkcs12Certificate,
}

/// Splits `content` into key and certificates.
pub fn split(content: &[u8]) -> Result<TlsPair, Error> {
    if let Ok(blocks) = pem::parse_many(content)
        && !blocks.is_empty()
    {
        let key = blocks.iter().find(|b| b.tag().ends_with("PRIVATE KEY"));
        let certs: Vec<&pem::Pem> = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").collect();
        let key = key.ok_or(Error::NoPemKey)?;
        if certs.is_empty() {
            return Err(Error::NoPemCertificate);
        }
        return Ok(TlsPair {
            key: Zeroizing::new(pem::encode(key).into_bytes()),
            certs: certs
                .iter()
                .map(|c| pem::encode(c))
                .collect::<String>()
                .into_bytes(),
        });
    }
    let store =
        p12_keystore::KeyStore::from_pkcs12(content, "", p12_keystore::Pkcs12ImportPolicy::Relaxed)
            .map_err(|_| Error::Unreadable)?;
    let (_, chain) = store.private_key_chain().ok_or(Error::NoPkcs12Key)?;
    if chain.certs().is_empty() {
        return Err(Error::NoPkcs12Certificate);
    }
    let key = pem::Pem::new("PRIVATE KEY", chain.key().as_der().to_vec());
    let certs: String = chain
        .certs()
        .iter()
        .map(|c| pem::encode(&pem::Pem::new("CERTIFICATE", c.as_der().to_vec())))
        .collect();
    Ok(TlsPair {
        key: Zeroizing::new(pem::encode(&key).into_bytes()),
        certs: certs.into_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBAzCBqwIJAJ8vXz0=\n-----END CERTIFICATE-----\n";
    const KEY: &str =
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIB0=\n-----END EC PRIVATE KEY-----\n";

    #[test]
    fn pem_key_and_chain_are_split() {
        let bundle = format!("{KEY}{CERT}{CERT}");
        let pair = split(bundle.as_bytes()).expect("split");
        let key = String::from_utf8(pair.key.to_vec()).expect("utf8");
        let certs = String::from_utf8(pair.certs).expect("utf8");
        assert!(key.contains("EC PRIVATE KEY") && !key.contains("CERTIFICATE"));
        assert_eq!(certs.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(!certs.contains("PRIVATE"));
    }

    #[test]
    fn missing_parts_are_named() {
        assert_eq!(split(CERT.as_bytes()).err(), Some(Error::NoPemKey));
        assert_eq!(split(KEY.as_bytes()).err(), Some(Error::NoPemCertificate));
        assert_eq!(split(b"not a certificate").err(), Some(Error::Unreadable));
        assert!(Error::NoPemKey.to_string().contains("private key"));
        assert!(
            Error::Unreadable
                .to_string()
                .contains("neither PEM nor PKCS#12")
        );
    }
}
