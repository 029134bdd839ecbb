use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Timestamps carry the New York offset of their date and seven fraction digits.
#[test]
fn timestamps_look_like_postmark() {
    assert_eq!(postmark_timestamp(utc("2025-06-03T13:14:07.5512093Z")), "2025-06-03T09:14:07.5512093-04:00");
    assert_eq!(postmark_timestamp(utc("2025-02-03T13:14:07Z")), "2025-02-03T08:14:07.0000000-05:00");
}

/// Date filters are New York wall-clock times, read unfavourably where ambiguous.
#[test]
fn eastern_filters() {
    assert_eq!(parse_eastern("2026-07-01T00:00:00", Bound::From), Some(utc("2026-07-01T04:00:00Z")));
    assert_eq!(parse_eastern("2026-01-01", Bound::To), Some(utc("2026-01-01T05:00:00Z")));
    assert_eq!(parse_eastern("2026-11-01T01:30:00", Bound::From), Some(utc("2026-11-01T06:30:00Z")));
    assert_eq!(parse_eastern("2026-11-01T01:30:00", Bound::To), Some(utc("2026-11-01T05:30:00Z")));
    assert_eq!(parse_eastern("2026-03-08T02:30:00", Bound::From), Some(utc("2026-03-08T07:30:00Z")));
    assert_eq!(parse_eastern("junk", Bound::From), None);
}
