//! Thin entry point: parse the arguments, then run ([`postmark_elt::entry`] sets up logging,
//! runs, and chooses the exit code).

use std::process::ExitCode;

use clap::Parser;
use postmark_elt::cli::Cli;

fn main() -> ExitCode {
    postmark_elt::entry::main(Cli::parse())
}
