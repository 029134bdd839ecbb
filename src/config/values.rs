//! Reading one config value: strings, whole numbers in their declared range, instants, server selections; and the permission check of the file.

use super::*;

pub(super) fn parse_servers(map: &BTreeMap<String, Value>) -> Result<Option<ServerSelection>, ConfigError> {
    let fix = "write \"all\" or a list of server names or IDs, e.g. [\"Shop Production\", 118822]";
    match map.get("servers") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("all") => Ok(Some(ServerSelection::All)),
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut listed = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) if !s.trim().is_empty() => listed.push(s.trim().to_string()),
                    Value::Number(n) if n.is_u64() => listed.push(n.to_string()),
                    other => return Err(invalid("servers", &format!("holds {other}, which is not a server name or ID"), fix)),
                }
            }
            Ok(Some(ServerSelection::Listed(listed)))
        }
        Some(other) => Err(invalid("servers", &format!("is {other}"), fix)),
    }
}

pub(super) fn invalid(key: &'static str, problem: &str, fix: &str) -> ConfigError {
    ConfigError::Invalid {
        key,
        problem: problem.to_string(),
        fix: fix.to_string(),
    }
}

pub(super) fn opt_string(map: &BTreeMap<String, Value>, key: &'static str) -> Result<Option<String>, ConfigError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        // Never echo the value: this may be a token.
        Some(other) => Err(invalid(
            key,
            &format!("must be a string, not a JSON {}", json_kind(other)),
            "put the value in double quotes",
        )),
    }
}

/// A whole number in the key's declared range, or its default when absent.
pub(super) fn int_in(map: &BTreeMap<String, Value>, key: &Key) -> Result<i64, ConfigError> {
    let keys::Shape::Int { min, max, default } = key.shape else {
        return Err(invalid(key.name, "is not a number setting", "report this as a bug in postmark-elt"));
    };
    let name = key.name;
    match map.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(invalid(
                name,
                &format!("is {n}, outside {min}..={max}"),
                &format!("use a whole number from {min} to {max} (default {default})"),
            )),
        },
        Some(other) => Err(invalid(
            name,
            &format!("must be a whole number, not {other}"),
            &format!("write it without quotes, e.g. \"{name}\": {default}"),
        )),
    }
}

pub(super) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `YYYY-MM-DD` (midnight US-Eastern) or RFC 3339.
pub(super) fn parse_instant(key: &'static str, raw: &str) -> Result<DateTime<Utc>, ConfigError> {
    let raw = raw.trim();
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let midnight = date.and_hms_opt(0, 0, 0).unwrap_or_default();
        // Midnight always exists in New York (DST changes at 02:00).
        if let Some(t) = New_York.from_local_datetime(&midnight).earliest() {
            return Ok(t.with_timezone(&Utc));
        }
    }
    DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).map_err(|_| {
        invalid(
            key,
            &format!("is not a date ({raw:?})"),
            "write YYYY-MM-DD (e.g. \"2026-10-01\") or an RFC 3339 date-time (e.g. \"2026-10-01T00:00:00Z\")",
        )
    })
}

/// Tokens in a file others can read are worth a warning.
#[cfg(unix)]
pub(super) fn permission_warning(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o044 != 0).then(|| {
        format!(
            "Config file {} is readable by other users and may hold API tokens; run `chmod 600 {}`.",
            path.display(),
            path.display()
        )
    })
}

#[cfg(not(unix))]
pub(super) fn permission_warning(_path: &Path) -> Option<String> {
    None
}
