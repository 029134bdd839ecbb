//! One schema vocabulary for every destination.
//!
//! Each stream's schema is a JSON Schema file in `schemas/`, written with Postmark's own
//! (PascalCase) keys so it can be reviewed against the API reference. It is parsed once into
//! [`FieldType`]s, and everything else is derived from those: the Arrow schema used to decode
//! pages (source names), the Arrow schema written to sinks (snake_case names), the Singer JSON
//! Schema, and the DuckDB DDL.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field as ArrowField, Fields, Schema, SchemaRef, TimeUnit};
use serde_json::{Map, Value, json};

/// Name of the column every table gets: when the row was extracted.
pub const SYNCED_AT: &str = "_synced_at";
/// The server a row came from; taken from the record when it has one.
pub const SERVER_ID: &str = "server_id";
/// The message stream a row came from; taken from the record when it has one.
pub const MESSAGE_STREAM: &str = "message_stream";

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema of stream `{stream}` is not valid JSON: {source}")]
    Json { stream: String, source: serde_json::Error },
    #[error("schema of stream `{stream}`, property `{path}`: {problem}")]
    Property { stream: String, path: String, problem: String },
}

/// The logical type of a column. Nullability is carried by [`Field`].
#[derive(Debug, Clone, PartialEq)]
pub enum FieldType {
    String,
    Integer,
    Number,
    Boolean,
    /// An instant; Postmark sends ISO 8601 with an offset, we store UTC microseconds.
    Timestamp,
    /// A calendar date (stats days are US-Eastern dates).
    Date,
    List(Box<FieldType>),
    Struct(Vec<Field>),
    /// An object with free keys and string values (Postmark `Metadata`).
    StringMap,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The key in Postmark's JSON; `None` for columns the connector adds.
    pub source: Option<String>,
    /// The column name: snake_case of the source key.
    pub name: String,
    pub ty: FieldType,
    pub nullable: bool,
    pub description: Option<String>,
}

/// The schema of one stream (one table).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSchema {
    pub stream: String,
    pub fields: Vec<Field>,
}

/// `MessageID` -> `message_id`, `SMTPApiErrors` -> `smtp_api_errors`, `ID` -> `id`.
pub fn snake_case(key: &str) -> String {
    heck::ToSnakeCase::to_snake_case(key)
}

impl StreamSchema {
    /// Parses a JSON Schema file. The connector's own `_synced_at` column is appended.
    pub fn from_json_schema(stream: &str, text: &str) -> Result<Self, SchemaError> {
        let doc: Value = serde_json::from_str(text).map_err(|source| SchemaError::Json {
            stream: stream.to_string(),
            source,
        })?;
        let mut fields = parse_object_fields(stream, "", &doc)?;
        let scope_columns = [
            (SERVER_ID, FieldType::Integer, "The Postmark server the row came from."),
            (
                MESSAGE_STREAM,
                FieldType::String,
                "The message stream the row came from (null where streams do not apply).",
            ),
        ];
        for (name, ty, description) in scope_columns {
            if !fields.iter().any(|f| f.name == name) {
                fields.push(Field {
                    source: None,
                    name: name.to_string(),
                    ty,
                    nullable: true,
                    description: Some(description.to_string()),
                });
            }
        }
        fields.push(Field {
            source: None,
            name: SYNCED_AT.to_string(),
            ty: FieldType::Timestamp,
            nullable: false,
            description: Some("When postmark-elt extracted this row (UTC).".to_string()),
        });
        Ok(StreamSchema {
            stream: stream.to_string(),
            fields,
        })
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// Arrow schema with Postmark's keys, used to decode API pages. Connector columns are absent.
    pub fn source_arrow_schema(&self) -> SchemaRef {
        let fields: Vec<ArrowField> = self
            .fields
            .iter()
            .filter(|f| f.source.is_some())
            .map(|f| arrow_field(f, Naming::Source))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Arrow schema of the rows written to sinks (snake_case names, connector columns last).
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<ArrowField> = self.fields.iter().map(|f| arrow_field(f, Naming::Column)).collect();
        Arc::new(Schema::new(fields))
    }

    /// Singer JSON Schema of the output rows.
    pub fn singer_schema(&self) -> Value {
        json_schema_object(&self.fields)
    }

    /// `(column, DuckDB type)` pairs for `CREATE TABLE`.
    pub fn duckdb_columns(&self) -> Vec<(String, String)> {
        self.fields.iter().map(|f| (f.name.clone(), duckdb_type(&f.ty))).collect()
    }
}

fn type_names(prop: &Value) -> Vec<String> {
    match prop.get("type") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

fn parse_object_fields(stream: &str, path: &str, obj: &Value) -> Result<Vec<Field>, SchemaError> {
    let err = |p: &str, problem: &str| SchemaError::Property {
        stream: stream.to_string(),
        path: p.to_string(),
        problem: problem.to_string(),
    };
    let props = obj
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| err(path, "an object needs `properties`"))?;
    let required: Vec<&str> = obj
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut fields = Vec::with_capacity(props.len());
    for (key, prop) in props {
        let here = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
        let names = type_names(prop);
        let nullable = names.iter().any(|t| t == "null") || !required.contains(&key.as_str());
        let ty = parse_type(stream, &here, prop)?;
        fields.push(Field {
            source: Some(key.clone()),
            name: snake_case(key),
            ty,
            nullable,
            description: prop.get("description").and_then(Value::as_str).map(str::to_string),
        });
    }
    Ok(fields)
}

fn parse_type(stream: &str, path: &str, prop: &Value) -> Result<FieldType, SchemaError> {
    let names = type_names(prop);
    let non_null: Vec<&str> = names.iter().map(String::as_str).filter(|t| *t != "null").collect();
    let problem = |p: String| SchemaError::Property {
        stream: stream.to_string(),
        path: path.to_string(),
        problem: p,
    };
    let [single] = non_null.as_slice() else {
        return Err(problem(format!("expected exactly one non-null type, found {non_null:?}")));
    };
    Ok(match *single {
        "string" => match prop.get("format").and_then(Value::as_str) {
            Some("date-time") => FieldType::Timestamp,
            Some("date") => FieldType::Date,
            _ => FieldType::String,
        },
        "integer" => FieldType::Integer,
        "number" => FieldType::Number,
        "boolean" => FieldType::Boolean,
        "array" => {
            let items = prop.get("items").ok_or_else(|| problem("an array needs `items`".to_string()))?;
            FieldType::List(Box::new(parse_type(stream, &format!("{path}[]"), items)?))
        }
        "object" => {
            if prop.get("properties").is_some() {
                FieldType::Struct(parse_object_fields(stream, path, prop)?)
            } else {
                match prop.get("additionalProperties").map(type_names) {
                    Some(t) if t.iter().any(|n| n == "string") => FieldType::StringMap,
                    _ => {
                        return Err(problem(
                            "an object needs `properties` or `additionalProperties: {\"type\": \"string\"}`".to_string(),
                        ));
                    }
                }
            }
        }
        other => return Err(problem(format!("unsupported type `{other}`"))),
    })
}

#[derive(Clone, Copy)]
enum Naming {
    Source,
    Column,
}

fn arrow_field(f: &Field, naming: Naming) -> ArrowField {
    let name = match (naming, &f.source) {
        (Naming::Source, Some(src)) => src.as_str(),
        _ => f.name.as_str(),
    };
    ArrowField::new(name, arrow_type(&f.ty, naming), f.nullable)
}

fn arrow_type(ty: &FieldType, naming: Naming) -> DataType {
    match ty {
        FieldType::String => DataType::Utf8,
        FieldType::Integer => DataType::Int64,
        FieldType::Number => DataType::Float64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        FieldType::Date => DataType::Date32,
        FieldType::List(item) => DataType::List(Arc::new(ArrowField::new("item", arrow_type(item, naming), true))),
        FieldType::Struct(fields) => DataType::Struct(Fields::from(fields.iter().map(|f| arrow_field(f, naming)).collect::<Vec<_>>())),
        FieldType::StringMap => DataType::Map(
            Arc::new(ArrowField::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    ArrowField::new("keys", DataType::Utf8, false),
                    ArrowField::new("values", DataType::Utf8, true),
                ])),
                false,
            )),
            false,
        ),
    }
}

