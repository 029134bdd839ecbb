//! The HTTP side of the fake: the handler that logs each request and serves a fault or a route,
//! Postmark's error bodies, timestamps and the US-Eastern reading of date filters.

use super::*;

/// `2025-06-03T09:14:07.5512093-04:00`: New York offset, 7 fractional digits.
pub fn postmark_timestamp(t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&New_York);
    let ticks = t.timestamp_subsec_nanos() / 100;
    format!("{}.{ticks:07}{}", local.format("%Y-%m-%dT%H:%M:%S"), local.format("%:z"))
}

pub(crate) fn api_error(status: StatusCode, code: i64, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        json!({"ErrorCode": code, "Message": message}).to_string(),
    )
        .into_response()
}

pub(crate) fn json_response(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response()
}

#[derive(Clone, Copy)]
pub(crate) enum Bound {
    From,
    To,
}

/// Reads a Postmark date filter as New York wall-clock time, choosing the least favourable
/// instant where the reference leaves the reading open.
pub(crate) fn parse_eastern(raw: &str, bound: Bound) -> Option<DateTime<Utc>> {
    let naive = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .or_else(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))?;
    let resolved = match New_York.from_local_datetime(&naive) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(early, late) => match bound {
            Bound::From => late,
            Bound::To => early,
        },
        // In the spring-forward gap: the first instant after it.
        LocalResult::None => New_York.from_local_datetime(&(naive + ChronoDuration::hours(1))).earliest()?,
    };
    Some(resolved.with_timezone(&Utc))
}

/// A date filter as the fake's [`DateReading`] reads it: the reference's reading
/// ([`parse_eastern`]), or one of the other readings a connector must survive.
pub(crate) fn read_date_filter(raw: &str, bound: Bound, reading: DateReading) -> Option<DateTime<Utc>> {
    let bare_date = raw.len() == 10;
    match reading {
        DateReading::Eastern => parse_eastern(raw, bound),
        DateReading::EasternWholeSecond => match bound {
            Bound::To => parse_eastern(raw, bound).map(|t| t + ChronoDuration::nanoseconds(999_999_900)),
            Bound::From => parse_eastern(raw, bound),
        },
        DateReading::FixedUtcMinus5 => {
            let naive = NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S")
                .ok()
                .or_else(|| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok().and_then(|d| d.and_hms_opt(0, 0, 0)))?;
            Some(naive.and_utc() + ChronoDuration::hours(5))
        }
        DateReading::BareDateWholeDay if bare_date && matches!(bound, Bound::To) => {
            parse_eastern(raw, bound).map(|t| t + ChronoDuration::days(1) - ChronoDuration::nanoseconds(100))
        }
        DateReading::BareDateWholeDay => parse_eastern(raw, bound),
    }
}

pub(crate) fn query_map(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn get<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub(crate) async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let arrived = std::time::Instant::now();
    let path = req.uri().path().trim_end_matches('/').to_ascii_lowercase();
    let query = query_map(&req);
    let headers = req.headers().clone();
    let method = req.method().clone();
    let target = format!("{path}?{}", req.uri().query().unwrap_or_default()).to_ascii_lowercase();
    let body = axum::body::to_bytes(req.into_body(), 64 << 20).await.unwrap_or_default();
    let token_ok = shared
        .server_by_token(headers.get("x-postmark-server-token").and_then(|v| v.to_str().ok()))
        .is_some();
    let account_ok = headers
        .get("x-postmark-account-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == shared.config.account_token);

    let fault = {
        let mut log = shared.log();
        let pos = log.faults.iter().position(|(matcher, _)| target.contains(matcher.as_str()));
        pos.and_then(|p| log.faults.remove(p)).map(|(_, f)| f)
    };
    let (delay, random_error) = shared.draw_chaos();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let fault = fault.or(match random_error {
        Some(429) => Some(Fault::RateLimited { retry_after: None }),
        Some(status) => Some(Fault::Status(status)),
        None => None,
    });
    let response = match fault {
        Some(f) => serve_fault(f, &shared, &path, &query, &headers, &method, &body).await,
        None => routes::route(&shared, &method, &path, &query, &headers, &body),
    };
    let mut response = response;
    // Postmark's clock, which the connector must follow (hyper keeps a Date already set).
    let date = shared.now().format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    if let Ok(value) = header::HeaderValue::from_str(&date) {
        response.headers_mut().insert(header::DATE, value);
    }
    let mut log = shared.log();
    if !log.off {
        log.requests.push(RecordedRequest {
            method: method.to_string(),
            path: path.clone(),
            query,
            server_token_ok: token_ok,
            account_token_ok: account_ok,
            accept: headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_string),
            accept_encoding: headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok()).map(str::to_string),
            status: response.status().as_u16(),
            arrived,
            answered: std::time::Instant::now(),
        });
    }
    response
}

pub(crate) async fn serve_fault(
    f: Fault,
    shared: &Shared,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    method: &Method,
    body: &[u8],
) -> Response {
    match f {
        Fault::RateLimited { retry_after } => {
            let mut r = api_error(StatusCode::TOO_MANY_REQUESTS, 429, "Rate Limit Exceeded");
            if let Some(s) = retry_after {
                r.headers_mut().insert(header::RETRY_AFTER, s.into());
            }
            r
        }
        Fault::Api { status, code, message } => api_error(StatusCode::from_u16(status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY), code, &message),
        Fault::Status(500) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            101,
            "An error that shouldn't have occurred. Error id: fake-1.",
        ),
        Fault::Status(503) => api_error(StatusCode::SERVICE_UNAVAILABLE, 100, "Maintenance."),
        Fault::Status(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY).into_response(),
        Fault::TruncatedJson => {
            let full = routes::route(shared, method, path, query, headers, body);
            let bytes = axum::body::to_bytes(full.into_body(), usize::MAX).await.unwrap_or_default();
            json_response(String::from_utf8_lossy(&bytes[..bytes.len() / 2]).into_owned())
        }
        Fault::ResetMidBody => {
            let full = routes::route(shared, method, path, query, headers, body);
            let bytes = axum::body::to_bytes(full.into_body(), usize::MAX).await.unwrap_or_default();
            let half = bytes.slice(..bytes.len() / 2);
            let chunks: Vec<Result<axum::body::Bytes, std::io::Error>> =
                vec![Ok(half), Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "fake reset"))];
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json; charset=utf-8")
                .header(header::CONTENT_LENGTH, bytes.len())
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        Fault::Body(body) => json_response(body),
        Fault::Hang(d) => {
            tokio::time::sleep(d).await;
            routes::route(shared, method, path, query, headers, body)
        }
    }
}
