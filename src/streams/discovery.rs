//! Which calls a stream is made of: the servers to sync (the token's own, or those the account
//! lists), and each server's partitions (message streams, inbound statuses, or one call).
//! Servers and message streams are listed once per run, whichever stream asks first.

use std::collections::HashMap;

use serde::Deserialize;

use crate::client::{Auth, BodyError, PostmarkClient};
use crate::config::{Config, ServerSelection};
use crate::secret::Secret;
use crate::streams::error::SyncError;
use crate::streams::{MAX_PAGE_SIZE, MAX_REACH, Partition, StreamDef};

/// Partition label of streams that are not split by message stream.
pub const NO_PARTITION: &str = "default";

#[derive(Debug, Clone, Deserialize)]
struct MessageStreamItem {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "MessageStreamType")]
    kind: String,
}

#[derive(Deserialize)]
struct MessageStreamList {
    #[serde(rename = "MessageStreams")]
    message_streams: Vec<MessageStreamItem>,
}

#[derive(Deserialize)]
struct ServerItem {
    #[serde(rename = "ID")]
    id: i64,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "ApiTokens", default)]
    api_tokens: Vec<String>,
}

#[derive(Deserialize)]
struct ServerList {
    #[serde(rename = "TotalCount")]
    total: u64,
    #[serde(rename = "Servers")]
    servers: Vec<ServerItem>,
}

/// A server to sync and the token that reads it.
pub struct ServerScope {
    pub id: Option<i64>,
    pub name: String,
    pub(crate) token: Secret,
    /// Reached through the account API: bookmarks are keyed by server too.
    pub(crate) via_account: bool,
}

impl ServerScope {
    /// The scope of account-level streams (servers, domains, senders): no server.
    pub fn account() -> Self {
        ServerScope {
            id: None,
            name: "account".to_string(),
            token: Secret::new(""),
            via_account: false,
        }
    }
}

/// One call family within a server: a message stream, a status, or nothing.
#[derive(Debug, Clone)]
pub struct PartitionValue {
    /// Message stream ID for the scope column.
    pub message_stream: Option<String>,
    /// Query parameter to send.
    pub param: Option<(&'static str, String)>,
    /// Replaces `{stream}` in the path.
    pub path_stream: Option<String>,
    pub label: String,
}

pub struct Discovery<'a> {
    client: &'a PostmarkClient,
    config: &'a Config,
    /// Listed once per run; a failed listing is remembered too (`Err`), so the streams running
    /// beside the one that tried do not each retry it for the whole retry budget.
    servers: tokio::sync::OnceCell<Listed<ServerScope>>,
    /// Keyed by the token that reads them (each server has its own).
    message_streams: tokio::sync::Mutex<HashMap<String, Listed<MessageStreamItem>>>,
}

/// A listing's items, or `Err` when it failed (reported by the caller that tried).
type Listed<T> = Result<Vec<T>, ()>;

