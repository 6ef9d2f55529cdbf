//! One error and its causes as one line, for the places a chain leaves the
//! shim: Kubernetes Events, logs and gRPC messages.

use std::error::Error;
use std::fmt::Write as _;

/// `error: cause: cause`. A cause whose text the line already ends with is not
/// repeated, so an error that prints its source inline reads the same as one
/// that leaves it to the chain.
#[must_use]
pub fn display_chain(error: &(dyn Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let text = next.to_string();
        if !text.is_empty() && !line.ends_with(&text) {
            let _ = write!(line, ": {text}");
        }
        cause = next.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        #[error("cannot read secret ns/s")]
        Chained(#[source] std::io::Error),
        #[error("cannot write: {0}")]
        Inline(#[source] std::io::Error),
    }

    #[test]
    fn causes_are_joined_once() {
        let io = || std::io::Error::other("denied");
        assert_eq!(
            display_chain(&Outer::Chained(io())),
            "cannot read secret ns/s: denied"
        );
        assert_eq!(display_chain(&Outer::Inline(io())), "cannot write: denied");
    }
}
