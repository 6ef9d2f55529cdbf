//! Service-account tokens shaped like the ones kubelet requests for the driver (`tokenRequests`).
//!
//! The [`TokenIssuer`] plays the API server's token signer: an RSA key made by the `openssl` CLI, RS256
//! signatures, and the claims a bound service-account token carries. OpenBao's JWT auth is configured to trust
//! [`TokenIssuer::public_key_pem`]; the fake TokenReview endpoint checks tokens against the same key, and the
//! fake Kubernetes API publishes it as a JWK ([`TokenIssuer::jwk`]) at `/openid/v1/jwks`.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::pod::{PodFixture, random_uid};
use crate::{KUBERNETES_ISSUER, tools};

/// kubelet asks for one-hour tokens by default (`expirationSeconds: 3600`).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Signs service-account tokens with its own RSA key.
pub struct TokenIssuer {
    encoding_key: EncodingKey,
    verifier: TokenVerifier,
    public_key_pem: String,
    key_id: String,
    jwk: Value,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key stays out of test output.
        f.debug_struct("TokenIssuer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// Makes a fresh RSA 2048 key with `openssl`.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_key_id(&random_uid())
    }

    /// Makes a fresh RSA 2048 key published under `key_id`; with another issuer's key id it is an impostor
    /// whose tokens name a key the cluster publishes but are signed with another.
    pub fn with_key_id(key_id: &str) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("courier-token-key-")
            .tempdir()
            .context("cannot create a temporary directory for the signing key")?;
        let private_path = dir.path().join("sa.key");
        let public_path = dir.path().join("sa.pub");
        tools::run_openssl([
            OsStr::new("genpkey"),
            OsStr::new("-algorithm"),
            OsStr::new("RSA"),
            OsStr::new("-pkeyopt"),
            OsStr::new("rsa_keygen_bits:2048"),
            OsStr::new("-out"),
            private_path.as_os_str(),
        ])?;
        tools::run_openssl([
            OsStr::new("pkey"),
            OsStr::new("-pubout"),
            OsStr::new("-in"),
            private_path.as_os_str(),
            OsStr::new("-out"),
            public_path.as_os_str(),
        ])?;
        let private_pem = std::fs::read(&private_path)
            .with_context(|| format!("cannot read {}", private_path.display()))?;
        let public_key_pem = std::fs::read_to_string(&public_path)
            .with_context(|| format!("cannot read {}", public_path.display()))?;

        let encoding_key = EncodingKey::from_rsa_pem(&private_pem)
            .context("openssl's private key is not usable for RS256")?;
        let decoding_key = DecodingKey::from_rsa_pem(public_key_pem.as_bytes())
            .context("openssl's public key is not usable for RS256")?;
        let jwk = rsa_jwk(&public_path, key_id)?;
        Ok(Self {
            encoding_key,
            verifier: TokenVerifier { decoding_key },
            public_key_pem,
            key_id: key_id.to_owned(),
            jwk,
        })
    }

    /// The public key as a JWK (`kty: RSA`, `n`, `e`, `kid`, `alg: RS256`), as `/openid/v1/jwks` lists it.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The `kid` every token's header names.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// A token with the claims `options` describe and no signature at all (`alg: none`), as a forger writes it.
    pub fn unsigned_token(&self, pod: &PodFixture, options: &TokenOptions) -> anyhow::Result<MintedToken> {
        let claims = self.claims(pod, options)?;
        let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = json!({"alg": "none", "typ": "JWT", "kid": self.key_id});
        let jwt = format!(
            "{}.{}.",
            enc.encode(header.to_string()),
            enc.encode(serde_json::to_vec(&claims).context("cannot encode the claims")?)
        );
        let expires_at = i64::try_from(claims.exp).context("expiry out of range")?;
        Ok(MintedToken { jwt, expires_at })
    }

    /// The public key in PEM (SubjectPublicKeyInfo), as OpenBao's `jwt_validation_pubkeys` takes it.
    pub fn public_key_pem(&self) -> &str {
        &self.public_key_pem
    }

    /// The `iss` claim of every token.
    pub fn issuer(&self) -> &str {
        KUBERNETES_ISSUER
    }

    /// A one-hour token for `pod`'s service account with the single audience `audience`.
    pub fn token(&self, pod: &PodFixture, audience: &str) -> anyhow::Result<MintedToken> {
        self.token_with(pod, &TokenOptions::new([audience]))
    }

    /// A token for `pod`'s service account as `options` describe it.
    pub fn token_with(
        &self,
        pod: &PodFixture,
        options: &TokenOptions,
    ) -> anyhow::Result<MintedToken> {
        let claims = self.claims(pod, options)?;
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.key_id.clone());
        let jwt = jsonwebtoken::encode(&header, &claims, &self.encoding_key)
            .context("cannot sign the token")?;
        let expires_at = i64::try_from(claims.exp).context("expiry out of range")?;
        Ok(MintedToken { jwt, expires_at })
    }

    /// Signs `claims` (RS256, this issuer's key id), as the API server's TokenRequest endpoint does for
    /// tokens bound to no pod.
    pub(crate) fn sign_claims(&self, claims: &Value) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.key_id.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding_key).context("cannot sign the token")
    }

    fn claims(&self, pod: &PodFixture, options: &TokenOptions) -> anyhow::Result<ServiceAccountClaims> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs();
        let issued_at = now.saturating_sub(options.issued_ago.as_secs());
        let expires_at = issued_at + options.lifetime.as_secs();
        Ok(ServiceAccountClaims {
            aud: options.audiences.clone(),
            exp: expires_at,
            iat: issued_at,
            iss: KUBERNETES_ISSUER.to_owned(),
            jti: random_uid(),
            kubernetes_io: KubernetesClaims {
                namespace: pod.namespace().to_owned(),
                pod: ObjectRef {
                    name: pod.name().to_owned(),
                    uid: pod.uid().to_owned(),
                },
                serviceaccount: ObjectRef {
                    name: pod.service_account().to_owned(),
                    uid: pod.service_account_uid().to_owned(),
                },
            },
            nbf: issued_at + options.valid_after.as_secs(),
            sub: pod.subject(),
        })
    }

    pub(crate) fn verifier(&self) -> TokenVerifier {
        self.verifier.clone()
    }
}

