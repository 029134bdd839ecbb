//! Sync state: one bookmark per stream and partition (message stream).
//!
//! The format is Singer-compatible (`{"bookmarks": {...}}`) so Singer runners can store it as is.
//! A bookmark only moves when the window it covers has been committed by the sink.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

pub const STATE_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}; check the path passed to --state")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(
        "state file {path} is not a postmark-elt state ({source}); fix it, or remove --state to use the state stored with the destination (see state.example.json)"
    )]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error(
        "state file {path} holds {found}, not a postmark-elt state; pass a file like state.example.json (`{{\"bookmarks\": ...}}`), a runner's `{{\"singer_state\": ...}}` or `{{\"completed\": {{\"singer_state\": ...}}}}`, a Singer STATE message, or `{{}}` for a first run"
    )]
    Shape { path: PathBuf, found: String },
    #[error("stored state is corrupt ({0}); delete it to start again from start_date")]
    Stored(serde_json::Error),
    #[error("state version {found} is newer than this postmark-elt understands ({STATE_VERSION}); upgrade postmark-elt")]
    Version { found: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bookmark {
    /// The column the bookmark follows, e.g. `received_at`.
    pub replication_key: String,
    /// Everything up to this instant has been loaded (windows are closed at or before it).
    #[serde(with = "rfc3339")]
    pub replication_key_value: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default = "default_version")]
    pub version: u32,
    /// stream -> partition (message stream ID) -> bookmark.
    #[serde(default)]
    pub bookmarks: BTreeMap<String, BTreeMap<String, Bookmark>>,
    /// Tags seen in loaded messages_outbound rows: the tags `stats_tags: "all"` reads stats of.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub tags: std::collections::BTreeSet<String>,
}

fn default_version() -> u32 {
    STATE_VERSION
}

impl Default for State {
    fn default() -> Self {
        State {
            version: STATE_VERSION,
            bookmarks: BTreeMap::new(),
            tags: Default::default(),
        }
    }
}

impl State {
    pub fn bookmark(&self, stream: &str, partition: &str) -> Option<&Bookmark> {
        self.bookmarks.get(stream)?.get(partition)
    }

    /// Moves a bookmark forward; it never moves back.
    pub fn advance(&mut self, stream: &str, partition: &str, key: &str, value: DateTime<Utc>) {
        let slot = self.bookmarks.entry(stream.to_string()).or_default().entry(partition.to_string());
        match slot {
            std::collections::btree_map::Entry::Occupied(mut o) => {
                let b = o.get_mut();
                if value > b.replication_key_value {
                    b.replication_key_value = value;
                }
                b.replication_key = key.to_string();
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(Bookmark {
                    replication_key: key.to_string(),
                    replication_key_value: value,
                });
            }
        }
    }

    pub fn to_json(&self) -> String {
        // A map of strings and dates always serialises.
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }

    pub fn from_stored(text: &str) -> Result<Self, StateError> {
        let state: State = serde_json::from_str(text).map_err(StateError::Stored)?;
        state.check_version()
    }

    pub fn load_file(path: &Path) -> Result<Self, StateError> {
        let text = std::fs::read_to_string(path).map_err(|source| StateError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // Singer runners pass `{}` for a first run.
        if text.trim().is_empty() {
            return Ok(State::default());
        }
        let parse_error = |source| StateError::Parse {
            path: path.to_path_buf(),
            source,
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(parse_error)?;
        let inner = unwrap_runner_state(&value).ok_or_else(|| StateError::Shape {
            path: path.to_path_buf(),
            found: describe(&value),
        })?;
        let state: State = serde_json::from_value(inner.clone()).map_err(parse_error)?;
        state.check_version()
    }

    fn check_version(self) -> Result<Self, StateError> {
        if self.version > STATE_VERSION {
            return Err(StateError::Version { found: self.version });
        }
        Ok(self)
    }
}

/// The state inside what runners store: our own `{"bookmarks": ...}` (Singer's
/// `currently_syncing` beside it is fine), `{}` for a first run, Meltano's `singer_state` and
/// `completed.singer_state` wrappers, or a Singer STATE message (`{"type": "STATE", "value": ...}`).
/// Anything else (a list, an unrelated object) is `None`: restarting from `start_date` because
/// of a wrong file would reload everything silently.
fn unwrap_runner_state(value: &serde_json::Value) -> Option<&serde_json::Value> {
    let object = value.as_object()?;
    let ours = object.get("bookmarks").is_some_and(serde_json::Value::is_object) || object.get("version").is_some_and(serde_json::Value::is_u64);
    if object.is_empty() || ours {
        return Some(value);
    }
    if object.get("type").and_then(serde_json::Value::as_str) == Some("STATE") {
        return object.get("value").and_then(unwrap_runner_state);
    }
    let wrapped = object
        .get("singer_state")
        .or_else(|| object.get("completed").and_then(|c| c.get("singer_state")))?;
    unwrap_runner_state(wrapped)
}

/// A short description of a JSON value for an error: its type, and an object's keys.
fn describe(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Object(o) => format!("an object with keys {}", o.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")),
        serde_json::Value::Array(_) => "a JSON list".to_string(),
        other => format!("the value {other}"),
    }
}

mod rfc3339 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| serde::de::Error::custom(format!("`{raw}` is not an RFC 3339 date-time: {e}")))
    }
}

