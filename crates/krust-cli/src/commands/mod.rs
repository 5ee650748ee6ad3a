//! Command implementations: each takes its parsed flags, talks to the cluster through
//! krust-client, and returns the process exit status or a [`CliError`].

use std::process::ExitCode;

use crate::cli::{Cli, Command};
use crate::error::CliError;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let name = match cli.command {
        Command::Produce(_) => "produce",
        Command::Consume(_) => "consume",
        Command::Topics(_) => "topics",
        Command::Offsets(_) => "offsets",
        Command::Bench(_) => "bench",
        Command::FakeCluster(_) => "fake-cluster",
    };
    Err(CliError::failed(format!(
        "'{name}' is not available yet: the client library is still being written"
    )))
}