/// Tokens a hostile tenant could present for `pod` under `audience`, none of which the cluster issued for that pod
/// and audience: unsigned (`alg: none`), signed by a foreign key (unknown `kid`), signed by another key under the
/// issuer's own `kid`, not yet valid (`nbf` ten minutes ahead), expired, for another audience, and for another
/// service account of the namespace. Each comes with a short name for messages.
pub fn forged_tokens(
    issuer: &TokenIssuer,
    pod: &PodFixture,
    audience: &str,
) -> anyhow::Result<Vec<(&'static str, MintedToken)>> {
    let options = TokenOptions::new([audience]);
    let stranger = PodFixture::new(pod.namespace(), "stranger");
    Ok(vec![
        ("alg none", issuer.unsigned_token(pod, &options)?),
        ("foreign key", TokenIssuer::new()?.token(pod, audience)?),
        ("impostor key under the issuer's kid", TokenIssuer::with_key_id(issuer.key_id())?.token(pod, audience)?),
        ("future nbf", issuer.token_with(pod, &options.clone().not_before_in(Duration::from_secs(600)))?),
        (
            "expired",
            issuer.token_with(
                pod,
                &options.clone().issued_ago(Duration::from_secs(7200)).lifetime(Duration::from_secs(3600)),
            )?,
        ),
        ("wrong aud", issuer.token(pod, "another-audience")?),
        ("other service account", issuer.token(&stranger, audience)?),
    ])
}

/// What to put into a token besides the pod's identity.
#[derive(Debug, Clone)]
pub struct TokenOptions {
    audiences: Vec<String>,
    lifetime: Duration,
    issued_ago: Duration,
    valid_after: Duration,
}

impl TokenOptions {
    /// A one-hour token issued now for `audiences`.
    pub fn new<I, S>(audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            audiences: audiences.into_iter().map(Into::into).collect(),
            lifetime: DEFAULT_LIFETIME,
            issued_ago: Duration::ZERO,
            valid_after: Duration::ZERO,
        }
    }

    /// Sets `nbf` this long after the issue time; in the future, the token is not valid yet.
    #[must_use]
    pub fn not_before_in(mut self, delay: Duration) -> Self {
        self.valid_after = delay;
        self
    }

    /// How long the token is valid from its issue time.
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Backdates the token; with a lifetime shorter than this it is already expired.
    #[must_use]
    pub fn issued_ago(mut self, age: Duration) -> Self {
        self.issued_ago = age;
        self
    }
}

/// A signed token and its expiry, as kubelet hands them to the driver.
#[derive(Clone)]
pub struct MintedToken {
    jwt: String,
    expires_at: i64,
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MintedToken(<redacted {} bytes>, expires {})",
            self.jwt.len(),
            self.expires_at
        )
    }
}

impl MintedToken {
    /// The compact JWT.
    pub fn jwt(&self) -> &str {
        &self.jwt
    }

    /// Expiry in seconds since the Unix epoch.
    pub fn expires_at_unix(&self) -> i64 {
        self.expires_at
    }

    /// Expiry as RFC 3339, as the driver writes `expirationTimestamp`.
    pub fn expiration_timestamp(&self) -> anyhow::Result<String> {
        OffsetDateTime::from_unix_timestamp(self.expires_at)
            .context("expiry out of range")?
            .format(&Rfc3339)
            .context("cannot format the expiry")
    }
}

