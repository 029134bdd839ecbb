//! The Postmark HTTP client: auth headers, timeouts, retries with backoff, a concurrency limit.
//!
//! What a failed request means is decided in one table, [`errors::action_for`], keyed by HTTP
//! status and Postmark's ErrorCode; the concurrency limit is in [`limit`].

mod clock;
mod errors;
mod limit;
mod retry;
mod transfer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use url::Url;

pub use clock::ApiClock;
pub use errors::{Action, BodyError, ClientError, ErrorRule, action_for};
use errors::{ApiErrorBody, api_detail};
pub use limit::{AdaptiveLimit, Slot};
pub use retry::{MAX_RETRY_WAIT, worst_case_to_fail};
use retry::{connect_backoff, retry_backoff, retry_wait};
use transfer::{Answer, Transfer};

use crate::config::Config;
use crate::secret::Secret;

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

/// Counters for the run summary.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub retries: AtomicU64,
}

/// One API call: what [`PostmarkClient::request`] sends, besides the credential.
pub struct Call<'a> {
    pub method: reqwest::Method,
    pub path: &'a str,
    pub query: &'a [(&'a str, String)],
    /// Sent as JSON.
    pub body: Option<&'a serde_json::Value>,
    /// The endpoint's own error rules, looked up before the defaults.
    pub rules: &'a [ErrorRule],
    /// Sent before the calls waiting for a slot that were not marked so (a window planner's
    /// probes, which reads wait on); its retries always are.
    pub first: bool,
}

impl<'a> Call<'a> {
    pub fn get(path: &'a str, query: &'a [(&'a str, String)], rules: &'a [ErrorRule]) -> Self {
        Call {
            method: reqwest::Method::GET,
            path,
            query,
            body: None,
            rules,
            first: false,
        }
    }

    /// The call, sent before those waiting that are not marked so.
    pub fn first(self) -> Self {
        Call { first: true, ..self }
    }
}

pub struct PostmarkClient {
    http: reqwest::Client,
    base_url: Url,
    account_token: Option<Secret>,
    max_retries: u32,
    max_connect_retries: u32,
    retry_initial_delay: Duration,
    limiter: Arc<AdaptiveLimit>,
    pub stats: Arc<ClientStats>,
    /// Postmark's clock, from the `Date` of its answers.
    pub clock: Arc<ApiClock>,
}

enum Attempt {
    Fatal(ClientError),
    Retry {
        reason: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
        /// The connection could not be opened: counted against its own, shorter budget.
        connect: bool,
    },
}

impl PostmarkClient {
    pub fn new(config: &Config) -> Result<Self, ClientError> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("postmark-elt/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout.min(config.request_timeout))
            .timeout(config.request_timeout)
            .build()
            .map_err(ClientError::Build)?;
        Ok(PostmarkClient {
            http,
            base_url: config.base_url.clone(),
            account_token: config.account_token.clone(),
            max_retries: config.max_retries,
            max_connect_retries: config.max_connect_retries,
            retry_initial_delay: config.retry_initial_delay,
            limiter: Arc::new(AdaptiveLimit::new(config.max_concurrency)),
            stats: Arc::default(),
            clock: Arc::default(),
        })
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Url {
        let mut url = self.base_url.clone();
        let base_path = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}{path}"));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// GET `path` and parse the body with `parse`. Retries transient failures, including a body
    /// that `parse` rejects (truncated or malformed JSON), up to `max_retries` times.
    pub async fn get<T>(&self, auth: Auth<'_>, path: &str, query: &[(&str, String)], parse: impl Fn(&[u8]) -> Result<T, BodyError>) -> Result<T, ClientError> {
        self.request(auth, Call::get(path, query, &[]), parse).await
    }

    /// Any call. Writes (POST/PUT) are retried like reads: the only writes here are idempotent
    /// webhook registrations.
    pub async fn request<T>(&self, auth: Auth<'_>, call: Call<'_>, parse: impl Fn(&[u8]) -> Result<T, BodyError>) -> Result<T, ClientError> {
        let Call {
            method,
            path,
            query,
            body,
            rules,
            first,
        } = call;
        let url = self.url(path, query);
        let request = format!("{method} {}{}", url.path(), url.query().map(|q| format!("?{q}")).unwrap_or_default());
        let (token, secret) = match auth {
            Auth::Server(secret) => (TokenKind::Server, secret),
            Auth::Account => (TokenKind::Account, self.account_token.as_ref().ok_or(ClientError::NoAccountToken)?),
        };
        let mut delays = retry_backoff(self.retry_initial_delay, self.max_retries, true);
        let mut connect_delays = connect_backoff(self.max_connect_retries);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            // A retry goes first: a read that hands pages on in order may be waiting for it.
            let first = first || attempts > 1;
            let outcome = self.attempt(&method, &url, body, rules, &request, (token, secret), first).await;
            match &outcome {
                Ok(_) => self.limiter.on_success(),
                Err(Attempt::Retry { status: Some(429), .. }) => {
                    if self.limiter.on_rate_limited() {
                        tracing::info!(limit = self.limiter.current(), "Rate limited; fewer requests in flight.");
                    }
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
                        connect: false,
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
                    connect,
                } => {
                    let next = if connect { connect_delays.next() } else { delays.next() };
                    let Some(backoff) = next else {
                        return Err(ClientError::Exhausted {
                            request,
                            attempts,
                            last: reason,
                            status,
                        });
                    };
                    let delay = retry_wait(backoff, retry_after);
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

    // One attempt of `request`'s retry loop, which owns every one of these.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        method: &reqwest::Method,
        url: &Url,
        body: Option<&serde_json::Value>,
        rules: &[ErrorRule],
        request: &str,
        (token, secret): (TokenKind, &Secret),
        first: bool,
    ) -> Result<Vec<u8>, Attempt> {
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
            builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_string());
        }
        let Answer {
            status,
            date,
            retry_after,
            body,
        } = Transfer::spawn(builder, self.limiter.clone(), self.stats.clone(), first).finish().await?;
        self.clock.observe(date.as_deref(), chrono::Utc::now());
        let retry_after = retry_after.as_deref().and_then(parse_retry_after);
        if status.is_success() {
            return Ok(body);
        }
        let api: Option<ApiErrorBody> = serde_json::from_slice(&body).ok();
        let (error_code, message) = api.map_or((None, None), |b| (b.error_code, b.message));
        let code = status.as_u16();
        Err(match action_for(status, error_code, rules) {
            Action::Success => return Ok(body),
            Action::Skip => Attempt::Fatal(ClientError::Skipped {
                request: request.to_string(),
                status: code,
                error_code,
                message,
            }),
            Action::Retry | Action::RateLimited => Attempt::Retry {
                reason: format!("HTTP {code}{}", api_detail(&error_code, &message)),
                status: Some(code),
                retry_after,
                connect: false,
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

    /// Both Retry-After forms are understood.
    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
