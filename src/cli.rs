//! Command-line interface (clap). Also accepts the Singer tap invocation with no subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::sinks::DestKind;

#[derive(Debug, Parser)]
#[command(
    name = "postmark-elt",
    version,
    about = "Sync Postmark (transactional email) data into DuckDB, Parquet or Singer, completely and incrementally.",
    long_about = "Sync Postmark (transactional email) data into DuckDB, Parquet or Singer, completely and incrementally.\n\n\
        Without a subcommand it behaves as a Singer tap: `postmark-elt --config c.json [--discover] [--catalog cat.json] [--state s.json]`.",
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub singer: SingerArgs,

    /// More log detail (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log lines as text, or as JSON objects for log shippers.
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The Singer tap convention, for Meltano and other Singer runners.
#[derive(Debug, Args)]
pub struct SingerArgs {
    /// Config file (JSON).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the catalog instead of syncing.
    #[arg(long)]
    pub discover: bool,
    /// Catalog selecting the streams to sync.
    #[arg(long, alias = "properties", value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// State from the previous run.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Describe the connector (name, capabilities, settings) as singer-sdk taps do, and exit.
    #[arg(long)]
    pub about: bool,
    /// Format of `--about`.
    #[arg(long, value_enum, default_value = "json", requires = "about")]
    pub format: AboutFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AboutFormat {
    Json,
    Markdown,
}

impl SingerArgs {
    /// Whether any tap argument was given (they cannot go with a subcommand).
    pub fn any(&self) -> bool {
        self.config.is_some() || self.discover || self.catalog.is_some() || self.state.is_some() || self.about
    }
}

/// `--streams` takes the connector's stream names only: a typo is a usage error (exit 2) that
/// lists them.
fn stream_name() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(crate::streams::STREAMS.iter().map(|d| d.name))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the JSON Schema of the config file.
    Spec,
    /// Check the config and the token: calls GET /server.
    Check(ConfigFile),
    /// Print the Singer catalog of every stream.
    Discover(ConfigFile),
    /// Sync the selected streams into the destination.
    Sync(SyncArgs),
    /// Receive Postmark webhooks into the warehouse, and register them with Postmark.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Write a self-contained HTML page of charts (funnel per day, bounce types, opens by
    /// platform and by client) from a synced DuckDB file.
    #[cfg(feature = "duckdb")]
    Report {
        #[command(flatten)]
        db: ReadArgs,
        /// HTML file to write.
        #[arg(long, value_name = "FILE", default_value = "report.html")]
        out: PathBuf,
    },
    /// The Airbyte protocol: one AirbyteMessage per line on stdout (the `source-postmark`
    /// binary is this command, for Airbyte's Docker interface and PyAirbyte).
    #[command(subcommand)]
    Airbyte(AirbyteCommand),
    /// Print the reference of every stream's columns (Markdown; docs/streams.md).
    Docs,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run a SQL query on a synced DuckDB file and print the result as a table.
    #[cfg(feature = "duckdb")]
    Query {
        #[command(flatten)]
        db: ReadArgs,
        /// One SQL statement, e.g. "SELECT count(*) FROM messages_outbound".
        sql: String,
    },
}

/// The config file of the verbs that need nothing else (check, discover; also under `airbyte`).
#[derive(Debug, Args)]
pub struct ConfigFile {
    /// Config file (JSON).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
}

/// The DuckDB file a reader opens (read-only, while syncs may run).
#[derive(Debug, Clone, Args)]
pub struct ReadArgs {
    /// DuckDB file.
    #[arg(long, value_name = "PATH", default_value = "postmark.duckdb")]
    pub path: PathBuf,
    /// The schema the sync wrote (the config's `schema`).
    #[arg(long, value_name = "NAME", default_value = "main")]
    pub schema: String,
    /// How long to wait while a sync commits into the file.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::config::keys::LOCK_TIMEOUT_SECONDS.default_int() as u64)]
    pub lock_timeout_seconds: u64,
}

