//! The webhook receiver: Postmark POSTs every event; each is made durable in an append-only
//! spool (group-committed with fsync) before the 200, and merged into the destination in
//! batches whenever the destination is free (DuckDB allows one writer per file, and `sync` may
//! hold it). Duplicate deliveries are merged on each table's key.

pub mod connections;
pub mod install;
pub mod merge;
pub mod server;
pub mod spool;

use serde_json::Value;

use crate::schema::{SchemaError, StreamSchema};

/// One table of webhook events.
#[derive(Debug)]
pub struct WebhookTable {
    pub name: &'static str,
    /// Output columns that identify an event (Postmark retries deliver it again).
    pub primary_key: &'static [&'static str],
    /// The source keys that must be present for the event to be stored.
    pub required: &'static [&'static str],
    pub schema_json: &'static str,
}

macro_rules! schema_file {
    ($name:literal) => {
        include_str!(concat!("../../schemas/", $name, ".json"))
    };
}

pub static TABLES: &[WebhookTable] = &[
    WebhookTable {
        name: "webhook_deliveries",
        primary_key: &["message_id", "recipient", "delivered_at"],
        required: &["MessageID", "Recipient", "DeliveredAt"],
        schema_json: schema_file!("webhook_deliveries"),
    },
    WebhookTable {
        name: "webhook_bounces",
        primary_key: &["id"],
        required: &["ID"],
        schema_json: schema_file!("webhook_bounces"),
    },
    WebhookTable {
        name: "webhook_spam_complaints",
        primary_key: &["id"],
        required: &["ID"],
        schema_json: schema_file!("webhook_spam_complaints"),
    },
    WebhookTable {
        name: "webhook_opens",
        primary_key: &["message_id", "recipient", "received_at"],
        required: &["MessageID", "Recipient", "ReceivedAt"],
        schema_json: schema_file!("webhook_opens"),
    },
    WebhookTable {
        name: "webhook_clicks",
        primary_key: &["message_id", "recipient", "original_link", "received_at"],
        required: &["MessageID", "Recipient", "OriginalLink", "ReceivedAt"],
        schema_json: schema_file!("webhook_clicks"),
    },
    WebhookTable {
        name: "webhook_subscription_changes",
        primary_key: &["message_stream", "recipient", "changed_at"],
        required: &["MessageStream", "Recipient", "ChangedAt"],
        schema_json: schema_file!("webhook_subscription_changes"),
    },
    WebhookTable {
        name: "webhook_inbound",
        primary_key: &["message_id"],
        required: &["MessageID"],
        schema_json: schema_file!("webhook_inbound"),
    },
    WebhookTable {
        name: "webhook_smtp_api_errors",
        primary_key: &["id"],
        required: &["ID"],
        schema_json: schema_file!("webhook_smtp_api_errors"),
    },
];

impl WebhookTable {
    pub fn schema(&self) -> Result<StreamSchema, SchemaError> {
        StreamSchema::from_json_schema(self.name, self.schema_json)
    }
}

pub fn table(name: &str) -> Option<&'static WebhookTable> {
    TABLES.iter().find(|t| t.name == name)
}

/// Which table an event belongs to, from its `RecordType` (inbound has none). The error says
/// what is wrong, without echoing the body.
pub fn classify(event: &Value) -> Result<&'static WebhookTable, String> {
    let Value::Object(map) = event else {
        return Err("the body is not a JSON object".to_string());
    };
    let record_type = map.get("RecordType").and_then(Value::as_str);
    let name = match record_type {
        Some("Bounce") if map.get("Type").and_then(Value::as_str) == Some("SMTPApiError") => "webhook_smtp_api_errors",
        Some("Bounce") => "webhook_bounces",
        Some("SpamComplaint") => "webhook_spam_complaints",
        Some("Delivery") => "webhook_deliveries",
        Some("Open") => "webhook_opens",
        Some("Click") => "webhook_clicks",
        Some("SubscriptionChange") => "webhook_subscription_changes",
        Some(other) => return Err(format!("unknown RecordType `{}`", other.chars().take(40).collect::<String>())),
        None if map.contains_key("FromFull") || map.contains_key("OriginalRecipient") => "webhook_inbound",
        None => return Err("no RecordType, and not an inbound message".to_string()),
    };
    let table = table(name).ok_or_else(|| format!("no table {name}"))?;
    for key in table.required {
        if map.get(*key).is_none_or(Value::is_null) {
            return Err(format!("{} event without `{key}`", record_type.unwrap_or("Inbound")));
        }
    }
    Ok(table)
}

/// Drops what is never stored and can be large: inbound attachment contents and raw email.
pub fn slim(event: &mut Value) {
    if let Some(map) = event.as_object_mut() {
        map.remove("RawEmail");
        if let Some(Value::Array(attachments)) = map.get_mut("Attachments") {
            for a in attachments.iter_mut() {
                if let Some(a) = a.as_object_mut() {
                    a.remove("Content");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every table's schema parses and holds its key.
    #[test]
    fn tables_are_consistent() {
        for t in TABLES {
            let schema = t.schema().unwrap_or_else(|e| panic!("{}: {e}", t.name));
            for k in t.primary_key {
                assert!(schema.field(k).is_some(), "{}: no key {k}", t.name);
            }
            assert!(schema.field("webhook_received_at").is_some());
        }
    }

    /// RecordType routes events; SMTP API errors are bounces with their own type.
    #[test]
    fn classification() {
        let c = |v: Value| classify(&v).map(|t| t.name);
        assert_eq!(c(json!({"RecordType": "Bounce", "ID": 1, "Type": "HardBounce"})), Ok("webhook_bounces"));
        assert_eq!(
            c(json!({"RecordType": "Bounce", "ID": 1, "Type": "SMTPApiError"})),
            Ok("webhook_smtp_api_errors")
        );
        assert_eq!(c(json!({"MessageID": "m", "FromFull": {}})), Ok("webhook_inbound"));
        assert!(c(json!({"RecordType": "Open", "MessageID": "m"})).unwrap_err().contains("`Recipient`"));
        assert!(c(json!({"RecordType": "Nope"})).unwrap_err().contains("unknown RecordType"));
        assert!(c(json!([1])).is_err());
    }
}