/// The JWK of the RSA public key in `public_pem_path`, read with `openssl`.
fn rsa_jwk(public_pem_path: &std::path::Path, key_id: &str) -> anyhow::Result<Value> {
    let text = tools::run_openssl([
        OsStr::new("rsa"),
        OsStr::new("-pubin"),
        OsStr::new("-in"),
        public_pem_path.as_os_str(),
        OsStr::new("-noout"),
        OsStr::new("-text"),
        OsStr::new("-modulus"),
    ])?;
    let text = String::from_utf8(text).context("openssl printed non-UTF-8 text")?;
    let modulus = text
        .lines()
        .find_map(|l| l.strip_prefix("Modulus="))
        .ok_or_else(|| anyhow!("openssl printed no modulus"))?;
    let modulus = hex::decode(modulus.trim()).context("openssl printed a modulus that is not hex")?;
    let exponent: u64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Exponent:"))
        .and_then(|e| e.split_whitespace().next())
        .and_then(|e| e.parse().ok())
        .ok_or_else(|| anyhow!("openssl printed no exponent"))?;
    let exponent = exponent.to_be_bytes();
    let first = exponent.iter().position(|b| *b != 0).unwrap_or(exponent.len() - 1);
    let enc = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    Ok(json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": key_id,
        "n": enc.encode(&modulus), "e": enc.encode(&exponent[first..]),
    }))
}

/// Checks tokens against the issuer's public key, as the API server does for TokenReviews.
#[derive(Clone)]
pub(crate) struct TokenVerifier {
    decoding_key: DecodingKey,
}

impl TokenVerifier {
    /// Verifies signature, issuer, expiry and not-before. Audiences are left to the caller, because the
    /// TokenReview API answers which of the requested audiences the token has.
    pub(crate) fn verify(&self, jwt: &str) -> Result<ServiceAccountClaims, String> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[KUBERNETES_ISSUER]);
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        jsonwebtoken::decode::<ServiceAccountClaims>(jwt, &self.decoding_key, &validation)
            .map(|data| data.claims)
            .map_err(|error| error.to_string())
    }
}

/// The claims of a bound service-account token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ServiceAccountClaims {
    pub(crate) aud: Vec<String>,
    pub(crate) exp: u64,
    pub(crate) iat: u64,
    pub(crate) iss: String,
    pub(crate) jti: String,
    #[serde(rename = "kubernetes.io")]
    pub(crate) kubernetes_io: KubernetesClaims,
    pub(crate) nbf: u64,
    pub(crate) sub: String,
}

/// The `kubernetes.io` claim: who the token was issued for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KubernetesClaims {
    pub(crate) namespace: String,
    /// Absent from tokens bound to no pod (TokenRequest without `boundObjectRef`), which STS and the
    /// TokenReview API accept all the same.
    #[serde(default)]
    pub(crate) pod: ObjectRef,
    pub(crate) serviceaccount: ObjectRef,
}

/// A named object with its uid.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ObjectRef {
    pub(crate) name: String,
    pub(crate) uid: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_carry_the_pod_identity() -> anyhow::Result<()> {
        let issuer = TokenIssuer::new()?;
        let pod = PodFixture::new("team-a", "app");
        let token = issuer.token(&pod, "vault")?;
        let claims = issuer
            .verifier()
            .verify(token.jwt())
            .map_err(anyhow::Error::msg)?;
        assert_eq!(claims.sub, "system:serviceaccount:team-a:app");
        assert_eq!(claims.aud, ["vault"]);
        assert_eq!(claims.kubernetes_io.pod.uid, pod.uid());
        assert!(token.expiration_timestamp()?.ends_with('Z'));
        Ok(())
    }

    #[test]
    fn expired_and_foreign_tokens_are_rejected() -> anyhow::Result<()> {
        let issuer = TokenIssuer::new()?;
        let other = TokenIssuer::new()?;
        let pod = PodFixture::new("team-a", "app");
        let expired = issuer.token_with(
            &pod,
            &TokenOptions::new(["vault"])
                .issued_ago(Duration::from_secs(7200))
                .lifetime(Duration::from_secs(600)),
        )?;
        assert!(issuer.verifier().verify(expired.jwt()).is_err());
        let foreign = other.token(&pod, "vault")?;
        assert!(issuer.verifier().verify(foreign.jwt()).is_err());
        let early = issuer.token_with(&pod, &TokenOptions::new(["vault"]).not_before_in(Duration::from_secs(600)))?;
        assert!(issuer.verifier().verify(early.jwt()).is_err());
        let unsigned = issuer.unsigned_token(&pod, &TokenOptions::new(["vault"]))?;
        assert!(issuer.verifier().verify(unsigned.jwt()).is_err());
        Ok(())
    }

    #[test]
    fn the_jwk_is_the_signing_key() -> anyhow::Result<()> {
        let issuer = TokenIssuer::new()?;
        let impostor = TokenIssuer::with_key_id(issuer.key_id())?;
        let pod = PodFixture::new("team-a", "app");
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(issuer.jwk().clone())?;
        assert_eq!(jwk.common.key_id.as_deref(), Some(issuer.key_id()));
        let key = DecodingKey::from_jwk(&jwk)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&["vault"]);
        jsonwebtoken::decode::<ServiceAccountClaims>(issuer.token(&pod, "vault")?.jwt(), &key, &validation)?;
        let forged = impostor.token(&pod, "vault")?;
        assert!(jsonwebtoken::decode::<ServiceAccountClaims>(forged.jwt(), &key, &validation).is_err());
        Ok(())
    }
}
