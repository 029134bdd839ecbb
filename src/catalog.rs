//! The Singer catalog: what `discover` prints and what `sync --catalog` reads to select streams.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::schema::SchemaError;
use crate::streams::{STREAMS, StreamDef};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog {path}: {source}; check the path passed to --catalog")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("catalog {path} is not valid JSON ({source}); regenerate it with `postmark-elt discover`")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("catalog {path} has no `streams` list; regenerate it with `postmark-elt discover`")]
    Shape { path: PathBuf },
    #[error("catalog {path} names unknown stream(s) {names}; known streams: {known}. Remove them or regenerate the catalog with `postmark-elt discover`")]
    UnknownStreams {
        path: PathBuf,
        names: String,
        known: String,
    },
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

fn stream_entry(def: &StreamDef) -> Result<Value, SchemaError> {
    let schema = def.schema()?;
    let singer = schema.singer_schema();
    let method = if def.is_incremental() { "INCREMENTAL" } else { "FULL_TABLE" };
    let key = def.replication_key();
    let mut stream_metadata = json!({
        "selected": def.default_selected,
        "inclusion": "available",
        "replication-method": method,
        "forced-replication-method": method,
        "table-key-properties": def.primary_key,
    });
    if let Some(key) = key.filter(|k| schema.field(k).is_some()) {
        stream_metadata["replication-key"] = json!(key);
        stream_metadata["valid-replication-keys"] = json!([key]);
    }
    let mut metadata = vec![json!({"breadcrumb": [], "metadata": stream_metadata})];
    for field in &schema.fields {
        let automatic = def.primary_key.contains(&field.name.as_str()) || Some(field.name.as_str()) == key;
        metadata.push(json!({
            "breadcrumb": ["properties", field.name],
            "metadata": {"inclusion": if automatic { "automatic" } else { "available" }}
        }));
    }
    let mut entry = json!({
        "tap_stream_id": def.name,
        "stream": def.name,
        "description": def.description,
        "schema": singer,
        "key_properties": def.primary_key,
        "replication_method": method,
        "metadata": metadata,
    });
    if let Some(key) = key.filter(|k| schema.field(k).is_some()) {
        entry["replication_key"] = json!(key);
    }
    Ok(entry)
}

/// The full catalog; streams that are on by default are selected.
pub fn discover() -> Result<Value, SchemaError> {
    let streams = STREAMS.iter().map(stream_entry).collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "streams": streams }))
}

fn is_selected(entry: &Value) -> bool {
    let from_metadata = entry["metadata"].as_array().and_then(|items| {
        items
            .iter()
            .find(|m| m["breadcrumb"].as_array().is_some_and(Vec::is_empty))
            .and_then(|m| m["metadata"]["selected"].as_bool())
    });
    from_metadata.or_else(|| entry["selected"].as_bool()).unwrap_or(false)
}

/// Streams named on the command line (`--streams a,b`), in the connector's order.
pub fn named_streams(names: &[String]) -> Result<Vec<&'static StreamDef>, CatalogError> {
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| !STREAMS.iter().any(|d| d.name == n.trim()))
        .map(|n| format!("`{}`", n.trim()))
        .collect();
    if !unknown.is_empty() {
        return Err(CatalogError::UnknownStreams {
            path: PathBuf::from("--streams"),
            names: unknown.join(", "),
            known: STREAMS.iter().map(|d| d.name).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(STREAMS.iter().filter(|d| names.iter().any(|n| n.trim() == d.name)).collect())
}

/// The streams a catalog file selects, in the connector's order.
pub fn selected_streams(path: &Path) -> Result<Vec<&'static StreamDef>, CatalogError> {
    let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let doc: Value = serde_json::from_str(&text).map_err(|source| CatalogError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let entries = doc["streams"].as_array().ok_or_else(|| CatalogError::Shape {
        path: path.to_path_buf(),
    })?;
    let mut unknown = Vec::new();
    let mut selected = Vec::new();
    for entry in entries {
        let name = entry["tap_stream_id"]
            .as_str()
            .or_else(|| entry["stream"].as_str())
            .unwrap_or_default();
        if !STREAMS.iter().any(|d| d.name == name) {
            unknown.push(format!("`{name}`"));
        } else if is_selected(entry) {
            selected.push(name.to_string());
        }
    }
    if !unknown.is_empty() {
        return Err(CatalogError::UnknownStreams {
            path: path.to_path_buf(),
            names: unknown.join(", "),
            known: STREAMS.iter().map(|d| d.name).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(STREAMS.iter().filter(|d| selected.iter().any(|s| s == d.name)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The catalog.json shipped in the repository is exactly what `discover` prints.
    #[test]
    fn shipped_catalog_matches_discover() {
        let shipped: Value = serde_json::from_str(include_str!("../catalog.json")).unwrap();
        assert_eq!(shipped, discover().unwrap(), "regenerate with: postmark-elt discover --config ... > catalog.json");
    }

    fn selected_names(path: &Path, catalog: &Value) -> Vec<&'static str> {
        std::fs::write(path, catalog.to_string()).unwrap();
        selected_streams(path).unwrap().iter().map(|d| d.name).collect()
    }

    /// Selection follows Singer metadata; unknown streams are refused by name.
    #[test]
    fn selection_and_unknown_streams() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        let mut cat = discover().unwrap();
        let defaults = selected_names(&p, &cat);
        assert!(defaults.contains(&"messages_outbound") && !defaults.contains(&"message_events"));
        for entry in cat["streams"].as_array_mut().unwrap() {
            let on = entry["stream"] == "bounces" || entry["stream"] == "message_events";
            entry["metadata"][0]["metadata"]["selected"] = json!(on);
        }
        assert_eq!(selected_names(&p, &cat), vec!["bounces", "message_events"]);
        std::fs::write(&p, r#"{"streams":[{"tap_stream_id":"nope","selected":true}]}"#).unwrap();
        let e = selected_streams(&p).unwrap_err().to_string();
        assert!(e.contains("`nope`") && e.contains("messages_outbound"), "{e}");
    }
}
