//! postmark-elt: complete, typed, incremental extraction from the Postmark API into DuckDB,
//! Parquet or Singer.
//!
//! The left side (config, client, streams) knows nothing of sinks; sinks know nothing of HTTP.
//! They meet at [`schema`] and [`state`].

pub mod app;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod config;
pub mod error;
pub mod schema;
pub mod secret;
pub mod sinks;
pub mod state;
pub mod streams;
