//! The AirbyteMessages this source sends, and the two inputs it reads: the configured catalog
//! (streams, sync modes, selected columns) and the per-stream state.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::catalog::{CatalogError, Selection};
use crate::error::{Error, ErrorKind};
use crate::schema::SchemaError;
use crate::sinks::projection::Deselected;
use crate::state::{State, StateError};
use crate::streams::{STREAMS, StreamDef};

pub const DOCUMENTATION_URL: &str = "https://github.com/postmark-elt/postmark-elt#readme";

pub fn spec() -> Value {
    json!({"type": "SPEC", "spec": {
        "documentationUrl": DOCUMENTATION_URL,
        "connectionSpecification": crate::config::spec(),
    }})
}

pub fn connection_status(failure: Option<&Error>) -> Value {
    match failure {
        None => json!({"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED"}}),
        Some(e) => json!({"type": "CONNECTION_STATUS", "connectionStatus": {"status": "FAILED", "message": e.to_string()}}),
    }
}

fn stream_entry(def: &StreamDef) -> Result<Value, SchemaError> {
    let schema = def.schema()?;
    let cursor = def.replication_key().filter(|k| schema.field(k).is_some());
    let mut entry = json!({
        "name": def.name,
        "json_schema": schema.singer_schema(),
        "supported_sync_modes": if def.is_incremental() { json!(["full_refresh", "incremental"]) } else { json!(["full_refresh"]) },
        "source_defined_primary_key": def.primary_key.iter().map(|k| [k]).collect::<Vec<_>>(),
        "is_resumable": def.is_incremental(),
    });
    if def.is_incremental() {
        entry["source_defined_cursor"] = json!(true);
        if let Some(cursor) = cursor {
            entry["default_cursor_field"] = json!([cursor]);
        }
    }
    Ok(entry)
}

pub fn catalog() -> Result<Value, SchemaError> {
    let streams = STREAMS.iter().map(stream_entry).collect::<Result<Vec<_>, _>>()?;
    Ok(json!({"type": "CATALOG", "catalog": {"streams": streams}}))
}

pub fn stream_status(stream: &str, status: &str) -> Value {
    json!({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": super::now_ms(), "stream_status": {
        "stream_descriptor": {"name": stream},
        "status": status,
    }}})
}

/// The error trace of a failed run; `failure_type` says whether the user can fix it.
pub fn error_trace(e: &Error) -> Value {
    let failure_type = match e.kind() {
        ErrorKind::Config | ErrorKind::Auth | ErrorKind::Input => "config_error",
        ErrorKind::Api | ErrorKind::Interrupted => "transient_error",
        _ => "system_error",
    };
    json!({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": super::now_ms(), "error": {
        "message": e.to_string(),
        "internal_message": format!("exit code {}", e.kind().exit_code()),
        "failure_type": failure_type,
    }}})
}

/// The streams of a ConfiguredAirbyteCatalog; columns missing from a stream's `json_schema`
/// are left out (Airbyte's column selection), `full_refresh` ones read from `start_date`.
pub fn configured_catalog(path: &Path) -> Result<Selection, CatalogError> {
    let doc = crate::catalog::read_json(path)?;
    let entries = doc["streams"].as_array().ok_or_else(|| CatalogError::Shape { path: path.to_path_buf() })?;
    let unknown = |name: &str| CatalogError::unknown_streams(path, format!("`{name}`"));
    let mut names = BTreeSet::new();
    let (mut deselected, mut full_refresh) = (Deselected::new(), BTreeSet::new());
    for entry in entries {
        let name = entry["stream"]["name"]
            .as_str()
            .ok_or_else(|| CatalogError::Shape { path: path.to_path_buf() })?;
        let def = STREAMS.iter().find(|d| d.name == name).ok_or_else(|| unknown(name))?;
        names.insert(def.name);
        if entry["sync_mode"] != "incremental" {
            full_refresh.insert(def.name.to_string());
        }
        if let Some(properties) = entry["stream"]["json_schema"]["properties"].as_object() {
            let left_out = def
                .schema()?
                .fields
                .iter()
                .map(|f| f.name.clone())
                .filter(|f| !properties.contains_key(f))
                .collect();
            deselected.insert(def.name.to_string(), left_out);
        }
    }
    Ok(Selection {
        streams: STREAMS.iter().filter(|d| names.contains(d.name)).collect(),
        deselected,
        full_refresh,
    })
}

