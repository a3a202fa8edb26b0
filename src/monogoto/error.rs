//! How a request to the API fails, and the names the metrics give the
//! endpoints and the kinds of failure: typed, so that a misspelt kind does not
//! compile, and listed, so that every counter starts at zero.

use std::fmt;

use super::model::DecodeError;

/// The API endpoints, as the `endpoint` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Auth,
    Things,
    Status,
}

impl Endpoint {
    pub(crate) const ALL: [Endpoint; 3] = [Endpoint::Auth, Endpoint::Things, Endpoint::Status];

    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Auth => "auth",
            Endpoint::Things => "things",
            Endpoint::Status => "status",
        }
    }
}

/// The `kind` label of `monogoto_refresh_errors_total`. Declared in the
/// labels' alphabetical order, which is the order a refresh logs them in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorKind {
    Auth,
    Connect,
    Decode,
    Status,
    Timeout,
}

impl ErrorKind {
    /// In the order the status page shows them.
    pub(crate) const ALL: [ErrorKind; 5] = [
        ErrorKind::Timeout,
        ErrorKind::Connect,
        ErrorKind::Status,
        ErrorKind::Decode,
        ErrorKind::Auth,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connect => "connect",
            ErrorKind::Status => "status",
            ErrorKind::Decode => "decode",
            ErrorKind::Auth => "auth",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{endpoint}: request timed out")]
    Timeout { endpoint: &'static str },
    #[error("{endpoint}: not sent, the refresh deadline has passed")]
    DeadlineExceeded { endpoint: &'static str },
    #[error("{endpoint}: cannot reach the API: {detail}")]
    Connect {
        endpoint: &'static str,
        detail: String,
    },
    /// The request could not be built (a header value it cannot carry, say):
    /// it never left, and trying again would fail the same way.
    #[error("{endpoint}: cannot build the request: {detail}")]
    Request {
        endpoint: &'static str,
        detail: String,
    },
    #[error("{endpoint}: HTTP {code}: {body}")]
    Status {
        endpoint: &'static str,
        code: u16,
        body: String,
    },
    #[error("{endpoint}: {source}")]
    Decode {
        endpoint: &'static str,
        source: DecodeError,
    },
    #[error("{endpoint}: answer larger than {limit} bytes, refused")]
    TooLarge {
        endpoint: &'static str,
        limit: usize,
    },
    #[error("{endpoint}: unauthorized (HTTP 401): {hint}")]
    Unauthorized {
        endpoint: &'static str,
        hint: &'static str,
    },
    #[error("auth: {0}")]
    Login(String),
    /// A login answered with an HTTP error. Its body is never kept, only its
    /// length: an API or a proxy that echoes the request would put the
    /// password in the logs.
    #[error(
        "auth: login answered HTTP {code} ({bytes} bytes, not shown as they may repeat the password)"
    )]
    LoginStatus { code: u16, bytes: usize },
}

impl ApiError {
    /// What kind of failure this is, for `monogoto_refresh_errors_total`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ApiError::Timeout { .. } | ApiError::DeadlineExceeded { .. } => ErrorKind::Timeout,
            ApiError::Connect { .. } | ApiError::Request { .. } => ErrorKind::Connect,
            // `Success: false` is the API refusing, in a body that decodes fine.
            ApiError::Status { .. }
            | ApiError::LoginStatus { .. }
            | ApiError::Decode {
                source: DecodeError::NotSuccessful { .. },
                ..
            } => ErrorKind::Status,
            ApiError::Decode { .. } | ApiError::TooLarge { .. } => ErrorKind::Decode,
            ApiError::Unauthorized { .. } | ApiError::Login(_) => ErrorKind::Auth,
        }
    }

    /// Credentials are rejected: every further request would be too.
    pub(crate) fn is_auth(&self) -> bool {
        self.kind() == ErrorKind::Auth
    }

    /// The API refused the request for the budget (429 to the last retry):
    /// it was not answered, but says nothing of whether the API works.
    pub(crate) fn is_rate_limited(&self) -> bool {
        matches!(
            self,
            ApiError::Status { code: 429, .. } | ApiError::LoginStatus { code: 429, .. }
        )
    }
}

/// How much of the API's own text (an error body, a `Message`) an error keeps.
pub(crate) const API_TEXT_CHARS: usize = 200;

/// `text` cut to [`API_TEXT_CHARS`] characters, with an ellipsis when cut.
pub(crate) fn shortened(text: &str) -> String {
    match text.char_indices().nth(API_TEXT_CHARS) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_false_is_a_status_error_and_bad_bodies_decode_errors() {
        let decode = |source| ApiError::Decode {
            endpoint: "status",
            source,
        };
        let refused = decode(DecodeError::NotSuccessful {
            success: "false".into(),
            message: "Quota exceeded".into(),
        });
        assert_eq!(refused.kind(), ErrorKind::Status);
        assert_eq!(
            decode(DecodeError::NotJson("eof".into())).kind(),
            ErrorKind::Decode
        );
        assert_eq!(decode(DecodeError::NoData).kind(), ErrorKind::Decode);
    }

    #[test]
    fn labels_are_distinct_and_sort_as_their_kinds() {
        let labels: Vec<_> = ErrorKind::ALL.iter().map(|k| k.label()).collect();
        let distinct: std::collections::HashSet<_> = labels.iter().collect();
        assert_eq!(distinct.len(), ErrorKind::ALL.len());
        let mut by_kind = ErrorKind::ALL;
        by_kind.sort();
        let sorted: Vec<_> = by_kind.iter().map(|k| k.label()).collect();
        let mut by_label = labels;
        by_label.sort_unstable();
        assert_eq!(sorted, by_label, "a refresh logs its errors in label order");
    }
}
