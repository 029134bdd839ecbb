//! From a response body to a typed Arrow batch: the records are decoded straight from the raw
//! JSON text into Arrow builders (arrow-json), then given the output (snake_case) names.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray, make_array};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::json::ReaderBuilder;
use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::client::BodyError;
use crate::schema::{MESSAGE_STREAM, SERVER_ID, SYNCED_AT, StreamSchema};

/// (stream, field) pairs already warned about in this process.
static WARNED: std::sync::LazyLock<std::sync::Mutex<std::collections::HashSet<(String, String)>>> = std::sync::LazyLock::new(Default::default);

/// Where rows come from: filled into `server_id` and `message_stream` when the record lacks them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    pub server_id: Option<i64>,
    pub message_stream: Option<String>,
}

/// Where the records are in a response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Records {
    /// A list under this key (`{"TotalCount": n, "Messages": [...]}`).
    Under(&'static str),
    /// The body is one record (`GET /server`).
    Whole,
}

/// One decoded page.
#[derive(Debug)]
pub struct Page {
    /// `TotalCount` of the query, when the endpoint reports one.
    pub total: Option<u64>,
    pub batch: RecordBatch,
}

/// Decodes pages of one stream. Cheap to share between concurrent requests.
#[derive(Debug, Clone)]
pub struct PageDecoder {
    stream: String,
    records: Records,
    source_schema: SchemaRef,
    output_schema: SchemaRef,
    /// Per output column: decoded from the response (true) or added by the connector.
    from_source: Vec<bool>,
    synced_at: i64,
}

impl PageDecoder {
    pub fn new(schema: &StreamSchema, records: Records, synced_at: DateTime<Utc>) -> Self {
        PageDecoder {
            stream: schema.stream.clone(),
            records,
            source_schema: schema.source_arrow_schema(),
            output_schema: schema.arrow_schema(),
            from_source: schema.fields.iter().map(|f| f.source.is_some()).collect(),
            synced_at: synced_at.timestamp_micros(),
        }
    }

    pub fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    /// Parses a body. A body that is not the expected JSON envelope is `Malformed` (the request
    /// is retried: it is usually a truncated response); a record whose values do not fit the
    /// schema is `Data` (retrying cannot help).
    pub fn decode(&self, body: &[u8], scope: &Scope) -> Result<Page, BodyError> {
        let key = match self.records {
            Records::Whole => {
                let raw: &RawValue = serde_json::from_slice(body).map_err(|e| BodyError::Malformed(format!("not JSON: {e}")))?;
                let batch = self.decode_records(&[raw], scope)?;
                return Ok(Page { total: Some(1), batch });
            }
            Records::Under(key) => key,
        };
        let envelope: HashMap<String, &RawValue> = serde_json::from_slice(body).map_err(|e| BodyError::Malformed(format!("not a JSON object: {e}")))?;
        let total = match envelope.get("TotalCount") {
            Some(raw) => Some(serde_json::from_str::<u64>(raw.get()).map_err(|e| BodyError::Malformed(format!("TotalCount is not a count: {e}")))?),
            None => None,
        };
        let records: Vec<&RawValue> = match envelope.get(key) {
            Some(raw) if raw.get() == "null" => Vec::new(),
            Some(raw) => serde_json::from_str(raw.get()).map_err(|e| BodyError::Malformed(format!("`{key}` is not a list: {e}")))?,
            None => return Err(BodyError::Malformed(format!("the response has no `{key}` list"))),
        };
        // Envelope values the schema asks for (`InactiveMails` of /deliverystats) go into every row.
        let shared: Vec<(&String, &&RawValue)> = envelope
            .iter()
            .filter(|(k, _)| k.as_str() != key && self.source_schema.field_with_name(k).is_ok())
            .collect();
        let batch = if shared.is_empty() {
            self.decode_records(&records, scope)?
        } else {
            let mut values: Vec<serde_json::Value> = Vec::with_capacity(records.len());
            for raw in &records {
                let mut v: serde_json::Value = serde_json::from_str(raw.get()).map_err(|e| BodyError::Malformed(e.to_string()))?;
                if let serde_json::Value::Object(m) = &mut v {
                    for (k, raw) in &shared {
                        let value = serde_json::from_str(raw.get()).map_err(|e| BodyError::Malformed(e.to_string()))?;
                        m.entry((*k).clone()).or_insert(value);
                    }
                }
                values.push(v);
            }
            self.decode_values(&values, scope)?
        };
        Ok(Page { total, batch })
    }