/// The state Airbyte hands back: a list of per-stream states (`{"type": "STREAM", ...}`), or
/// `{}`/`[]` on a first run; a LEGACY state holds our whole state.
pub fn read_state(path: &Path) -> Result<State, StateError> {
    let text = std::fs::read_to_string(path).map_err(|source| StateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let shape = |found: &str| StateError::Shape {
        path: PathBuf::from(path),
        found: found.to_string(),
    };
    let parse = |source| StateError::Parse {
        path: path.to_path_buf(),
        source,
    };
    let value: Value = serde_json::from_str(&text).map_err(parse)?;
    let messages = match &value {
        Value::Array(items) => items.clone(),
        Value::Object(map) if map.is_empty() => Vec::new(),
        Value::Object(map) if map.contains_key("bookmarks") => return serde_json::from_value(value).map_err(parse),
        _ => return Err(shape("an object that is not an Airbyte state list")),
    };
    let mut state = State::default();
    for message in messages {
        match message["type"].as_str() {
            Some("STREAM") => {
                let name = message["stream"]["stream_descriptor"]["name"]
                    .as_str()
                    .ok_or_else(|| shape("a STREAM state without its stream's name"))?;
                let inner: State = serde_json::from_value(message["stream"]["stream_state"].clone()).map_err(parse)?;
                if let Some(bookmarks) = inner.bookmarks.get(name) {
                    state.bookmarks.insert(name.to_string(), bookmarks.clone());
                }
                state.tags.extend(inner.tags);
            }
            Some("LEGACY") => state = serde_json::from_value(message["data"].clone()).map_err(parse)?,
            _ => return Err(shape("a state message that is neither STREAM nor LEGACY")),
        }
    }
    Ok(state)
}

/// The STATE of one stream after a commit: its bookmarks, in the shape [`read_state`] reads.
pub fn stream_state(stream: &str, state: &State, records: u64) -> Value {
    let bookmarks = state.bookmarks.get(stream).cloned().unwrap_or_default();
    let mut stream_state = json!({"version": state.version, "bookmarks": {stream: bookmarks}});
    // The tags seen travel with the stream they are seen in.
    if stream == crate::streams::TAGGED_STREAM && !state.tags.is_empty() {
        stream_state["tags"] = json!(state.tags);
    }
    json!({"type": "STATE", "state": {
        "type": "STREAM",
        "stream": {
            "stream_descriptor": {"name": stream},
            "stream_state": stream_state,
        },
        "sourceStats": {"recordCount": records as f64},
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state this source sent reads back as the same bookmarks; first-run shapes read as
    /// empty; other shapes are refused.
    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("state.json");
        let mut state = State::default();
        let at = chrono::DateTime::from_timestamp(1_780_000_000, 0).expect("time");
        state.advance("messages_outbound", "outbound", "received_at", at);
        state.advance("bounces", "outbound", "bounced_at", at);
        let messages: Vec<Value> = ["messages_outbound", "bounces"]
            .iter()
            .map(|s| stream_state(s, &state, 1)["state"].clone())
            .collect();
        std::fs::write(&path, Value::Array(messages).to_string()).expect("write");
        assert_eq!(read_state(&path).expect("read"), state);
        for empty in ["[]", "{}"] {
            std::fs::write(&path, empty).expect("write");
            assert_eq!(read_state(&path).expect("read"), State::default());
        }
        std::fs::write(&path, r#"[{"type": "GLOBAL", "global": {}}]"#).expect("write");
        assert!(matches!(read_state(&path), Err(StateError::Shape { .. })));
    }
}
