//! AWS Signature Version 4 for the few requests the test support sends to moto itself, and the parsing of the
//! `Authorization` header of requests the provider sends.
//!
//! moto does not check signatures, but it reads the region and the service from the credential scope, so requests
//! must carry a real one; signing them properly costs little and keeps the fixtures honest.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm SigV4 requests name.
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Static credentials to sign with.
#[derive(Clone)]
pub(crate) struct Credentials {
    pub(crate) access_key_id: String,
    pub(crate) secret_access_key: String,
}

/// What a signature covers besides the body: one POST to `/` of `host`, as AWS's JSON protocols send it.
pub(crate) struct SignedPost<'a> {
    pub(crate) host: &'a str,
    pub(crate) region: &'a str,
    pub(crate) service: &'a str,
    /// Extra headers to sign, lowercase names; `host` and `x-amz-date` are added.
    pub(crate) headers: &'a [(&'a str, &'a str)],
    pub(crate) body: &'a [u8],
}

/// The headers to send: `x-amz-date` and `authorization`.
pub(crate) fn sign_post(
    credentials: &Credentials,
    request: &SignedPost<'_>,
    now: OffsetDateTime,
) -> Vec<(String, String)> {
    let now = now.to_offset(time::UtcOffset::UTC);
    let date = format!(
        "{:04}{:02}{:02}",
        now.year(),
        u8::from(now.month()),
        now.day()
    );
    let amz_date = format!(
        "{date}T{:02}{:02}{:02}Z",
        now.hour(),
        now.minute(),
        now.second()
    );

    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    headers.push(("host".to_owned(), request.host.to_owned()));
    headers.push(("x-amz-date".to_owned(), amz_date.clone()));
    headers.sort();
    let signed_headers = headers
        .iter()
        .map(|(k, _)| k.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let mut canonical_headers = String::new();
    for (name, value) in &headers {
        let _ = writeln!(canonical_headers, "{name}:{value}");
    }
    let canonical_request = format!(
        "POST\n/\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex::encode(Sha256::digest(request.body))
    );
    let scope = format!("{date}/{}/{}/aws4_request", request.region, request.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mut key = hmac(
        format!("AWS4{}", credentials.secret_access_key).as_bytes(),
        date.as_bytes(),
    );
    for part in [request.region, request.service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    vec![
        ("x-amz-date".to_owned(), amz_date),
        (
            "authorization".to_owned(),
            format!(
                "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                credentials.access_key_id
            ),
        ),
    ]
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The credential scope of a SigV4 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) access_key_id: String,
    pub(crate) region: String,
    pub(crate) service: String,
}

/// Reads `Credential=AKID/DATE/REGION/SERVICE/aws4_request` out of an `Authorization` header.
pub(crate) fn parse_scope(authorization: &str) -> Option<Scope> {
    let rest = authorization.strip_prefix(ALGORITHM)?;
    let credential = rest
        .split(',')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("Credential="))?;
    let mut parts = credential.split('/');
    let access_key_id = parts.next()?.to_owned();
    let _date = parts.next()?;
    let region = parts.next()?.to_owned();
    let service = parts.next()?.to_owned();
    Some(Scope {
        access_key_id,
        region,
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_like_botocore() {
        // Reference computed with botocore's SigV4Auth for the same request, key and time.
        let credentials = Credentials {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_owned(),
        };
        let headers = sign_post(
            &credentials,
            &SignedPost {
                host: "127.0.0.1:5123",
                region: "us-east-1",
                service: "secretsmanager",
                headers: &[
                    ("content-type", "application/x-amz-json-1.1"),
                    ("x-amz-target", "secretsmanager.CreateSecret"),
                ],
                body: br#"{"Name":"x"}"#,
            },
            OffsetDateTime::from_unix_timestamp(1_440_938_160).unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(
            headers[0],
            ("x-amz-date".to_owned(), "20150830T123600Z".to_owned())
        );
        assert_eq!(
            headers[1].1,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/secretsmanager/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
             Signature=bc0e70f53b66741c558e1996d7dcd6f5451a4fcd0766975ebd392314731f647d"
        );
        assert_eq!(
            parse_scope(&headers[1].1),
            Some(Scope {
                access_key_id: "AKIDEXAMPLE".to_owned(),
                region: "us-east-1".to_owned(),
                service: "secretsmanager".to_owned(),
            })
        );
    }

    #[test]
    fn unsigned_or_foreign_headers_have_no_scope() {
        assert_eq!(parse_scope("Bearer abc"), None);
        assert_eq!(parse_scope("AWS4-HMAC-SHA256 SignedHeaders=host"), None);
    }
}
