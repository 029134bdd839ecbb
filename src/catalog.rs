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
    let mut metadata = vec![json!({
        "breadcrumb": [],
        "metadata": {
            "selected": true,
            "inclusion": "available",
            "replication-method": "INCREMENTAL",
            "forced-replication-method": "INCREMENTAL",
            "replication-key": def.cursor_field(),
            "valid-replication-keys": [def.cursor_field()],
            "table-key-properties": def.primary_key,
        }
    })];
    for field in &schema.fields {
        let automatic = def.primary_key.contains(&field.name.as_str()) || field.name == def.cursor_field();
        metadata.push(json!({
            "breadcrumb": ["properties", field.name],
            "metadata": {"inclusion": if automatic { "automatic" } else { "available" }}
        }));
    }
    Ok(json!({
        "tap_stream_id": def.name,
        "stream": def.name,
        "description": def.description,
        "schema": singer,
        "key_properties": def.primary_key,
        "replication_method": "INCREMENTAL",
        "replication_key": def.cursor_field(),
        "metadata": metadata,
    }))
}

/// The full catalog, every stream selected.
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

    /// Selection follows Singer metadata; unknown streams are refused by name.
    #[test]
    fn selection_and_unknown_streams() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.json");
        let mut cat = discover().unwrap();
        cat["streams"][0]["metadata"][0]["metadata"]["selected"] = json!(false);
        std::fs::write(&p, cat.to_string()).unwrap();
        assert!(selected_streams(&p).unwrap().is_empty());
        cat["streams"][0]["metadata"][0]["metadata"]["selected"] = json!(true);
        std::fs::write(&p, cat.to_string()).unwrap();
        assert_eq!(selected_streams(&p).unwrap()[0].name, "messages_outbound");
        std::fs::write(&p, r#"{"streams":[{"tap_stream_id":"nope","selected":true}]}"#).unwrap();
        let e = selected_streams(&p).unwrap_err().to_string();
        assert!(e.contains("`nope`") && e.contains("messages_outbound"), "{e}");
    }
}