    /// Decodes records built by the connector (reshaped stats, flattened events).
    pub fn decode_values(&self, records: &[serde_json::Value], scope: &Scope) -> Result<RecordBatch, BodyError> {
        let texts: Vec<String> = records.iter().map(serde_json::Value::to_string).collect();
        let raws: Vec<&RawValue> = texts
            .iter()
            .map(|t| serde_json::from_str::<&RawValue>(t))
            .collect::<Result<_, _>>()
            .map_err(|e| BodyError::Data(e.to_string()))?;
        self.decode_records(&raws, scope)
    }

    /// Decodes already-split records (also used for endpoints that answer a bare list).
    pub fn decode_records(&self, records: &[&RawValue], scope: &Scope) -> Result<RecordBatch, BodyError> {
        if let Some(first) = records.first() {
            self.warn_new_fields(first);
        }
        let mut decoder = ReaderBuilder::new(self.source_schema.clone())
            .with_batch_size(records.len().max(1))
            .with_strict_mode(false)
            .build_decoder()
            .map_err(|e| BodyError::Data(e.to_string()))?;
        for (i, raw) in records.iter().enumerate() {
            decoder
                .decode(raw.get().as_bytes())
                .map_err(|e| BodyError::Data(format!("stream `{}`, record {} ({}): {e}", self.stream, i, record_id(raw))))?;
        }
        let decoded = match decoder.flush() {
            Ok(batch) => batch.unwrap_or_else(|| RecordBatch::new_empty(self.source_schema.clone())),
            Err(e) => return Err(BodyError::Data(self.locate_bad_record(records, &e.to_string()))),
        };
        self.to_output(decoded, scope)
    }

    /// Postmark adds fields over time. They are ignored (the schema decides the columns), with one
    /// warning per stream and field and run, so the schema can be extended. Only the first
    /// record of a page is looked at: it keeps the check off the hot path.
    fn warn_new_fields(&self, record: &RawValue) {
        let Ok(keys) = serde_json::from_str::<HashMap<&str, serde::de::IgnoredAny>>(record.get()) else {
            return;
        };
        for key in keys.keys() {
            if self.source_schema.field_with_name(key).is_err() {
                let first_time = WARNED.lock().map(|mut w| w.insert((self.stream.clone(), (*key).to_string()))).unwrap_or(false);
                if first_time {
                    tracing::warn!(stream = %self.stream, field = %key, "The API sent a field the schema does not know; it is not loaded (add it to schemas/{}.json to keep it).", self.stream);
                }
            }
        }
    }

    /// Type errors surface when a batch is finished; decoding records one by one (only on this
    /// failure path) finds the record to name in the error.
    fn locate_bad_record(&self, records: &[&RawValue], error: &str) -> String {
        for (i, raw) in records.iter().enumerate() {
            let single = ReaderBuilder::new(self.source_schema.clone())
                .with_strict_mode(false)
                .build_decoder()
                .and_then(|mut d| d.decode(raw.get().as_bytes()).and_then(|_| d.flush()));
            if let Err(e) = single {
                return format!("stream `{}`, record {i} ({}): {e}", self.stream, record_id(raw));
            }
        }
        format!("stream `{}`: {error}", self.stream)
    }

