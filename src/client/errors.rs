//! What a failed request means: the client's errors, and the one table that maps an HTTP status
//! and Postmark's `ErrorCode` to an action (retry, fail, skip). An endpoint's declaration can
//! put its own rules in front of the defaults (`StreamDef::errors`).

use reqwest::StatusCode;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{request} was refused (HTTP {status}{}): {hint}", api_detail(error_code, message))]
    Unauthorized {
        request: String,
        status: u16,
        error_code: Option<i64>,
        message: Option<String>,
        hint: &'static str,
    },
    #[error("{request} failed with HTTP {status}{}", api_detail(error_code, message))]
    Api {
        request: String,
        status: u16,
        error_code: Option<i64>,
        message: Option<String>,
    },
    /// The endpoint's rules say this answer means "no such record now": the caller skips it.
    #[error("{request} skipped (HTTP {status}{})", api_detail(error_code, message))]
    Skipped {
        request: String,
        status: u16,
        error_code: Option<i64>,
        message: Option<String>,
    },
    #[error("{request} still failing after {attempts} attempts; last error: {last}")]
    Exhausted {
        request: String,
        attempts: u32,
        last: String,
        /// HTTP status of the last attempt, if there was a response.
        status: Option<u16>,
    },
    #[error("{request} returned records that do not fit the schema: {message}")]
    Data { request: String, message: String },
    #[error("this stream needs `account_token` in the config (Postmark's account API token)")]
    NoAccountToken,
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

pub(crate) fn api_detail(code: &Option<i64>, message: &Option<String>) -> String {
    match (code, message) {
        (Some(c), Some(m)) => format!(", Postmark ErrorCode {c}: {m}"),
        (Some(c), None) => format!(", Postmark ErrorCode {c}"),
        (None, Some(m)) => format!(": {m}"),
        (None, None) => String::new(),
    }
}

impl ClientError {
    pub fn is_auth(&self) -> bool {
        matches!(self, ClientError::Unauthorized { .. } | ClientError::NoAccountToken)
    }
}

/// Why a 200 response could not be used.
#[derive(Debug)]
pub enum BodyError {
    /// Not the expected JSON (usually cut off in transit): retried.
    Malformed(String),
    /// Valid JSON whose values do not fit the schema: retrying cannot help.
    Data(String),
}

/// What to do with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Success,
    /// Transient server trouble: back off exponentially and try again.
    Retry,
    /// 429: slow down; honour Retry-After when given.
    RateLimited,
    /// Bad token: fail at once, with a hint.
    Unauthorized,
    /// Anything else (422 validation, 404...): fail at once with the API's message.
    Fail,
    /// The record asked for is gone (Airbyte's IGNORE): the caller counts it and goes on.
    Skip,
}

/// One row of an error table: an HTTP status, optionally narrowed to one Postmark ErrorCode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorRule {
    pub status: u16,
    /// `None` matches any ErrorCode (or none).
    pub error_code: Option<i64>,
    pub action: Action,
}

impl ErrorRule {
    pub const fn skip(status: u16, error_code: i64) -> Self {
        ErrorRule {
            status,
            error_code: Some(error_code),
            action: Action::Skip,
        }
    }

    fn matches(&self, status: u16, error_code: Option<i64>) -> bool {
        self.status == status && self.error_code.is_none_or(|c| Some(c) == error_code)
    }
}

impl ErrorRule {
    const fn on(status: u16, action: Action) -> Self {
        ErrorRule {
            status,
            error_code: None,
            action,
        }
    }
}

/// The defaults, after an endpoint's own rules; a status not listed fails at once.
const DEFAULT_RULES: &[ErrorRule] = &[
    ErrorRule::on(429, Action::RateLimited),
    ErrorRule::on(408, Action::Retry),
    ErrorRule::on(500, Action::Retry),
    ErrorRule::on(502, Action::Retry),
    ErrorRule::on(503, Action::Retry),
    ErrorRule::on(504, Action::Retry),
    ErrorRule::on(401, Action::Unauthorized),
    ErrorRule::on(403, Action::Unauthorized),
];

/// The action for a response: success for 2xx, else the endpoint's first matching rule, else
/// the defaults'.
pub fn action_for(status: StatusCode, error_code: Option<i64>, rules: &[ErrorRule]) -> Action {
    if status.is_success() {
        return Action::Success;
    }
    let code = status.as_u16();
    rules
        .iter()
        .chain(DEFAULT_RULES)
        .find(|r| r.matches(code, error_code))
        .map_or(Action::Fail, |r| r.action)
}

/// Postmark's error body: `{"ErrorCode": 701, "Message": "..."}`.
#[derive(Deserialize)]
pub(crate) struct ApiErrorBody {
    #[serde(rename = "ErrorCode")]
    pub error_code: Option<i64>,
    #[serde(rename = "Message")]
    pub message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The retry table: rate limits and server faults retry; auth and validation fail at once.
    #[test]
    fn retry_table() {
        let s = |c| StatusCode::from_u16(c).unwrap();
        assert_eq!(action_for(s(200), None, &[]), Action::Success);
        assert_eq!(action_for(s(429), None, &[]), Action::RateLimited);
        for c in [408, 500, 502, 503, 504] {
            assert_eq!(action_for(s(c), None, &[]), Action::Retry, "{c}");
        }
        assert_eq!(action_for(s(401), None, &[]), Action::Unauthorized);
        for c in [400, 404, 422, 501] {
            assert_eq!(action_for(s(c), None, &[]), Action::Fail, "{c}");
        }
    }

    /// An endpoint's rule wins for its status and ErrorCode only.
    #[test]
    fn endpoint_rules_narrow_by_error_code() {
        let s = |c| StatusCode::from_u16(c).unwrap();
        let rules = [ErrorRule::skip(422, 701)];
        assert_eq!(action_for(s(422), Some(701), &rules), Action::Skip);
        assert_eq!(action_for(s(422), Some(700), &rules), Action::Fail);
        assert_eq!(action_for(s(422), None, &rules), Action::Fail);
        assert_eq!(action_for(s(500), Some(701), &rules), Action::Retry);
        let any = [ErrorRule {
            status: 404,
            error_code: None,
            action: Action::Skip,
        }];
        assert_eq!(action_for(s(404), Some(3), &any), Action::Skip);
    }
}
