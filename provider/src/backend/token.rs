//! Why the pod's service-account token cannot be used, as every backend says it.

use super::{Error, ErrorKind};
use crate::identity::{PodIdentity, TokenProblem};

/// What a backend adds to the shared token messages.
pub(crate) struct TokenAdvice<'a> {
    /// Appended to the fix for a missing token (`, or set ...`); empty for none.
    pub(crate) missing_also: &'a str,
    /// How the refused token's pod is named (`pod team-a/app`, `this pod`).
    pub(crate) pod: String,
}

/// The error for `problem` with the token for `audience`, and what to check.
pub(crate) fn token_error(
    problem: TokenProblem,
    backend: &'static str,
    audience: &str,
    identity: &PodIdentity,
    advice: TokenAdvice<'_>,
) -> Error {
    match problem {
        TokenProblem::Missing => {
            let passed: Vec<&str> = identity.audiences().collect();
            Error::new(
                ErrorKind::Invalid,
                backend,
                format!(
                    "the driver passed no service-account token for audience {audience:?} (tokens were passed for: {}); \
                     add {{audience: {audience:?}}} to the CSIDriver's spec.tokenRequests{}",
                    if passed.is_empty() { "none".to_owned() } else { format!("{passed:?}") },
                    advice.missing_also,
                ),
            )
        }
        TokenProblem::KeysUnavailable => Error::new(
            ErrorKind::Unavailable,
            backend,
            format!("{}; check the provider can reach the Kubernetes API", TokenProblem::KeysUnavailable),
        ),
        other => Error::new(
            ErrorKind::Denied,
            backend,
            format!("the service-account token for audience {audience:?} cannot be used for {}: {other}", advice.pod),
        ),
    }
}
