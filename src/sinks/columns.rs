//! Keeping personal data out of the warehouse: the config's `columns` rules, per stream, drop
//! columns and hash text values (salted SHA-256, lower-case hex) wherever they sit, inside
//! lists and structs too (`to.email` is the `email` of every struct in the list `to`). A
//! nested field in `drop` becomes null and keeps its type. Values are trimmed and lower-cased
//! before hashing, so that an address hashes alike in every table whatever its case, and hashed
//! columns still join.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, ListArray, StringArray, StructArray, new_null_array};
use arrow::datatypes::{DataType, Schema};
use arrow::error::ArrowError;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// One stream's rules, as the config gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnRules {
    pub drop: BTreeSet<String>,
    pub hash: BTreeSet<String>,
}

/// Every stream's rules and the salt of the hashes.
#[derive(Debug, Clone, Default)]
pub struct ColumnPolicy {
    pub streams: BTreeMap<String, ColumnRules>,
    pub salt: Option<Secret>,
}

/// What is done to the values at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Hash,
    Null,
}

/// `to.email`, `to[].email` -> ["to", "email"].
pub fn path_of(rule: &str) -> Vec<String> {
    rule.split('.').map(|p| p.trim_end_matches("[]").to_string()).collect()
}

/// The type at `path` below `ty`, looking through lists.
fn resolve<'a>(ty: &'a DataType, path: &[String]) -> Result<&'a DataType, String> {
    match (ty, path.split_first()) {
        (DataType::List(item), _) => resolve(item.data_type(), path),
        (_, None) => Ok(ty),
        (DataType::Struct(fields), Some((name, rest))) => match fields.find(name) {
            Some((_, f)) => resolve(f.data_type(), rest),
            None => Err(format!(
                "has no field `{name}` (its fields: {})",
                fields.iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
            )),
        },
        (_, Some((name, _))) => Err(format!("has no field `{name}`: it is not a struct")),
    }
}

impl ColumnPolicy {
    /// Checks a stream's rules against its schema: every path exists, hashed paths hold text,
    /// and no rule drops a column every destination keeps (`projection::always_kept`), which
    /// would otherwise stay silently.
    pub fn check(&self, stream: &str, schema: &Schema, primary_key: &[String], cursor: Option<&str>) -> Result<(), String> {
        let Some(rules) = self.streams.get(stream) else {
            return Ok(());
        };
        for (rule, action) in rules.drop.iter().map(|r| (r, Action::Null)).chain(rules.hash.iter().map(|r| (r, Action::Hash))) {
            let path = path_of(rule);
            let column = schema
                .field_with_name(&path[0])
                .map_err(|_| format!("`{stream}` has no column `{}`; `postmark-elt docs` lists the columns", path[0]))?;
            let ty = resolve(column.data_type(), &path[1..]).map_err(|e| format!("`{stream}.{}` {e}", path[0]))?;
            if action == Action::Null && crate::sinks::projection::always_kept(&path[0], primary_key, cursor) {
                return Err(format!(
                    "`{stream}.{rule}` is a key, cursor or server_id column and cannot be dropped; hash it instead"
                ));
            }
            if action == Action::Hash && *ty != DataType::Utf8 {
                return Err(format!("`{stream}.{rule}` is {ty}, not text; only text can be hashed (drop it instead)"));
            }
            if action == Action::Hash && self.salt.is_none() {
                return Err("hashing needs a salt: set `column_hash_salt` in the config, or POSTMARK_ELT_HASH_SALT".to_string());
            }
        }
        Ok(())
    }

    /// The top-level columns `stream` leaves out.
    pub fn dropped_columns(&self, stream: &str) -> BTreeSet<String> {
        self.streams
            .get(stream)
            .map(|r| r.drop.iter().filter(|d| !d.contains('.')).cloned().collect())
            .unwrap_or_default()
    }

    /// The paths of `stream` whose values change: nested drops and hashes.
    pub fn rewrites(&self, stream: &str) -> Vec<(Vec<String>, Action)> {
        let Some(rules) = self.streams.get(stream) else {
            return Vec::new();
        };
        let nested = rules.drop.iter().filter(|d| d.contains('.')).map(|d| (path_of(d), Action::Null));
        nested.chain(rules.hash.iter().map(|h| (path_of(h), Action::Hash))).collect()
    }