impl ReadArgs {
    pub fn lock_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.lock_timeout_seconds)
    }
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    /// Config file (JSON).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// Singer catalog selecting streams (default: every stream).
    #[arg(long, alias = "properties", value_name = "FILE")]
    pub catalog: Option<PathBuf>,
    /// State file to start from, instead of the state saved with the destination.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Destination.
    #[arg(long, value_enum, default_value = "duckdb")]
    pub dest: DestKind,
    /// DuckDB file or Parquet directory (default: postmark.duckdb, or postmark-parquet/ for
    /// Parquet); for Parquet also an object-store URL: s3://bucket/prefix, gs://, az://, file://.
    #[arg(long, value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Only these streams (comma-separated), instead of a catalog.
    #[arg(long, value_delimiter = ',', conflicts_with = "catalog", value_name = "NAMES", value_parser = stream_name())]
    pub streams: Option<Vec<String>>,
    /// Also write the run summary as JSON to this file (written on failure too), for
    /// orchestrators to alert on.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// Show what would be read (ranges and first requests per stream and partition) without
    /// reading or writing anything; only the server and its message streams are fetched.
    #[arg(long)]
    pub dry_run: bool,
    /// Progress as a live line when stderr is a terminal (set by main from -q and --log-format).
    #[arg(skip = true)]
    pub live_progress: bool,
    /// The summary as JSON log lines instead of a table (set from --log-format).
    #[arg(skip = false)]
    pub json_logs: bool,
    /// Streams and columns chosen by a caller (Airbyte's configured catalog) instead of
    /// `--catalog`/`--streams`.
    #[arg(skip)]
    pub selection: Option<crate::catalog::Selection>,
    /// State handed over by a caller (Airbyte's per-stream state) instead of `--state`.
    #[arg(skip)]
    pub state_given: Option<crate::state::State>,
    /// Seconds between progress lines on stderr (when it is not a terminal).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub progress_seconds: u64,
}

#[derive(Debug, Subcommand)]
pub enum AirbyteCommand {
    /// SPEC: the config's JSON Schema (tokens marked `airbyte_secret`).
    Spec,
    /// CONNECTION_STATUS: the config and the token (GET /server); a failure is a status, exit 0.
    Check(ConfigFile),
    /// CATALOG: every stream with its sync modes, cursor and primary key.
    Discover(ConfigFile),
    /// RECORD, per-stream STATE, TRACE and LOG messages of the streams the configured catalog
    /// selects.
    Read {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// ConfiguredAirbyteCatalog.
        #[arg(long, value_name = "FILE")]
        catalog: PathBuf,
        /// The per-stream states of the previous run.
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
    },
}

impl SyncArgs {
    /// A sync of the default selection into `dest`, with no summary file and no live progress:
    /// the Singer and Airbyte invocations start from it.
    pub fn new(config: PathBuf, dest: DestKind) -> Self {
        SyncArgs {
            config,
            catalog: None,
            state: None,
            dest,
            path: None,
            streams: None,
            summary_json: None,
            dry_run: false,
            live_progress: false,
            json_logs: false,
            selection: None,
            state_given: None,
            progress_seconds: 10,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Run the receiver: every event is on disk before the 200, and merged into the destination
    /// in batches whenever it is free (a running `sync` holds a DuckDB file).
    Serve {
        /// Config file (JSON) with `webhook_secret`.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Address to listen on (put TLS in front of it: a reverse proxy or load balancer).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Destination (DuckDB or Parquet).
        #[arg(long, value_enum, default_value = "duckdb")]
        dest: DestKind,
        /// DuckDB file or Parquet directory (default: postmark.duckdb / postmark-parquet), or an
        /// object-store URL for Parquet (then --spool is needed).
        #[arg(long, value_name = "PATH")]
        path: Option<PathBuf>,
        /// Spool directory (default: <path>.webhook-spool).
        #[arg(long, value_name = "DIR")]
        spool: Option<PathBuf>,
    },
    /// Register (or update) the receiver's URL with every trigger on.
    Install {
        /// Config file (JSON) with `webhook_secret`.
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Public HTTPS URL of the receiver.
        #[arg(long)]
        url: String,
        /// Message stream to attach it to.
        #[arg(long, default_value = "outbound")]
        message_stream: String,
    },
    /// Show the webhooks registered on the server.
    List {
        /// Config file (JSON).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}
