//! Where a stream's read is: the declaration, the server and partition, and what follows from
//! them (the token, the path, the query, the bookmark key, the place named in errors).

use crate::client::{Auth, TokenKind};
use crate::streams::StreamDef;
use crate::streams::discovery::{PartitionValue, ServerScope};
use crate::streams::extract::{PageDecoder, Scope};
use crate::streams::window::Window;

pub struct Ctx<'c> {
    pub def: &'static StreamDef,
    pub decoder: &'c PageDecoder,
    pub server: &'c ServerScope,
    pub partition: &'c PartitionValue,
    pub scope: Scope,
    pub state_key: String,
}

impl<'c> Ctx<'c> {
    pub fn new(def: &'static StreamDef, decoder: &'c PageDecoder, server: &'c ServerScope, partition: &'c PartitionValue) -> Self {
        Ctx {
            def,
            decoder,
            server,
            partition,
            scope: Scope {
                server_id: server.id,
                message_stream: partition.message_stream.clone(),
            },
            // Bookmarks of servers reached through the account are kept per server.
            state_key: match server.id {
                Some(id) if server.via_account => format!("{id}/{}", partition.label),
                _ => partition.label.clone(),
            },
        }
    }

    /// The same place, read as another stream (a per-record stream's parent).
    pub fn as_stream<'d>(&'d self, def: &'static StreamDef, decoder: &'d PageDecoder) -> Ctx<'d> {
        Ctx {
            def,
            decoder,
            server: self.server,
            partition: self.partition,
            scope: self.scope.clone(),
            state_key: self.state_key.clone(),
        }
    }

    pub fn auth(&self) -> Auth<'_> {
        match self.def.token {
            TokenKind::Server => Auth::Server(&self.server.token),
            TokenKind::Account => Auth::Account,
        }
    }

    /// The place, for errors and logs: server (through the account), partition, window.
    pub fn at(&self, window: Option<Window>) -> String {
        let mut at = String::new();
        if self.server.via_account {
            at.push_str(&format!("server `{}`, ", self.server.name));
        }
        match (&self.partition.message_stream, &self.partition.param) {
            (Some(ms), _) => at.push_str(&format!("message stream `{ms}`")),
            (None, Some((k, v))) => at.push_str(&format!("{k} `{v}`")),
            (None, None) => at.push_str("all rows"),
        }
        if let Some(w) = window {
            let (from, to) = w.query_bounds();
            at.push_str(&format!(", window {from}..{to} US-Eastern"));
        }
        at
    }

    /// The declaration's path, with `{stream}` and `{id}` filled in.
    pub fn path(&self, id: Option<&str>) -> String {
        fill_path(self.def.path, self.partition, id)
    }

    /// `extra`, the partition's parameter and the declaration's fixed parameters.
    pub fn query(&self, extra: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
        let mut q = extra;
        if let Some((k, v)) = &self.partition.param {
            q.push((k, v.clone()));
        }
        q.extend(self.def.params.iter().map(|(k, v)| (*k, v.to_string())));
        q
    }
}

/// `path` with `{stream}` and `{id}` replaced by URL-encoded values.
pub fn fill_path(path: &str, partition: &PartitionValue, id: Option<&str>) -> String {
    let mut path = path.to_string();
    if let Some(s) = &partition.path_stream {
        path = path.replace("{stream}", &urlencode(s));
    }
    if let Some(id) = id {
        path = path.replace("{id}", &urlencode(id));
    }
    path
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
