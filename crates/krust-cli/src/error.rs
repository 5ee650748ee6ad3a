//! The CLI's errors: each one is a single line for a person, plus an exit status. Client errors
//! are translated here (an unreachable broker, an unknown topic, ...), never shown as a Debug
//! dump or a backtrace.

use std::fmt;
use std::process::ExitCode;

/// A failed command.
#[derive(Debug)]
pub enum CliError {
    /// A flag value was rejected after parsing (exit status 2, as for clap's own errors).
    Usage(String),
    /// No broker could be reached.
    Unreachable {
        /// The brokers that were tried.
        brokers: String,
        /// What went wrong, in one line.
        detail: String,
    },
    /// The topic does not exist.
    UnknownTopic(String),
    /// Anything else, in one line.
    Failed(String),
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            _ => ExitCode::from(1),
        }
    }

    /// A generic failure with a message.
    pub fn failed(msg: impl Into<String>) -> Self {
        CliError::Failed(msg.into())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) => write!(f, "{}", one_line(m)),
            CliError::Unreachable { brokers, detail } => write!(
                f,
                "cannot reach broker {brokers}: {} (is it running? start one with: bash scripts/broker.sh start)",
                one_line(detail)
            ),
            CliError::UnknownTopic(t) => write!(f, "unknown topic '{t}'"),
            CliError::Failed(m) => write!(f, "{}", one_line(m)),
        }
    }
}

impl std::error::Error for CliError {}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Failed(e.to_string())
    }
}

/// Collapses a message to one line (newlines and runs of spaces become one space).
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let e = CliError::Failed("a\nb   c\n".into());
        assert_eq!(e.to_string(), "a b c");
        let e = CliError::Unreachable {
            brokers: "127.0.0.1:1".into(),
            detail: "connection refused".into(),
        };
        let s = e.to_string();
        assert!(s.starts_with("cannot reach broker 127.0.0.1:1: connection refused"));
        assert!(!s.contains('\n'));
        assert_eq!(
            CliError::UnknownTopic("x".into()).to_string(),
            "unknown topic 'x'"
        );
    }

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), ExitCode::from(2));
        assert_eq!(CliError::failed("x").exit_code(), ExitCode::from(1));
    }
}