impl<'a> Discovery<'a> {
    pub fn new(client: &'a PostmarkClient, config: &'a Config) -> Self {
        Discovery {
            client,
            config,
            servers: tokio::sync::OnceCell::new(),
            message_streams: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The servers to sync: the token's own server, or those `servers` picks via the account.
    pub async fn servers(&self) -> Result<&[ServerScope], SyncError> {
        let mut failure = None;
        let listed = self
            .servers
            .get_or_init(|| async {
                self.list_servers().await.map_err(|e| {
                    failure = Some(e);
                })
            })
            .await;
        match (listed, failure) {
            (Ok(servers), _) => Ok(servers.as_slice()),
            (Err(()), Some(e)) => Err(e),
            (Err(()), None) => Err(SyncError::ListingFailedEarlier { what: "servers" }),
        }
    }

    async fn list_servers(&self) -> Result<Vec<ServerScope>, SyncError> {
        match (&self.config.servers, &self.config.server_token) {
            (Some(selection), _) => self.account_servers(selection).await,
            (None, Some(token)) => {
                #[derive(Deserialize)]
                struct Server {
                    #[serde(rename = "ID")]
                    id: i64,
                    #[serde(rename = "Name")]
                    name: String,
                }
                let server: Server = self
                    .client
                    .get(Auth::Server(token), "/server", &[], |b| {
                        serde_json::from_slice(b).map_err(|e| BodyError::Malformed(e.to_string()))
                    })
                    .await
                    .map_err(|source| SyncError::Listing {
                        what: "the server (GET /server)",
                        source,
                    })?;
                Ok(vec![ServerScope {
                    id: Some(server.id),
                    name: server.name,
                    token: token.clone(),
                    via_account: false,
                }])
            }
            (None, None) => Ok(Vec::new()),
        }
    }

    async fn account_servers(&self, selection: &ServerSelection) -> Result<Vec<ServerScope>, SyncError> {
        let mut all: Vec<ServerItem> = Vec::new();
        loop {
            let offset = all.len() as u64;
            let page: ServerList = self
                .client
                .get(
                    Auth::Account,
                    "/servers",
                    &[("count", MAX_PAGE_SIZE.to_string()), ("offset", offset.to_string())],
                    |b| serde_json::from_slice(b).map_err(|e| BodyError::Malformed(e.to_string())),
                )
                .await
                .map_err(|source| SyncError::Listing {
                    what: "servers (GET /servers)",
                    source,
                })?;
            let got = page.servers.len();
            all.extend(page.servers);
            if got == 0 || all.len() as u64 >= page.total || all.len() as u64 + MAX_PAGE_SIZE > MAX_REACH {
                break;
            }
        }
        let wanted: Vec<ServerItem> = match selection {
            ServerSelection::All => all,
            ServerSelection::Listed(names) => pick_servers(all, names)?,
        };
        wanted
            .into_iter()
            .map(|s| match s.api_tokens.into_iter().next() {
                Some(t) => Ok(ServerScope {
                    id: Some(s.id),
                    name: s.name,
                    token: Secret::new(t),
                    via_account: true,
                }),
                None => Err(SyncError::ServerWithoutToken(s.name)),
            })
            .collect()
    }

    /// The servers to sync, for `def`. Read through the server token, a stream split by message
    /// stream lists the token's message streams at the same time: that listing needs the token,
    /// not the server's ID, so a run's first two requests go out together instead of one after
    /// the other (at 100 ms a request, 0.1 s of every slot but one).
    pub async fn servers_for(&self, def: &StreamDef) -> Result<&[ServerScope], SyncError> {
        let token = match (&self.config.servers, &self.config.server_token, def.partition) {
            (None, Some(token), Partition::MessageStreams { .. }) => token,
            _ => return self.servers().await,
        };
        let (servers, listed) = tokio::join!(self.servers(), self.list_message_streams(token));
        let servers = servers?;
        listed?;
        Ok(servers)
    }

    /// Lists the message streams `token` reads, once per run (locked while listing, so that
    /// streams starting together ask once).
    async fn list_message_streams(&self, token: &Secret) -> Result<(), SyncError> {
        let mut message_streams = self.message_streams.lock().await;
        let std::collections::hash_map::Entry::Vacant(entry) = message_streams.entry(token.expose().to_string()) else {
            return Ok(());
        };
        let listed = self
            .client
            .get(
                Auth::Server(token),
                "/message-streams",
                &[("MessageStreamType", "All".to_string()), ("IncludeArchivedStreams", "true".to_string())],
                |body| serde_json::from_slice::<MessageStreamList>(body).map_err(|e| BodyError::Malformed(e.to_string())),
            )
            .await
            .map_err(|source| SyncError::Listing {
                what: "message streams (GET /message-streams)",
                source,
            });
        match listed {
            Ok(list) => {
                entry.insert(Ok(list.message_streams));
                Ok(())
            }
            Err(e) => {
                entry.insert(Err(()));
                Err(e)
            }
        }
    }

    /// The calls `def` is made of on `server`.
    pub async fn partitions(&self, def: &StreamDef, server: &ServerScope) -> Result<Vec<PartitionValue>, SyncError> {
        let (types, param) = match def.partition {
            Partition::None => {
                return Ok(vec![PartitionValue {
                    message_stream: None,
                    param: None,
                    path_stream: None,
                    label: NO_PARTITION.to_string(),
                }]);
            }
            Partition::Values { param, values } => {
                return Ok(values
                    .iter()
                    .map(|v| PartitionValue {
                        message_stream: None,
                        param: Some((param, v.to_string())),
                        path_stream: None,
                        label: v.to_string(),
                    })
                    .collect());
            }
            Partition::MessageStreams { types, param } => (types, param),
        };
        self.list_message_streams(&server.token).await?;
        let message_streams = self.message_streams.lock().await;
        let all = match message_streams.get(server.token.expose()) {
            Some(Ok(all)) => all.as_slice(),
            Some(Err(())) => return Err(SyncError::ListingFailedEarlier { what: "message streams" }),
            None => &[],
        };
        if let Some(wanted) = &self.config.message_streams {
            // Through the account, servers differ; a listed stream must exist on at least the
            // token's own server.
            if !server.via_account {
                for w in wanted {
                    if !all.iter().any(|s| s.id.eq_ignore_ascii_case(w)) {
                        return Err(SyncError::UnknownMessageStream {
                            wanted: w.clone(),
                            server: server.name.clone(),
                            available: all.iter().map(|s| s.id.as_str()).collect::<Vec<_>>().join(", "),
                        });
                    }
                }
            }
        }
        Ok(all
            .iter()
            .filter(|s| types.contains(&s.kind.as_str()))
            .filter(|s| {
                self.config
                    .message_streams
                    .as_ref()
                    .is_none_or(|w| w.iter().any(|x| x.eq_ignore_ascii_case(&s.id)))
            })
            .map(|s| PartitionValue {
                message_stream: Some(s.id.clone()),
                param: param.map(|p| (p, s.id.clone())),
                path_stream: param.is_none().then(|| s.id.clone()),
                label: s.id.clone(),
            })
            .collect())
    }
}

/// The servers `names` picks (by ID or name, case-insensitive), in the order named.
fn pick_servers(mut all: Vec<ServerItem>, names: &[String]) -> Result<Vec<ServerItem>, SyncError> {
    let matches = |s: &ServerItem, name: &str| s.id.to_string() == name || s.name.eq_ignore_ascii_case(name);
    let mut picked: Vec<ServerItem> = Vec::new();
    for name in names {
        match all.iter().position(|s| matches(s, name)) {
            Some(p) => picked.push(all.swap_remove(p)),
            None if picked.iter().any(|s| matches(s, name)) => {}
            None => {
                return Err(SyncError::UnknownServer {
                    wanted: format!("`{name}`"),
                    available: all
                        .iter()
                        .chain(picked.iter())
                        .map(|s| format!("{} ({})", s.name, s.id))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
    }
    Ok(picked)
}
