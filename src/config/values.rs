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

/// The `columns` rules and their salt, checked against the streams' schemas.
pub(super) fn parse_columns(map: &BTreeMap<String, Value>) -> Result<ColumnPolicy, ConfigError> {
    let fix = "write e.g. {\"messages_outbound\": {\"drop\": [\"subject\"], \"hash\": [\"to.email\", \"recipients\"]}}";
    let salt = opt_string(map, "column_hash_salt")?
        .or_else(|| std::env::var(HASH_SALT_ENV).ok())
        .filter(|s| !s.is_empty())
        .map(Secret::new);
    if salt.as_ref().is_some_and(|s| s.expose().len() < keys::COLUMN_HASH_SALT.min_len()) {
        return Err(invalid(
            "column_hash_salt",
            &format!("is shorter than {} characters", keys::COLUMN_HASH_SALT.min_len()),
            "use a long random value, e.g. the output of `openssl rand -hex 32`",
        ));
    }
    let mut policy = ColumnPolicy {
        streams: BTreeMap::new(),
        salt,
    };
    let Some(value) = map.get("columns").filter(|v| !v.is_null()) else {
        return Ok(policy);
    };
    let Value::Object(streams) = value else {
        return Err(invalid("columns", &format!("is a JSON {}, not an object", json_kind(value)), fix));
    };
    for (stream, rules) in streams {
        let Value::Object(rules) = rules else {
            return Err(invalid("columns", &format!("`{stream}` is not an object of `drop` and `hash`"), fix));
        };
        let mut parsed = ColumnRules::default();
        for (verb, list) in rules {
            let target = match verb.as_str() {
                "drop" => &mut parsed.drop,
                "hash" => &mut parsed.hash,
                other => return Err(invalid("columns", &format!("`{stream}` has `{other}`; only `drop` and `hash` are known"), fix)),
            };
            let Some(items) = list.as_array() else {
                return Err(invalid("columns", &format!("`{stream}.{verb}` is not a list"), fix));
            };
            for item in items {
                match item.as_str() {
                    Some(name) if !name.is_empty() => target.insert(name.to_string()),
                    _ => return Err(invalid("columns", &format!("`{stream}.{verb}` holds {item}, not a column name"), fix)),
                };
            }
        }
        policy.streams.insert(stream.clone(), parsed);
    }
    for stream in policy.streams.keys() {
        let (schema, key, cursor) = if let Some(def) = crate::streams::find(stream) {
            let key = def.primary_key.iter().map(|k| k.to_string()).collect::<Vec<_>>();
            (def.schema().map(|s| s.arrow_schema()), key, def.cursor_field)
        } else if let Some(t) = crate::webhooks::table(stream) {
            (
                t.schema().map(|s| s.arrow_schema()),
                t.primary_key.iter().map(|k| k.to_string()).collect(),
                None,
            )
        } else {
            return Err(invalid(
                "columns",
                &format!("names `{stream}`, which is not a stream"),
                "use a name from `postmark-elt discover` or a webhook table",
            ));
        };
        let schema = schema.map_err(|e| invalid("columns", &e.to_string(), "report this as a bug in postmark-elt"))?;
        policy
            .check(stream, &schema, &key, cursor)
            .map_err(|problem| invalid("columns", &problem, "fix the rule; `postmark-elt docs` lists every stream's columns"))?;
    }
    Ok(policy)
}

/// An SQL identifier, or the key's default.
pub(super) fn parse_name(map: &BTreeMap<String, Value>, key: &Key) -> Result<String, ConfigError> {
    let fix = format!("use letters, digits and _, not starting with a digit, e.g. \"{}\": \"postmark_shop\"", key.name);
    match map.get(key.name) {
        None | Some(Value::Null) => Ok(key.default.to_string()),
        Some(Value::String(s))
            if s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            Ok(s.clone())
        }
        Some(other) => Err(invalid(key.name, &format!("is {other}, not a plain SQL name"), &fix)),
    }
}

pub(super) fn parse_stats_tags(map: &BTreeMap<String, Value>) -> Result<Option<StatsTags>, ConfigError> {
    let fix = "write \"all\" or a list of tags, e.g. [\"welcome\", \"receipt\"]";
    match map.get("stats_tags") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("all") => Ok(Some(StatsTags::All)),
        Some(Value::Array(items)) => {
            let mut tags = Vec::with_capacity(items.len());
            for item in items {
                match item.as_str() {
                    Some(t) if !t.is_empty() && !tags.iter().any(|x| x == t) => tags.push(t.to_string()),
                    Some(t) if !t.is_empty() => {}
                    _ => return Err(invalid("stats_tags", &format!("holds {item}, which is not a tag"), fix)),
                }
            }
            Ok((!tags.is_empty()).then_some(StatsTags::Listed(tags)))
        }
        Some(other) => Err(invalid("stats_tags", &format!("is {other}"), fix)),
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