    /// Renames to output names (a zero-copy retyping), fills the scope columns and appends
    /// `_synced_at`.
    fn to_output(&self, decoded: RecordBatch, scope: &Scope) -> Result<RecordBatch, BodyError> {
        let rows = decoded.num_rows();
        let mut decoded_columns = decoded.columns().iter();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.output_schema.fields().len());
        for (field, &from_source) in self.output_schema.fields().iter().zip(&self.from_source) {
            let column = if from_source {
                let array = decoded_columns
                    .next()
                    .ok_or_else(|| BodyError::Data(format!("stream `{}`: column count mismatch", self.stream)))?;
                retype(array, field.data_type())
            } else {
                arrow::array::new_null_array(field.data_type(), rows)
            };
            let column = match field.name().as_str() {
                SYNCED_AT => Arc::new(TimestampMicrosecondArray::from(vec![self.synced_at; rows]).with_timezone("UTC")) as ArrayRef,
                SERVER_ID => fill_int(&column, scope.server_id),
                MESSAGE_STREAM => fill_str(&column, scope.message_stream.as_deref()),
                _ => column,
            };
            columns.push(column);
        }
        RecordBatch::try_new(self.output_schema.clone(), columns).map_err(|e| BodyError::Data(format!("stream `{}`: {e}", self.stream)))
    }
}

/// Nulls replaced by `value` (a record without the key takes it from the scope).
fn fill_int(column: &ArrayRef, value: Option<i64>) -> ArrayRef {
    match (value, column.as_any().downcast_ref::<Int64Array>()) {
        (Some(v), Some(a)) if a.null_count() > 0 => Arc::new(a.iter().map(|x| Some(x.unwrap_or(v))).collect::<Int64Array>()),
        _ => column.clone(),
    }
}

fn fill_str(column: &ArrayRef, value: Option<&str>) -> ArrayRef {
    match (value, column.as_any().downcast_ref::<StringArray>()) {
        (Some(v), Some(a)) if a.null_count() > 0 => Arc::new(a.iter().map(|x| Some(x.unwrap_or(v))).collect::<StringArray>()),
        _ => column.clone(),
    }
}

/// The same data under another type that differs only in nested field names.
fn retype(array: &ArrayRef, to: &DataType) -> ArrayRef {
    if array.data_type() == to {
        return array.clone();
    }
    let data = array.to_data();
    let children = match (data.data_type(), to) {
        (DataType::List(_), DataType::List(item)) | (DataType::Map(_, _), DataType::Map(item, _)) => data
            .child_data()
            .iter()
            .map(|c| retype(&make_array(c.clone()), item.data_type()).to_data())
            .collect(),
        (DataType::Struct(_), DataType::Struct(fields)) => data
            .child_data()
            .iter()
            .zip(fields.iter())
            .map(|(c, f)| retype(&make_array(c.clone()), f.data_type()).to_data())
            .collect(),
        _ => data.child_data().to_vec(),
    };
    let rebuilt = data.into_builder().data_type(to.clone()).child_data(children).build();
    match rebuilt {
        Ok(d) => make_array(d),
        // The schemas are built from one FieldType tree, so the layouts always agree.
        Err(_) => array.clone(),
    }
}

/// A short identification of a record for error messages: its ID or MessageID.
fn record_id(raw: &RawValue) -> String {
    #[derive(serde::Deserialize)]
    struct Ids {
        #[serde(rename = "MessageID")]
        message_id: Option<String>,
        #[serde(rename = "ID")]
        id: Option<serde_json::Value>,
    }
    match serde_json::from_str::<Ids>(raw.get()) {
        Ok(Ids { message_id: Some(m), .. }) => format!("MessageID {m}"),
        Ok(Ids { id: Some(i), .. }) => format!("ID {i}"),
        _ => "no ID".to_string(),
    }
}

