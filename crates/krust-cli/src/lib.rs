//! The `krust` command-line tool as a library: the binary's `main` is [`main`] here, and the
//! parts (flag types, the kcat format engine, bench statistics) are public so that they are
//! tested and documented on their own.
//!
//! Every failure ends in one line on stderr (`krust: ...`) and a non-zero exit status: 2 for a
//! bad flag, 1 for anything else. No backtraces, whatever RUST_BACKTRACE says.

#![warn(missing_docs)]

pub mod args;
pub mod cli;
pub mod commands;
pub mod error;
pub mod format;
pub mod input;
pub mod stats;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::error::one_line;

/// Runs `krust` with the process's arguments and returns its exit status.
pub fn main() -> ExitCode {
    // A panic is a bug, but it still gets one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("krust: internal error: {}{at}", one_line(&msg));
    }));

    init_logging();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("krust: {e}");
            e.exit_code()
        }
    }
}

/// `KRUST_LOG=debug` (or any tracing filter, e.g. `krust_client=trace`) turns on the client's
/// logs, on stderr. Off by default: the CLI's own messages are the interface.
fn init_logging() {
    let Ok(filter) = std::env::var("KRUST_LOG") else {
        return;
    };
    let Ok(filter) = tracing_subscriber::EnvFilter::try_new(&filter) else {
        eprintln!("krust: ignoring KRUST_LOG={filter}: not a valid log filter");
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Help and version go to stdout with status 0; any other parse error is one line on stderr.
fn clap_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            // The first paragraph of clap's message (the error and, for a missing argument, its
            // name), joined into one line; the usage block and tips are left out.
            let rendered = e.render().to_string();
            let paragraph: Vec<&str> = rendered
                .lines()
                .skip_while(|l| l.trim().is_empty())
                .take_while(|l| !l.trim().is_empty())
                .collect();
            let joined = paragraph.join(" ");
            let first = joined.strip_prefix("error: ").unwrap_or(&joined);
            let first = if first.is_empty() {
                "invalid arguments"
            } else {
                first
            };
            eprintln!("krust: {} (see krust --help)", one_line(first));
            ExitCode::from(2)
        }
    }
}

/// The README's Rust examples, compiled as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