#[cfg(test)]
mod tests {
    /// Our state, the wrappers runners store it in, and a first run's `{}` load; a list, an
    /// unrelated object or a wrapper around garbage are refused, naming what was found.
    #[test]
    fn state_files_in_runner_wrappers() {
        let dir = tempfile::tempdir().expect("dir");
        let ours = r#"{"bookmarks": {"m": {"p": {"replication_key": "received_at", "replication_key_value": "2026-11-01T00:00:00Z"}}}}"#;
        let load = |text: &str| {
            let path = dir.path().join("state.json");
            std::fs::write(&path, text).expect("write");
            State::load_file(&path)
        };
        for text in [
            ours.to_string(),
            format!(r#"{{"singer_state": {ours}}}"#),
            format!(r#"{{"completed": {{"singer_state": {ours}}}, "partial": {{}}}}"#),
            format!(r#"{{"type": "STATE", "value": {ours}}}"#),
        ] {
            let state = load(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert!(state.bookmark("m", "p").is_some(), "{text}");
        }
        assert_eq!(load("{}").ok(), Some(State::default()));
        for (text, named) in [
            ("[]", "a JSON list"),
            (r#"{"cursor": 5}"#, "`cursor`"),
            (r#"{"singer_state": [1]}"#, "`singer_state`"),
        ] {
            match load(text) {
                Err(e @ StateError::Shape { .. }) => assert!(e.to_string().contains(named), "{e}"),
                other => panic!("{text} gave {other:?}"),
            }
        }
    }

    use super::*;

    /// The example shipped in the repository parses and round-trips.
    #[test]
    fn example_state_round_trips() {
        let text = include_str!("../state.example.json");
        let s = State::from_stored(text).unwrap();
        let b = s.bookmark("messages_outbound", "outbound").unwrap();
        assert_eq!(b.replication_key, "received_at");
        let again = State::from_stored(&s.to_json()).unwrap();
        assert_eq!(s, again);
    }

    /// A bookmark never moves backwards.
    #[test]
    fn advance_is_monotonic() {
        let mut s = State::default();
        let t1 = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let t0 = DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z").unwrap().with_timezone(&Utc);
        s.advance("m", "p", "received_at", t1);
        s.advance("m", "p", "received_at", t0);
        assert_eq!(s.bookmark("m", "p").unwrap().replication_key_value, t1);
    }

    /// Broken state files are refused with a message that says what to do.
    #[test]
    fn corrupt_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        std::fs::write(
            &p,
            "{\"bookmarks\": {\"x\": {\"y\": {\"replication_key\": \"r\", \"replication_key_value\": \"nope\"}}}}",
        )
        .unwrap();
        let e = State::load_file(&p).unwrap_err().to_string();
        assert!(e.contains("not a postmark-elt state") && e.contains("nope"), "{e}");
        std::fs::write(&p, "{\"version\": 99}").unwrap();
        assert!(State::load_file(&p).unwrap_err().to_string().contains("upgrade"));
        std::fs::write(&p, "{}").unwrap();
        assert_eq!(State::load_file(&p).unwrap(), State::default());
    }
}
