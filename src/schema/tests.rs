use super::*;

/// Postmark's key spellings become the column names analysts expect.
#[test]
fn snake_case_follows_postmark_keys() {
    for (key, want) in [
        ("MessageID", "message_id"),
        ("ReceivedAt", "received_at"),
        ("ID", "id"),
        ("SMTPApiErrors", "smtp_api_errors"),
        ("CountryISOCode", "country_iso_code"),
        ("TemplateId", "template_id"),
        ("SPFVerified", "spf_verified"),
        ("Email", "email"),
        ("Apple Mail", "apple_mail"),
        ("already_snake", "already_snake"),
    ] {
        assert_eq!(snake_case(key), want, "{key}");
    }
}

const SAMPLE: &str = r#"{
    "type": "object",
    "required": ["MessageID"],
    "properties": {
        "MessageID": {"type": "string"},
        "ReceivedAt": {"type": ["null", "string"], "format": "date-time"},
        "To": {"type": ["null", "array"], "items": {"type": "object",
            "properties": {"Email": {"type": ["null","string"]}, "Name": {"type": ["null","string"]}}}},
        "Metadata": {"type": ["null", "object"], "additionalProperties": {"type": "string"}},
        "TrackOpens": {"type": ["null", "boolean"]}
    }
}"#;

/// Every mapping is derived from the one parsed vocabulary.
#[test]
fn one_vocabulary_feeds_arrow_singer_and_duckdb() {
    let s = StreamSchema::from_json_schema("t", SAMPLE).unwrap();
    let arrow = s.arrow_schema();
    assert_eq!(
        arrow.field_with_name("received_at").unwrap().data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert!(!arrow.field_with_name("message_id").unwrap().is_nullable());
    assert!(arrow.field_with_name(SYNCED_AT).is_ok());
    let src = s.source_arrow_schema();
    assert!(src.field_with_name("MessageID").is_ok());
    assert!(src.field_with_name(SYNCED_AT).is_err());
    let DataType::List(item) = src.field_with_name("To").unwrap().data_type() else {
        panic!("To is a list")
    };
    assert!(matches!(item.data_type(), DataType::Struct(f) if f[0].name() == "Email"));
    let ddl = s.duckdb_columns();
    assert!(ddl.contains(&("to".to_string(), "STRUCT(\"email\" VARCHAR, \"name\" VARCHAR)[]".to_string())));
    assert!(ddl.contains(&("metadata".to_string(), "MAP(VARCHAR, VARCHAR)".to_string())));
    let singer = s.singer_schema();
    assert_eq!(singer["properties"]["received_at"]["format"], "date-time");
    assert_eq!(singer["properties"]["track_opens"]["type"], json!(["null", "boolean"]));
    assert_eq!(singer["required"], json!(["message_id", SYNCED_AT]));
    assert!(arrow.field_with_name(SERVER_ID).is_ok() && arrow.field_with_name(MESSAGE_STREAM).is_ok());
}

/// A schema file with an unsupported construct is rejected with its path.
#[test]
fn bad_schema_names_the_property() {
    let bad = r#"{"type":"object","properties":{"X":{"type":["string","integer"]}}}"#;
    let e = StreamSchema::from_json_schema("t", bad).unwrap_err().to_string();
    assert!(e.contains("property `X`"), "{e}");
}
