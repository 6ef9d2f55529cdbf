//! Verification of a service-account token against the cluster's issuer keys:
//! signature, `exp`/`nbf`, `aud`, `iss`, and the `kubernetes.io` claims against
//! the pod the driver named in the attributes.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::TokenProblem;

/// Clock skew tolerated on `exp` and `nbf`: small, since the API server and the
/// provider's node share NTP, and every second of leeway extends an expired token.
pub(super) const CLOCK_LEEWAY_SECS: u64 = 30;

/// Most keys taken from one JWKS document; a cluster publishes a handful.
const MAX_KEYS: usize = 64;

/// Signature algorithms accepted: the ones the API server signs with.
const ACCEPTED: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Why a JWKS document or discovery document cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeysError {
    /// The document is not the JSON expected.
    #[error("the {document} document is not valid JSON of the expected shape: {source}")]
    Malformed {
        /// `jwks` or `openid-configuration`.
        document: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The key set holds no usable signing key.
    #[error("the key set holds no usable RSA or EC signing key ({skipped} skipped)")]
    NoUsableKey {
        /// Keys present but not usable.
        skipped: usize,
    },
}

/// One published signing key.
struct IssuerKey {
    kid: Option<String>,
    /// The algorithms this key may verify (its `alg` if set, else its family's).
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// The issuer's verification keys and the issuers accepted in `iss`.
pub(super) struct IssuerKeys {
    issuers: Vec<String>,
    keys: Vec<IssuerKey>,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuers", &self.issuers)
            .field("kids", &self.keys.iter().map(|k| k.kid.as_deref().unwrap_or("")).collect::<Vec<_>>())
            .finish()
    }
}

impl IssuerKeys {
    /// Reads a JWKS document (`/openid/v1/jwks`); `issuers` are the accepted `iss` values.
    pub(super) fn from_jwks(document: &[u8], issuers: Vec<String>) -> Result<Self, KeysError> {
        let set: JwkSet =
            serde_json::from_slice(document).map_err(|source| KeysError::Malformed { document: "jwks", source })?;
        let mut keys = Vec::new();
        let mut skipped = 0;
        for jwk in set.keys.iter().take(MAX_KEYS) {
            let family: &[Algorithm] = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => &ACCEPTED[..6],
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => &[Algorithm::ES256],
                AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P384 => &[Algorithm::ES384],
                _ => {
                    skipped += 1;
                    continue;
                }
            };
            let algorithms: Vec<Algorithm> = match jwk.common.key_algorithm.and_then(algorithm_of) {
                Some(alg) if family.contains(&alg) => vec![alg],
                Some(_) => {
                    skipped += 1;
                    continue;
                }
                None if jwk.common.key_algorithm.is_some() => {
                    skipped += 1;
                    continue;
                }
                None => family.to_vec(),
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => keys.push(IssuerKey { kid: jwk.common.key_id.clone(), algorithms, key }),
                Err(_) => skipped += 1,
            }
        }
        skipped += set.keys.len().saturating_sub(MAX_KEYS);
        if keys.is_empty() {
            return Err(KeysError::NoUsableKey { skipped });
        }
        Ok(Self { issuers, keys })
    }

    /// Whether a key with this `kid` is published (any key when the token names none).
    pub(super) fn knows(&self, kid: Option<&str>) -> bool {
        kid.is_none_or(|kid| self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)))
    }

    /// Number of keys.
    #[must_use]
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }
}

/// `issuer` of a discovery document (`/.well-known/openid-configuration`).
pub(super) fn discovered_issuer(document: &[u8]) -> Result<String, KeysError> {
    #[derive(Deserialize)]
    struct Discovery {
        issuer: String,
    }
    serde_json::from_slice::<Discovery>(document)
        .map(|d| d.issuer)
        .map_err(|source| KeysError::Malformed { document: "openid-configuration", source })
}

fn algorithm_of(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        _ => return None,
    })
}

/// What the token must say to be this pod's token for this audience.
#[derive(Debug, Clone, Copy)]
pub(super) struct Expected<'a> {
    /// The audience the backend asked the token for.
    pub(super) audience: &'a str,
    /// The pod's namespace.
    pub(super) namespace: &'a str,
    /// The pod's service account.
    pub(super) service_account: &'a str,
    /// The pod's name.
    pub(super) pod_name: &'a str,
    /// The pod's UID.
    pub(super) pod_uid: &'a str,
}

/// What a verified token yields: the service account's UID, and the token's
/// validity period, checked again whenever the verification is reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Verified {
    /// The service account's UID from the claims (empty if absent).
    pub(super) uid: String,
    /// The token's `exp`.
    pub(super) expires: u64,
    /// The token's `nbf`, if it has one.
    pub(super) not_before: Option<u64>,
}

