//! A string that must never be printed: API tokens.

use std::fmt;

/// An API token. `Debug` and `Display` print a mask, so a token cannot leak through a log line,
/// an error message or a `{:?}` of a config struct. Only [`Secret::expose`] gives the value, and
/// only the HTTP client calls it, to set a request header.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The token itself, for the request header. Never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Neither Debug nor Display shows the token.
    #[test]
    fn formatting_masks_the_value() {
        let s = Secret::new("abc-123-token");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{s:?}").contains("abc-123-token"));
        assert_eq!(s.expose(), "abc-123-token");
    }
}
