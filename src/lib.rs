//! postmark-elt: complete, typed, incremental extraction from the Postmark API into DuckDB,
//! Parquet or Singer.
//!
//! The left side (config, client, streams) knows nothing of sinks; sinks know nothing of HTTP.
//! They meet at [`schema`] and [`state`].

// Errors carry their context (stream, window, request, status) by value; they are created once
// per failed run, so their size does not matter.
#![allow(clippy::result_large_err)]

pub mod airbyte;
pub mod app;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod config;
pub mod entry;
pub mod error;
pub mod models;
#[cfg(feature = "duckdb")]
pub mod report;
pub mod schema;
pub mod secret;
pub mod signals;
pub mod sinks;
pub mod state;
pub mod streams;
pub mod webhooks;
