use super::*;
use serde_json::json;

fn parse(v: Value) -> Result<Loaded, ConfigError> {
    let map: BTreeMap<String, Value> = v.as_object().unwrap().clone().into_iter().collect();
    let now = DateTime::parse_from_rfc3339("2026-11-22T12:00:00Z").unwrap().with_timezone(&Utc);
    Config::from_map(&map, None, now)
}

/// Table of invalid configs with the fragment their error must contain.
#[test]
fn invalid_configs_name_the_key_and_the_fix() {
    let cases = [
        (json!({"start_date": "2026-01-01"}), "`server_token` is missing"),
        (json!({"server_token": "t"}), "`start_date` is missing"),
        (json!({"server_token": "t", "start_date": "yesterday"}), "write YYYY-MM-DD"),
        (json!({"server_token": "t", "start_date": "2027-01-01"}), "is in the future"),
        (
            json!({"server_token": "t", "start_date": "2026-01-01", "end_date": "2025-01-01"}),
            "not after start_date",
        ),
        (json!({"server_token": "t", "start_date": "2026-01-01", "page_size": 501}), "outside 1..=500"),
        (
            json!({"server_token": "t", "start_date": "2026-01-01", "page_size": "100"}),
            "must be a whole number",
        ),
        (
            json!({"server_token": "t", "start_date": "2026-01-01", "commit_interval_seconds": 0}),
            "`commit_interval_seconds` is 0, outside 1..=3600",
        ),
        (
            json!({"server_token": "t", "start_date": "2026-01-01", "duckdb_memory_limit_mb": 16}),
            "`duckdb_memory_limit_mb` is 16, outside 32..=1048576",
        ),
        (
            json!({"server_token": "t", "start_date": "2026-01-01", "base_url": "not a url"}),
            "`base_url` is not an http(s) URL",
        ),
        (json!({"server_token": "t", "start_date": "2026-01-01", "base_url": "ftp://x"}), "`base_url`"),
        (
            json!({"server_token": "t", "start_date": "2026-01-01", "message_streams": "outbound"}),
            "list of stream IDs",
        ),
        (
            json!({"server_token": "t", "start_date": "2026-01-01", "max_concurrency": 0}),
            "`max_concurrency`",
        ),
        (json!({"server_token": 12345, "start_date": "2026-01-01"}), "must be a string"),
        (
            json!({"server_token": "t", "start_date": "2026-01-01", "servers": "all"}),
            "needs `account_token`",
        ),
        (
            json!({"account_token": "a", "start_date": "2026-01-01", "servers": [true]}),
            "not a server name or ID",
        ),
        (json!({"account_token": "a", "start_date": "2026-01-01"}), "`server_token` is missing"),
    ];
    for (cfg, want) in cases {
        let err = parse(cfg.clone()).unwrap_err().to_string();
        assert!(err.contains(want), "{cfg}: {err}");
    }
}

/// A numeric token is refused without echoing it.
#[test]
fn wrong_typed_token_is_not_echoed() {
    let err = parse(json!({"server_token": 987654321, "start_date": "2026-01-01"})).unwrap_err().to_string();
    assert!(!err.contains("987654321"), "{err}");
}

/// A plain date is midnight in New York, with daylight saving.
#[test]
fn dates_are_us_eastern_midnight() {
    let summer = parse(json!({"server_token": "t", "start_date": "2026-07-01"})).unwrap().config;
    assert_eq!(summer.start.to_rfc3339(), "2026-07-01T04:00:00+00:00");
    let winter = parse(json!({"server_token": "t", "start_date": "2026-01-15"})).unwrap().config;
    assert_eq!(winter.start.to_rfc3339(), "2026-01-15T05:00:00+00:00");
    let exact = parse(json!({"server_token": "t", "start_date": "2026-01-15T10:00:00+01:00"})).unwrap().config;
    assert_eq!(exact.start.to_rfc3339(), "2026-01-15T09:00:00+00:00");
}

/// The alias, the defaults and the unknown-key warning.
#[test]
fn alias_defaults_and_unknown_keys() {
    let l = parse(json!({"postmark_server_token": "abc", "start_date": "2026-01-01", "colour": "blue"})).unwrap();
    assert_eq!(l.config.server_token.as_ref().unwrap().expose(), "abc");
    assert_eq!(l.config.page_size, 500);
    assert_eq!(l.config.max_concurrency, 4);
    assert_eq!(l.config.base_url.as_str(), "https://api.postmarkapp.com/");
    assert_eq!(l.warnings.len(), 1);
    assert!(l.warnings[0].contains("`colour`"));
}

/// With `servers`, the account token is enough.
#[test]
fn servers_select_through_the_account() {
    let l = parse(json!({"account_token": "a", "start_date": "2026-01-01", "servers": ["Shop", 42]})).unwrap();
    assert_eq!(l.config.servers, Some(ServerSelection::Listed(vec!["Shop".into(), "42".into()])));
    assert!(l.config.server_token.is_none());
    let l = parse(json!({"account_token": "a", "start_date": "2026-01-01", "servers": "ALL"})).unwrap();
    assert_eq!(l.config.servers, Some(ServerSelection::All));
}

/// The environment variable is used only when the file has no token.
#[test]
fn env_token_is_a_fallback() {
    let map: BTreeMap<String, Value> = [("start_date".to_string(), json!("2026-01-01"))].into();
    let l = Config::from_map(&map, Some("from-env".into()), Utc::now()).unwrap();
    assert_eq!(l.config.server_token.as_ref().unwrap().expose(), "from-env");
}

/// Debug output of a config never shows a token.
#[test]
fn debug_masks_tokens() {
    let l = parse(json!({"server_token": "s3cr3t-token", "account_token": "acc-s3cr3t", "start_date": "2026-01-01"})).unwrap();
    let dbg = format!("{:?}", l.config);
    assert!(!dbg.contains("s3cr3t"), "{dbg}");
}

/// A typo in a key names the likely key: in the unknown-key warning, and in the error of a
/// required key that is missing because of it.
#[test]
fn typos_name_the_likely_key() {
    let e = parse(json!({"server_token": "t", "start_dat": "2026-01-01"})).unwrap_err().to_string();
    assert!(e.contains("`start_dat`") && e.contains("did you mean `start_date`"), "{e}");
    let w = parse(json!({"server_token": "t", "start_date": "2026-01-01", "lookback_day": 3}))
        .unwrap()
        .warnings;
    assert!(w.iter().any(|w| w.contains("did you mean `lookback_days`")), "{w:?}");
}
