//! AWS SDK errors to transport-neutral kinds, and whether a failover region may help.

use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use std::sync::Arc;

use crate::backend::{Cause, ErrorKind};

/// A classified AWS failure.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub(super) kind: ErrorKind,
    /// 5xx or unreachable: the failover region may answer. Never for 4xx.
    pub(super) failover: bool,
    pub(super) message: String,
    /// The SDK's error, kept as the source of the mount's error.
    pub(super) cause: Cause,
}

/// Classifies an SDK error. Service error codes and messages name resources,
/// not secret values.
pub(super) fn classify<E>(err: SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (kind, failover, message) = classified(&err);
    Failure { kind, failover, message, cause: Arc::new(err) }
}

/// The kind of `err`, whether a failover region may help, and what it says.
fn classified<E>(err: &SdkError<E, HttpResponse>) -> (ErrorKind, bool, String)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = service.err().code().unwrap_or("Unknown");
            let message = service.err().message().unwrap_or("no message");
            let kind = match (status, code) {
                (500..=599, _) => ErrorKind::Unavailable,
                (_, "ResourceNotFoundException" | "ParameterNotFound" | "ParameterVersionNotFound") => ErrorKind::NotFound,
                (_, "AccessDeniedException" | "AccessDenied" | "UnrecognizedClientException" | "ExpiredTokenException"
                    | "InvalidClientTokenId" | "DecryptionFailure" | "InvalidIdentityToken" | "IDPRejectedClaim")
                | (401 | 403, _) => ErrorKind::Denied,
                (429, _) | (_, "ThrottlingException" | "TooManyRequestsException") => ErrorKind::Unavailable,
                _ => ErrorKind::Invalid,
            };
            (kind, status >= 500, format!("{code} (HTTP {status}): {message}"))
        }
        SdkError::TimeoutError(_) => {
            (ErrorKind::Unavailable, true, "the request timed out".to_owned())
        }
        SdkError::DispatchFailure(_) => (ErrorKind::Unavailable, true, format!("cannot reach the endpoint: {}", DisplayErrorContext(err))),
        SdkError::ResponseError(_) => (ErrorKind::Unavailable, true, format!("unreadable response: {}", DisplayErrorContext(err))),
        SdkError::ConstructionFailure(_) => (ErrorKind::Invalid, false, format!("cannot build the request: {}", DisplayErrorContext(err))),
        _ => (ErrorKind::Unavailable, false, DisplayErrorContext(err).to_string()),
    }
}
