//! Everything a mount can fail with, and the one place where a failure becomes
//! a gRPC status: its code and its (bounded) message.

use std::time::Duration;

use tonic::{Code, Status};

use crate::backend::{self, ErrorKind};
use crate::render::{self, MAX_MOUNT_BYTES};
use crate::{dialect, request};

/// Longest status message sent: gRPC carries it in a header, and an oversized
/// header block makes HTTP/2 clients drop the whole connection, failing every
/// other mount on it.
const MAX_STATUS_MESSAGE: usize = 2048;
/// A single word (a quoted value) longer than this is shown shortened.
const MAX_WORD: usize = 160;

/// Everything a mount can fail with.
#[derive(Debug, thiserror::Error)]
pub(super) enum MountError {
    #[error(transparent)]
    Request(#[from] request::Error),
    #[error(transparent)]
    Dialect(#[from] dialect::Error),
    #[error(transparent)]
    Backend(#[from] backend::Error),
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error(
        "{backend} backend: the mount did not finish within {timeout:?}; the backend is slow or unreachable \
         (raise --mount-timeout only if it is merely slow)"
    )]
    Deadline { backend: &'static str, timeout: Duration },
    #[error(
        "the mount's files total {bytes} bytes; the driver accepts at most {MAX_MOUNT_BYTES}: \
         split the objects across SecretProviderClasses"
    )]
    TooLarge { bytes: usize },
    /// The costly-parse permits are closed: the provider is shutting down.
    #[error("internal error: the parameter parser is shut down")]
    ParserClosed,
    /// The thread parsing the parameters panicked or was cancelled. Its text is
    /// shown once here; the task error is also the source, for logs.
    #[error("internal error: the parameter parser stopped: {0}")]
    ParserStopped(#[source] tokio::task::JoinError),
}

impl MountError {
    /// Bounded label for metrics and the audit trail.
    pub(super) fn label(&self) -> &'static str {
        match self {
            Self::Render(e) if e.is_not_found() => "not_found",
            Self::Request(_) | Self::Dialect(_) | Self::Render(_) | Self::TooLarge { .. } => "invalid",
            Self::Backend(e) => e.kind.label(),
            Self::Deadline { .. } => "deadline",
            Self::ParserClosed | Self::ParserStopped(_) => "internal",
        }
    }

    /// The status code of each failure, decided here and nowhere else.
    pub(super) fn status(&self) -> Status {
        let code = match self {
            Self::Render(e) if e.is_not_found() => Code::NotFound,
            Self::Request(_) | Self::Dialect(_) | Self::Render(_) | Self::TooLarge { .. } => Code::InvalidArgument,
            Self::Backend(e) => match e.kind {
                ErrorKind::Invalid => Code::InvalidArgument,
                ErrorKind::Denied => Code::PermissionDenied,
                ErrorKind::NotFound => Code::NotFound,
                ErrorKind::Unavailable => Code::Unavailable,
                ErrorKind::Timeout => Code::DeadlineExceeded,
            },
            Self::Deadline { .. } => Code::DeadlineExceeded,
            Self::ParserClosed | Self::ParserStopped(_) => Code::Internal,
        };
        Status::new(code, shorten(&self.to_string()))
    }
}

/// The status a mount answers when the driver's request cannot be decoded
/// (`courier-provider check` reports it as is).
#[must_use]
pub(crate) fn request_error_status(error: request::Error) -> Status {
    MountError::Request(error).status()
}

/// The status a mount answers for parameters the dialect refuses
/// (`courier-provider check` reports it as is).
#[must_use]
pub(crate) fn parameter_error_status(error: dialect::Error) -> Status {
    MountError::Dialect(error).status()
}

/// Shortens very long words (quoted input) and caps the whole message, keeping
/// the field names and the explanation around them.
fn shorten(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MAX_STATUS_MESSAGE));
    for (i, word) in message.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if word.len() > MAX_WORD {
            let mut end = MAX_WORD / 2;
            while !word.is_char_boundary(end) {
                end -= 1;
            }
            out.push_str(&word[..end]);
            out.push_str(&format!("…({} bytes)", word.len()));
        } else {
            out.push_str(word);
        }
    }
    if out.len() > MAX_STATUS_MESSAGE {
        let mut end = MAX_STATUS_MESSAGE;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_shortened_but_keep_their_words() {
        let huge = "x".repeat(900 * 1024);
        let message = format!("objects[0].objectName: \"{huge}\" has a component of 921600 bytes (at most 255)");
        let short = shorten(&message);
        assert!(short.len() < 400, "{}", short.len());
        assert!(short.starts_with("objects[0].objectName: \"xxx"));
        assert!(short.ends_with("has a component of 921600 bytes (at most 255)"), "{short}");
        assert!(short.contains("bytes)"));
        let many_words = "word ".repeat(2000);
        assert!(shorten(&many_words).len() <= MAX_STATUS_MESSAGE + '…'.len_utf8());
        assert_eq!(shorten("plain message"), "plain message");
        let multibyte = "é".repeat(400);
        assert!(shorten(&multibyte).len() < 200);
    }

    #[test]
    fn codes() {
        let dialect_err: MountError = dialect::Error::new("objects[0].method", "bad").into();
        assert_eq!(dialect_err.status().code(), Code::InvalidArgument);
        assert_eq!(dialect_err.status().message(), "objects[0].method: bad");
        for (kind, code) in [
            (ErrorKind::Invalid, Code::InvalidArgument),
            (ErrorKind::Denied, Code::PermissionDenied),
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::Unavailable, Code::Unavailable),
            (ErrorKind::Timeout, Code::DeadlineExceeded),
        ] {
            let e: MountError = backend::Error::new(kind, "vault", "x").into();
            assert_eq!(e.status().code(), code);
        }
        let e = MountError::Deadline { backend: "vault", timeout: Duration::from_secs(1) };
        assert_eq!(e.status().code(), Code::DeadlineExceeded);
    }
}
