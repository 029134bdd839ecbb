//! Field selection from the catalog, as Meltano's `select: ["!stream.field"]` writes it:
//! deselected columns stay out of every destination (the DuckDB table, the Parquet files, the
//! Singer SCHEMA and RECORDs); the primary key and the replication key stay even when
//! deselected, as the Singer spec says of automatic fields.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::*;
use serde_json::{Value, json};

const LEFT_OUT: [&str; 3] = ["to", "recipients", "from"];

/// The shipped catalog with messages_outbound alone selected, and `to`, `recipients`, `from`,
/// its key and its cursor deselected.
fn catalog_leaving_out(env: &Env) -> String {
    let mut catalog: Value = serde_json::from_str(include_str!("../catalog.json")).expect("catalog.json");
    for entry in catalog["streams"].as_array_mut().expect("streams") {
        let this = entry["stream"] == "messages_outbound";
        for item in entry["metadata"].as_array_mut().expect("metadata") {
            let crumb = item["breadcrumb"].clone();
            if crumb == json!([]) {
                item["metadata"]["selected"] = json!(this);
            } else if this
                && ["to", "recipients", "from", "message_id", "received_at"]
                    .iter()
                    .any(|f| crumb == json!(["properties", f]))
            {
                item["metadata"]["selected"] = json!(false);
            }
        }
    }
    let path = env.path("catalog.json");
    std::fs::write(&path, catalog.to_string()).expect("write catalog");
    path.to_string_lossy().into_owned()
}

fn parquet_columns(dir: &Path) -> HashSet<String> {
    let mut columns = HashSet::new();
    for path in parquet_files(dir) {
        let file = std::fs::File::open(&path).expect("open parquet");
        let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet footer");
        columns.extend(builder.schema().fields().iter().map(|f| f.name().clone()));
    }
    columns
}

fn assert_kept_and_left_out(columns: &HashSet<String>, destination: &str) {
    for field in LEFT_OUT {
        assert!(!columns.contains(field), "{destination} holds deselected `{field}`: {columns:?}");
    }
    for field in ["message_id", "received_at", "subject", "tag"] {
        assert!(columns.contains(field), "{destination} lacks `{field}`: {columns:?}");
    }
}

#[test]
fn deselected_fields_stay_out_of_every_destination() {
    let env = Env::new(yesterday_messages(800));
    let cfg = env.config(two_days_ago(), json!({}));
    let cfg = cfg.to_str().expect("path");
    let catalog = catalog_leaving_out(&env);

    assert_ok(&env.run(&["sync", "--config", cfg, "--catalog", &catalog]));
    let db = env.path("postmark.duckdb");
    let columns: HashSet<String> = rows(&db, "SELECT column_name FROM information_schema.columns WHERE table_name = 'messages_outbound'");
    assert_kept_and_left_out(&columns, "the DuckDB table");
    let (count, distinct, ids) = duckdb_ids(&db);
    assert_eq!((count, distinct, ids), (800, 800, env.truth()));
    let tables = rows(&db, "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'messages_%'");
    assert_eq!(tables, HashSet::from(["messages_outbound".to_string()]), "only the selected stream");

    assert_ok(&env.run(&["sync", "--config", cfg, "--catalog", &catalog, "--dest", "parquet", "--path", "lake"]));
    assert_kept_and_left_out(&parquet_columns(&env.path("lake/messages_outbound")), "the Parquet files");
    assert_eq!(parquet_strings(&env.path("lake"), "messages_outbound", "message_id").len(), 800);

    let out = env.run(&["--config", cfg, "--catalog", &catalog]);
    assert_ok(&out);
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let schema = lines.iter().find(|m| m["type"] == "SCHEMA").expect("a SCHEMA");
    let properties: HashSet<String> = schema["schema"]["properties"].as_object().expect("properties").keys().cloned().collect();
    assert_kept_and_left_out(&properties, "the Singer SCHEMA");
    let records: Vec<&Value> = lines.iter().filter(|m| m["type"] == "RECORD").collect();
    assert_eq!(records.len(), 800);
    for record in records {
        let keys: HashSet<String> = record["record"].as_object().expect("record").keys().cloned().collect();
        assert_kept_and_left_out(&keys, "a Singer RECORD");
    }
}
