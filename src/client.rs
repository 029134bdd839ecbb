//! The Postmark HTTP client: auth headers, timeouts, retries with backoff, a concurrency limit.
//!
//! Whether a failed request is retried is decided in one table, [`action_for`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use tokio::sync::Notify;
use url::Url;

use crate::config::Config;
use crate::secret::Secret;

/// The longest Retry-After we honour; a larger value is capped rather than trusted blindly.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The credential of one request.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// A server token: the configured one, or one the account API returned for another server.
    Server(&'a Secret),
    /// The configured account token.
    Account,
}

/// Which token an endpoint takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Server,
    Account,
}

impl TokenKind {
    fn header(self) -> &'static str {
        match self {
            TokenKind::Server => "X-Postmark-Server-Token",
            TokenKind::Account => "X-Postmark-Account-Token",
        }
    }
}

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
    Build(String),
}

fn api_detail(code: &Option<i64>, message: &Option<String>) -> String {
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

    /// Postmark's ErrorCode, when the API sent one.
    pub fn error_code(&self) -> Option<i64> {
        match self {
            ClientError::Unauthorized { error_code, .. } | ClientError::Api { error_code, .. } => *error_code,
            _ => None,
        }
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

/// What to do with a response status: the one retry table.
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
}

pub fn action_for(status: StatusCode) -> Action {
    match status.as_u16() {
        200..=299 => Action::Success,
        429 => Action::RateLimited,
        408 | 500 | 502 | 503 | 504 => Action::Retry,
        401 | 403 => Action::Unauthorized,
        _ => Action::Fail,
    }
}

#[derive(Deserialize)]
struct ApiErrorBody {
    #[serde(rename = "ErrorCode")]
    error_code: Option<i64>,
    #[serde(rename = "Message")]
    message: Option<String>,
}

/// How many requests may be in flight: additive increase, multiplicative decrease. A 429 halves
/// the limit; every `limit` successes in a row add one, up to `max_concurrency`. A rate limit
/// therefore slows the run down instead of failing it.
#[derive(Debug)]
pub struct AdaptiveLimit {
    max: usize,
    state: std::sync::Mutex<LimitState>,
    freed: Notify,
}

#[derive(Debug)]
struct LimitState {
    limit: usize,
    in_flight: usize,
    successes: usize,
}

/// A slot of the limit, released on drop.
pub struct Slot<'a>(&'a AdaptiveLimit);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.0.state.lock() {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        self.0.freed.notify_waiters();
    }
}

impl AdaptiveLimit {
    pub fn new(max: usize) -> Self {
        AdaptiveLimit {
            max: max.max(1),
            state: std::sync::Mutex::new(LimitState {
                limit: max.max(1),
                in_flight: 0,
                successes: 0,
            }),
            freed: Notify::new(),
        }
    }

    pub async fn acquire(&self) -> Slot<'_> {
        loop {
            let notified = self.freed.notified();
            {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if s.in_flight < s.limit {
                    s.in_flight += 1;
                    return Slot(self);
                }
            }
            notified.await;
        }
    }

    pub fn on_success(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.successes += 1;
        if s.successes >= s.limit && s.limit < self.max {
            s.limit += 1;
            s.successes = 0;
            drop(s);
            self.freed.notify_waiters();
        }
    }

    pub fn on_rate_limited(&self) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.limit = (s.limit / 2).max(1);
        s.successes = 0;
    }

    pub fn current(&self) -> usize {
        self.state.lock().map(|s| s.limit).unwrap_or(1)
    }
}

/// Counters for the run summary.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
}

pub struct PostmarkClient {
    http: reqwest::Client,
    base_url: Url,
    account_token: Option<Secret>,
    max_retries: u32,
    retry_initial_delay: Duration,
    limiter: Arc<AdaptiveLimit>,
    pub stats: Arc<ClientStats>,
}