fn json_schema_object(fields: &[Field]) -> Value {
    let mut props = Map::new();
    let mut required = Vec::new();
    for f in fields {
        props.insert(f.name.clone(), json_schema_type(&f.ty, f.nullable));
        if !f.nullable {
            required.push(Value::String(f.name.clone()));
        }
    }
    json!({"type": "object", "properties": props, "required": required})
}

fn json_schema_type(ty: &FieldType, nullable: bool) -> Value {
    let with_null = |t: &str| {
        if nullable { json!(["null", t]) } else { json!(t) }
    };
    match ty {
        FieldType::String => json!({"type": with_null("string")}),
        FieldType::Integer => json!({"type": with_null("integer")}),
        FieldType::Number => json!({"type": with_null("number")}),
        FieldType::Boolean => json!({"type": with_null("boolean")}),
        FieldType::Timestamp => json!({"type": with_null("string"), "format": "date-time"}),
        FieldType::Date => json!({"type": with_null("string"), "format": "date"}),
        FieldType::List(item) => {
            json!({"type": with_null("array"), "items": json_schema_type(item, true)})
        }
        FieldType::Struct(fields) => {
            let mut obj = json_schema_object(fields);
            obj["type"] = with_null("object");
            obj
        }
        FieldType::StringMap => json!({
            "type": with_null("object"),
            "additionalProperties": {"type": ["null", "string"]}
        }),
    }
}

/// Quotes an identifier for DuckDB (and any SQL engine that uses double quotes).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn duckdb_type(ty: &FieldType) -> String {
    match ty {
        FieldType::String => "VARCHAR".to_string(),
        FieldType::Integer => "BIGINT".to_string(),
        FieldType::Number => "DOUBLE".to_string(),
        FieldType::Boolean => "BOOLEAN".to_string(),
        // UTC wall-clock: TIMESTAMPTZ arithmetic needs DuckDB's ICU extension, which the embedded
        // build lacks (and must not download); TIMESTAMP works in every DuckDB.
        FieldType::Timestamp => "TIMESTAMP".to_string(),
        FieldType::Date => "DATE".to_string(),
        FieldType::List(item) => format!("{}[]", duckdb_type(item)),
        FieldType::Struct(fields) => {
            let inner: Vec<String> = fields.iter().map(|f| format!("{} {}", quote_ident(&f.name), duckdb_type(&f.ty))).collect();
            format!("STRUCT({})", inner.join(", "))
        }
        FieldType::StringMap => "MAP(VARCHAR, VARCHAR)".to_string(),
    }
}
#[cfg(test)]
mod tests;