/// The claims that matter once the signature holds.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    /// Required and checked by the JWT library; optional here so a token without
    /// it is reported as such rather than as unreadable.
    exp: Option<u64>,
    nbf: Option<u64>,
    #[serde(rename = "kubernetes.io")]
    kubernetes: Option<KubernetesClaims>,
}

#[derive(Debug, Deserialize)]
struct KubernetesClaims {
    namespace: Option<String>,
    serviceaccount: Option<ObjectRef>,
    pod: Option<ObjectRef>,
}

#[derive(Debug, Deserialize)]
struct ObjectRef {
    name: Option<String>,
    uid: Option<String>,
}

/// The `kid` the token's header names, or why the header is unusable.
pub(super) fn key_id(token: &str) -> Result<Option<String>, TokenProblem> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenProblem::UnsupportedHeader)?;
    if !ACCEPTED.contains(&header.alg) {
        return Err(TokenProblem::UnsupportedHeader);
    }
    Ok(header.kid)
}

/// Verifies `token` against `keys` and `expected`.
pub(super) fn verify(token: &str, keys: &IssuerKeys, expected: &Expected<'_>) -> Result<Verified, TokenProblem> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenProblem::UnsupportedHeader)?;
    if !ACCEPTED.contains(&header.alg) {
        return Err(TokenProblem::UnsupportedHeader);
    }
    let candidates: Vec<&IssuerKey> = keys
        .keys
        .iter()
        .filter(|k| header.kid.is_none() || k.kid == header.kid)
        .filter(|k| k.algorithms.contains(&header.alg))
        .collect();
    if candidates.is_empty() {
        return Err(TokenProblem::UnknownKey);
    }
    let mut validation = Validation::new(header.alg);
    validation.leeway = CLOCK_LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_audience(&[expected.audience]);
    validation.set_issuer(&keys.issuers);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let mut last = TokenProblem::BadSignature;
    for candidate in candidates {
        match jsonwebtoken::decode::<Claims>(token, &candidate.key, &validation) {
            Ok(data) => return check_claims(&data.claims, expected),
            Err(e) => {
                last = problem_of(e.kind(), token);
                if last != TokenProblem::BadSignature {
                    // The signature held; the claims are what is wrong.
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

fn problem_of(kind: &jsonwebtoken::errors::ErrorKind, token: &str) -> TokenProblem {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => TokenProblem::ExpiredClaim,
        K::ImmatureSignature => TokenProblem::NotYetValid,
        // The signature held (it is checked first), so the audiences are the issuer's.
        K::InvalidAudience => TokenProblem::WrongAudience { found: super::audiences(token) },
        K::InvalidIssuer => TokenProblem::WrongIssuer,
        K::MissingRequiredClaim(claim) => TokenProblem::MissingClaim(claim.clone()),
        K::InvalidClaimFormat(claim) => TokenProblem::MissingClaim(claim.clone()),
        K::Json(_) | K::Utf8(_) | K::Base64(_) => TokenProblem::NotJwt,
        _ => TokenProblem::BadSignature,
    }
}

fn check_claims(claims: &Claims, expected: &Expected<'_>) -> Result<Verified, TokenProblem> {
    let subject = format!("system:serviceaccount:{}:{}", expected.namespace, expected.service_account);
    if claims.sub != subject {
        return Err(TokenProblem::WrongSubject { expected: subject, found: claims.sub.clone() });
    }
    let Some(k8s) = &claims.kubernetes else {
        return Err(TokenProblem::MissingClaim("kubernetes.io".to_owned()));
    };
    if k8s.namespace.as_deref() != Some(expected.namespace) {
        return Err(TokenProblem::WrongSubject { expected: subject, found: k8s.namespace.clone().unwrap_or_default() });
    }
    let account = k8s.serviceaccount.as_ref();
    if account.and_then(|a| a.name.as_deref()) != Some(expected.service_account) {
        return Err(TokenProblem::WrongSubject {
            expected: subject,
            found: account.and_then(|a| a.name.clone()).unwrap_or_default(),
        });
    }
    // A token bound to a pod is good for that pod only.
    if let Some(pod) = &k8s.pod
        && (pod.name.as_deref() != Some(expected.pod_name) || pod.uid.as_deref() != Some(expected.pod_uid))
    {
        return Err(TokenProblem::WrongPod);
    }
    let Some(expires) = claims.exp else {
        return Err(TokenProblem::MissingClaim("exp".to_owned()));
    };
    Ok(Verified {
        uid: account.and_then(|a| a.uid.clone()).unwrap_or_default(),
        expires,
        not_before: claims.nbf,
    })
}

#[cfg(test)]
pub(super) mod tests;