    /// The hash of one value.
    pub fn hash(&self, value: &str) -> String {
        let mut digest = Sha256::new();
        digest.update(self.salt.as_ref().map_or("", Secret::expose).as_bytes());
        digest.update([0u8]);
        digest.update(value.trim().to_lowercase().as_bytes());
        let mut hex = String::with_capacity(64);
        for b in digest.finalize() {
            let _ = write!(hex, "{b:02x}");
        }
        hex
    }

    /// `array` with `action` applied at `path` below it.
    pub fn rewrite(&self, array: &ArrayRef, path: &[String], action: Action) -> Result<ArrayRef, ArrowError> {
        match (array.data_type(), path.split_first()) {
            (DataType::List(_), _) => {
                let (field, offsets, values, nulls) = array.as_list::<i32>().clone().into_parts();
                let values = self.rewrite(&values, path, action)?;
                Ok(Arc::new(ListArray::try_new(field, offsets, values, nulls)?))
            }
            (_, None) if action == Action::Null => Ok(new_null_array(array.data_type(), array.len())),
            (DataType::Utf8, None) => {
                let text = array.as_string::<i32>();
                Ok(Arc::new(text.iter().map(|v| v.map(|v| self.hash(v))).collect::<StringArray>()))
            }
            (DataType::Struct(_), Some((name, rest))) => {
                let (fields, mut columns, nulls) = array.as_struct().clone().into_parts();
                let Some((i, _)) = fields.find(name) else {
                    return Err(ArrowError::SchemaError(format!("no field {name}")));
                };
                columns[i] = self.rewrite(&columns[i], rest, action)?;
                Ok(Arc::new(StructArray::try_new(fields, columns, nulls)?))
            }
            (ty, _) => Err(ArrowError::SchemaError(format!("cannot rewrite {} in {ty}", path.join(".")))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ColumnPolicy {
        ColumnPolicy {
            streams: BTreeMap::from([(
                "messages_outbound".to_string(),
                ColumnRules {
                    drop: ["subject", "to.name"].map(String::from).into(),
                    hash: ["to[].email", "recipients"].map(String::from).into(),
                },
            )]),
            salt: Some(Secret::new("pepper-pepper-pepper")),
        }
    }

    /// Hashes depend on the salt and not on case or surrounding spaces.
    #[test]
    fn hashes_are_salted_and_case_blind() {
        let p = policy();
        assert_eq!(p.hash("Jane@Example.com "), p.hash("jane@example.com"));
        assert_eq!(p.hash("a").len(), 64);
        let other = ColumnPolicy {
            salt: Some(Secret::new("another-salt-value")),
            ..policy()
        };
        assert_ne!(p.hash("a"), other.hash("a"));
    }

    /// Paths are checked against the stream's schema before anything runs.
    #[test]
    fn rules_are_checked_against_the_schema() {
        let (info, _) = crate::sinks::messages_for_tests();
        let check = |p: &ColumnPolicy| p.check("messages_outbound", &info.arrow, &info.primary_key, info.cursor_field.as_deref());
        assert_eq!(check(&policy()), Ok(()));
        let mut bad = policy();
        bad.streams.get_mut("messages_outbound").map(|r| r.hash.insert("to.mail".to_string()));
        assert!(check(&bad).is_err_and(|e| e.contains("no field `mail`") && e.contains("email")));
        let mut bad = policy();
        bad.streams.get_mut("messages_outbound").map(|r| r.drop.insert("message_id".to_string()));
        assert!(check(&bad).is_err_and(|e| e.contains("hash it instead")));
        let mut bad = policy();
        bad.streams.get_mut("messages_outbound").map(|r| r.drop.insert("server_id".to_string()));
        assert!(check(&bad).is_err_and(|e| e.contains("cannot be dropped")));
        let mut bad = policy();
        bad.streams.get_mut("messages_outbound").map(|r| r.hash.insert("track_opens".to_string()));
        assert!(check(&bad).is_err_and(|e| e.contains("only text")));
        let unsalted = ColumnPolicy { salt: None, ..policy() };
        assert!(check(&unsalted).is_err_and(|e| e.contains("POSTMARK_ELT_HASH_SALT")));
    }
}