/// The string values of a column, for key bookkeeping.
pub fn string_column<'a>(batch: &'a RecordBatch, name: &str) -> Option<&'a StringArray> {
    batch.column_by_name(name)?.as_any().downcast_ref::<StringArray>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BooleanArray, ListArray, MapArray, StructArray};

    fn decoder() -> PageDecoder {
        let schema = StreamSchema::from_json_schema("messages_outbound", include_str!("../../schemas/messages_outbound.json")).unwrap();
        PageDecoder::new(&schema, Records::Under("Messages"), Utc::now())
    }

    const BODY: &str = r#"{"TotalCount": 2, "Messages": [
      {"Tag": "", "MessageID": "a", "MessageStream": "outbound",
       "To": [{"Email": "ana@example.net", "Name": "Ana"}], "Cc": [], "Bcc": [],
       "Recipients": ["ana@example.net"], "ReceivedAt": "2025-06-03T09:14:07.5512093-04:00",
       "From": "x@y", "Subject": "", "Attachments": [], "Status": "Sent", "TrackOpens": false,
       "TrackLinks": "None", "Metadata": {"order_id": "5521"}, "Sandboxed": false, "NewField": 1},
      {"MessageID": "b", "ReceivedAt": "2025-06-03T13:00:00Z", "To": [{"Email": "li@example.org", "Name": ""}]}
    ]}"#;

    /// Offsets become UTC, falsy values survive, absent keys are null, nested names are snake_case.
    #[test]
    fn decodes_a_page_faithfully() {
        let page = decoder()
            .decode(
                BODY.as_bytes(),
                &Scope {
                    server_id: Some(7),
                    message_stream: Some("broadcast".into()),
                },
            )
            .unwrap();
        assert_eq!(page.total, Some(2));
        let b = &page.batch;
        assert_eq!(b.num_rows(), 2);
        let ts = b
            .column_by_name("received_at")
            .unwrap()
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        // 09:14:07.551209 at -04:00 is 13:14:07.551209Z (the 7th digit is below a microsecond).
        assert_eq!(
            ts.value(0),
            DateTime::parse_from_rfc3339("2025-06-03T13:14:07.551209Z").unwrap().timestamp_micros()
        );
        let tag = string_column(b, "tag").unwrap();
        assert_eq!(tag.value(0), "");
        assert!(tag.is_null(1));
        let track = b.column_by_name("track_opens").unwrap().as_any().downcast_ref::<BooleanArray>().unwrap();
        assert!(!track.value(0) && track.is_valid(0));
        let to = b.column_by_name("to").unwrap().as_any().downcast_ref::<ListArray>().unwrap();
        let first = to.value(0);
        let first = first.as_any().downcast_ref::<StructArray>().unwrap();
        assert_eq!(first.column_names(), vec!["email", "name"]);
        let md = b.column_by_name("metadata").unwrap().as_any().downcast_ref::<MapArray>().unwrap();
        assert_eq!(md.value(0).len(), 1);
        assert!(b.column_by_name(SYNCED_AT).is_some());
        // Scope columns: the record's own value wins, a missing one is filled.
        let ms = string_column(b, MESSAGE_STREAM).unwrap();
        assert_eq!((ms.value(0), ms.value(1)), ("outbound", "broadcast"));
        let sid = b.column_by_name(SERVER_ID).unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(sid.value(1), 7);
    }

    /// A wrong type is a data error naming the stream and the record; a cut body is malformed.
    #[test]
    fn errors_say_what_and_where() {
        let bad = r#"{"TotalCount":1,"Messages":[{"MessageID":"m-1","ReceivedAt":"2025-06-03T13:00:00Z","TrackOpens":"yes"}]}"#;
        match decoder().decode(bad.as_bytes(), &Scope::default()) {
            Err(BodyError::Data(m)) => assert!(m.contains("messages_outbound") && m.contains("m-1"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decoder().decode(&BODY.as_bytes()[..100], &Scope::default()),
            Err(BodyError::Malformed(_))
        ));
        assert!(matches!(
            decoder().decode(b"{\"TotalCount\":0}", &Scope::default()),
            Err(BodyError::Malformed(_))
        ));
    }
}
