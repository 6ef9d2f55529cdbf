//! AWS SDK errors to transport-neutral kinds, and whether a failover region may help.

use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::backend::ErrorKind;

/// A classified AWS failure.
#[derive(Debug, Clone)]
pub(super) struct Failure {
    pub(super) kind: ErrorKind,
    /// 5xx or unreachable: the failover region may answer. Never for 4xx.
    pub(super) failover: bool,
    pub(super) message: String,
}

/// Classifies an SDK error. Service error codes and messages name resources,
/// not secret values.
pub(super) fn classify<E>(err: &SdkError<E, HttpResponse>) -> Failure
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
            Failure { kind, failover: status >= 500, message: format!("{code} (HTTP {status}): {message}") }
        }
        SdkError::TimeoutError(_) => {
            Failure { kind: ErrorKind::Unavailable, failover: true, message: "the request timed out".to_owned() }
        }
        SdkError::DispatchFailure(_) => Failure {
            kind: ErrorKind::Unavailable,
            failover: true,
            message: format!("cannot reach the endpoint: {}", DisplayErrorContext(err)),
        },
        SdkError::ResponseError(_) => Failure {
            kind: ErrorKind::Unavailable,
            failover: true,
            message: format!("unreadable response: {}", DisplayErrorContext(err)),
        },
        SdkError::ConstructionFailure(_) => Failure {
            kind: ErrorKind::Invalid,
            failover: false,
            message: format!("cannot build the request: {}", DisplayErrorContext(err)),
        },
        _ => Failure { kind: ErrorKind::Unavailable, failover: false, message: DisplayErrorContext(err).to_string() },
    }
}