enum Attempt {
    Fatal(ClientError),
    Retry {
        reason: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
}

impl PostmarkClient {
    pub fn new(config: &Config) -> Result<Self, ClientError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("postmark-elt/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10).min(config.request_timeout))
            .timeout(config.request_timeout)
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(PostmarkClient {
            http,
            base_url: config.base_url.clone(),
            account_token: config.account_token.clone(),
            max_retries: config.max_retries,
            retry_initial_delay: config.retry_initial_delay,
            limiter: Arc::new(AdaptiveLimit::new(config.max_concurrency)),
            stats: Arc::default(),
        })
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Url {
        let mut url = self.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}{path}"));
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// GET `path` and parse the body with `parse`. Retries transient failures, including a body
    /// that `parse` rejects (truncated or malformed JSON), up to `max_retries` times.
    pub async fn get<T>(
        &self,
        auth: Auth<'_>,
        path: &str,
        query: &[(&str, String)],
        parse: impl Fn(&[u8]) -> Result<T, BodyError>,
    ) -> Result<T, ClientError> {
        self.request(reqwest::Method::GET, auth, path, query, None, parse).await
    }

    /// Any request; `body` is sent as JSON. Writes (POST/PUT) are retried like reads: the only
    /// writes here are idempotent webhook registrations.
    pub async fn request<T>(
        &self,
        method: reqwest::Method,
        auth: Auth<'_>,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
        parse: impl Fn(&[u8]) -> Result<T, BodyError>,
    ) -> Result<T, ClientError> {
        let url = self.url(path, query);
        let request = format!("{method} {}{}", url.path(), url.query().map(|q| format!("?{q}")).unwrap_or_default());
        let (token, secret) = match auth {
            Auth::Server(secret) => (TokenKind::Server, secret),
            Auth::Account => (TokenKind::Account, self.account_token.as_ref().ok_or(ClientError::NoAccountToken)?),
        };
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(self.retry_initial_delay)
            .with_max_delay(MAX_BACKOFF.max(self.retry_initial_delay))
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_retries as usize)
            .build();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let outcome = {
                // The permit is held only while the request is in flight, not while backing off.
                let _slot = self.limiter.acquire().await;
                self.stats.requests.fetch_add(1, Ordering::Relaxed);
                self.attempt(&method, &url, body, &request, token, secret).await
            };
            match &outcome {
                Ok(_) => self.limiter.on_success(),
                Err(Attempt::Retry { status: Some(429), .. }) => {
                    self.limiter.on_rate_limited();
                    tracing::info!(limit = self.limiter.current(), "Rate limited; fewer requests in flight.");
                }
                Err(_) => {}
            }
            let failure = match outcome {
                Ok(body) => match parse(&body) {
                    Ok(value) => return Ok(value),
                    Err(BodyError::Data(message)) => return Err(ClientError::Data { request, message }),
                    Err(BodyError::Malformed(e)) => Attempt::Retry {
                        reason: format!("unreadable response body ({e})"),
                        status: Some(200),
                        retry_after: None,
                    },
                },
                Err(a) => a,
            };
            match failure {
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry {
                    reason,
                    status,
                    retry_after,
                } => {
                    let Some(backoff) = delays.next() else {
                        return Err(ClientError::Exhausted {
                            request,
                            attempts,
                            last: reason,
                            status,
                        });
                    };
                    let delay = retry_after.map_or(backoff, |r| r.min(MAX_RETRY_AFTER));
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        request = %request,
                        attempt = attempts,
                        delay_ms = delay.as_millis() as u64,
                        error = %reason,
                        "Request failed; retrying."
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn attempt(&self, method: &reqwest::Method, url: &Url, body: Option<&serde_json::Value>, request: &str, token: TokenKind, secret: &Secret) -> Result<Vec<u8>, Attempt> {
        let mut value = HeaderValue::from_str(secret.expose()).map_err(|_| {
            Attempt::Fatal(ClientError::Unauthorized {
                request: request.to_string(),
                status: 0,
                error_code: None,
                message: Some("the token holds characters that cannot go in an HTTP header".to_string()),
                hint: "copy the token again from Postmark",
            })
        })?;
        value.set_sensitive(true);
        let mut builder = self.http.request(method.clone(), url.clone()).header(token.header(), value);
        if let Some(body) = body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = builder
            .send()
            .await
            .map_err(|e| transport_failure(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let action = action_for(status);
        // A body cut off mid-way is a transport failure, retried like a reset connection.
        let body = response.bytes().await.map_err(|e| transport_failure(&e))?;
        if action == Action::Success {
            return Ok(body.to_vec());
        }
        let api: Option<ApiErrorBody> = serde_json::from_slice(&body).ok();
        let (error_code, message) = api.map_or((None, None), |b| (b.error_code, b.message));
        let code = status.as_u16();
        Err(match action {
            Action::Success => unreachable!("handled above"),
            Action::Retry | Action::RateLimited => Attempt::Retry {
                reason: format!("HTTP {code}{}", api_detail(&error_code, &message)),
                status: Some(code),
                retry_after,
            },
            Action::Unauthorized => Attempt::Fatal(ClientError::Unauthorized {
                request: request.to_string(),
                status: code,
                error_code,
                message,
                hint: match token {
                    TokenKind::Server => "check `server_token` in the config: it must be a server API token (Postmark: Servers > your server > API Tokens)",
                    TokenKind::Account => "check `account_token` in the config: it must be an account API token (Postmark: Account > API Tokens)",
                },
            }),
            Action::Fail => Attempt::Fatal(ClientError::Api {
                request: request.to_string(),
                status: code,
                error_code,
                message,
            }),
        })
    }
}

fn transport_failure(e: &reqwest::Error) -> Attempt {
    // reqwest's Display names the URL (path and query only: tokens travel in headers).
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "response body broken off"
    } else {
        "request failed"
    };
    let mut reason = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        reason.push_str(&format!(": {s}"));
        source = s.source();
    }
    Attempt::Retry {
        reason,
        status: None,
        retry_after: None,
    }
}

/// Retry-After is either seconds or an HTTP date.
fn parse_retry_after(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    let wait = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The retry table: rate limits and server faults retry; auth and validation fail at once.
    #[test]
    fn retry_table() {
        let s = |c| StatusCode::from_u16(c).unwrap();
        assert_eq!(action_for(s(200)), Action::Success);
        assert_eq!(action_for(s(429)), Action::RateLimited);
        for c in [408, 500, 502, 503, 504] {
            assert_eq!(action_for(s(c)), Action::Retry, "{c}");
        }
        assert_eq!(action_for(s(401)), Action::Unauthorized);
        for c in [400, 404, 422] {
            assert_eq!(action_for(s(c)), Action::Fail, "{c}");
        }
    }

    /// Both Retry-After forms are understood.
    #[tokio::test]
    async fn adaptive_limit_halves_and_grows() {
        let l = AdaptiveLimit::new(8);
        assert_eq!(l.current(), 8);
        l.on_rate_limited();
        l.on_rate_limited();
        assert_eq!(l.current(), 2);
        for _ in 0..2 {
            l.on_success();
        }
        assert_eq!(l.current(), 3);
        let a = l.acquire().await;
        let b = l.acquire().await;
        let c = l.acquire().await;
        // A fourth waits until a slot is freed.
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), l.acquire()).await;
        assert!(waiting.is_err());
        drop(a);
        let d = tokio::time::timeout(std::time::Duration::from_millis(50), l.acquire()).await;
        assert!(d.is_ok());
        drop((b, c));
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
