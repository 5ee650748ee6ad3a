//! The client's error type.
//!
//! Every variant carries the context a person needs (which broker, which API, which topic) and
//! the predicates (`is_retriable`, `is_timeout`, ...) let code decide without matching on text.

use std::time::Duration;

use krust_wire::{ApiKey, ErrorCode};

/// Result alias for krust-client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong talking to a Kafka cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration property is missing, unknown or invalid.
    #[error("invalid configuration `{property}`: {message}")]
    Config {
        /// The property, by its Kafka name.
        property: String,
        /// What is wrong with it.
        message: String,
    },
    /// No bootstrap server could be reached.
    #[error("could not reach any bootstrap server ({servers}): {last_error}")]
    Bootstrap {
        /// The configured servers.
        servers: String,
        /// The last failure seen.
        last_error: String,
    },
    /// Connecting to or talking with a broker failed at the transport level.
    #[error("broker {broker} ({addr}): {message}")]
    Transport {
        /// Node id of the broker (negative for a bootstrap address).
        broker: i32,
        /// Its address.
        addr: String,
        /// What happened.
        message: String,
    },
    /// SASL authentication with a broker failed: wrong credentials, a mechanism the broker does
    /// not offer, or a broker that could not prove it knows the password (SCRAM). Not
    /// retriable: the configuration must change. The message never contains a secret.
    #[error("broker {broker} ({addr}): authentication failed: {message}")]
    Authentication {
        /// Node id of the broker (negative for a bootstrap address).
        broker: i32,
        /// Its address.
        addr: String,
        /// What failed, in one line.
        message: String,
    },
    /// The TLS handshake with a broker failed: its certificate did not verify (which name did
    /// not match, which CA was trusted), it is not a TLS listener, or it refused the client.
    /// Not retriable.
    #[error("broker {broker} ({addr}): {message}")]
    Tls {
        /// Node id of the broker (negative for a bootstrap address).
        broker: i32,
        /// Its address.
        addr: String,
        /// What failed, in one line.
        message: String,
    },
    /// A request did not complete within its timeout. Its outcome on the broker is unknown.
    #[error("{api} request to broker {broker} timed out after {after:?}")]
    Timeout {
        /// The API of the request.
        api: ApiKey,
        /// Node id of the broker.
        broker: i32,
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The broker answered with an error code.
    #[error("{api}{}: {code}{}", context.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        /// The API of the request.
        api: ApiKey,
        /// The error code.
        code: ErrorCode,
        /// What it concerned (a topic, a partition, a group).
        context: Option<String>,
        /// The broker's own message, if it sent one.
        message: Option<String>,
    },
    /// The bytes of a response could not be decoded, or a request could not be encoded.
    #[error("broker {broker}: {source}")]
    Wire {
        /// Node id of the broker.
        broker: i32,
        /// The decoding error.
        #[source]
        source: krust_wire::Error,
    },
    /// Version negotiation failed (the broker lacks an API or a usable version).
    #[error("broker {broker}: {source}")]
    Unsupported {
        /// Node id of the broker.
        broker: i32,
        /// The negotiation error.
        #[source]
        source: krust_wire::Error,
    },
    /// A topic is not known to the cluster.
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),
    /// A partition is not known to the cluster.
    #[error("unknown partition {partition} of topic `{topic}`")]
    UnknownPartition {
        /// Topic name.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A metadata entry names a broker that is not in the broker list (yet, or any more: a
    /// broker restarting). Retriable: asking for it also requests a metadata refresh.
    #[error("unknown broker {0}")]
    UnknownBroker(i32),
    /// The client (or producer/consumer) was closed.
    #[error("client closed")]
    Closed,
    /// A transactional producer call failed. `class` says what the application may do next
    /// (see [`TxnClass`]); [`Error::is_fatal`], [`Error::is_abortable`], [`Error::is_fenced`]
    /// and [`Error::is_commit_outcome_unknown`] ask the same questions.
    #[error("{} transaction error: {message}", class.name())]
    Transaction {
        /// What the application may do next.
        class: TxnClass,
        /// The broker's error code, if a broker answer caused it.
        code: Option<ErrorCode>,
        /// What happened.
        message: String,
    },
    /// Something else, with a description.
    #[error("{0}")]
    Other(String),
}

/// The class of a [`Error::Transaction`]: what a transactional producer's application may do
/// after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TxnClass {
    /// The transaction cannot commit: call `abort_transaction`, then go on with a new one.
    Abortable,
    /// The producer is unusable (fenced by a newer instance with the same `transactional.id`,
    /// not authorised, invalid state on the coordinator): every later call and every queued
    /// record fails with this error. Close it; a new producer may take over.
    Fatal,
    /// The call was not legal in the producer's state (for example `send` outside a
    /// transaction, `commit_transaction` twice, `abort_transaction` while a commit's outcome is
    /// unknown). Nothing changed.
    Usage,
    /// `commit_transaction` gave up waiting: the commit was sent but its outcome is not known
    /// yet (it is still being retried and may land). Abort is refused; call
    /// `commit_transaction` again to keep waiting, or `init_transactions` to re-initialise.
    CommitOutcomeUnknown,
}

impl TxnClass {
    fn name(self) -> &'static str {
        match self {
            TxnClass::Abortable => "abortable",
            TxnClass::Fatal => "fatal",
            TxnClass::Usage => "invalid-call",
            TxnClass::CommitOutcomeUnknown => "commit-outcome-unknown",
        }
    }
}

impl Error {
    /// A configuration error for `property`.
    pub fn config(property: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            property: property.into(),
            message: message.into(),
        }
    }

    /// A broker error without context.
    pub fn broker(api: ApiKey, code: ErrorCode) -> Self {
        Error::Broker {
            api,
            code,
            context: None,
            message: None,
        }
    }

    /// A broker error with context and the broker's message.
    pub fn broker_with(
        api: ApiKey,
        code: ErrorCode,
        context: impl Into<String>,
        message: Option<String>,
    ) -> Self {
        Error::Broker {
            api,
            code,
            context: Some(context.into()),
            message: message.filter(|m| !m.is_empty()),
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Transport { .. }
            | Error::Timeout { .. }
            | Error::Bootstrap { .. }
            | Error::UnknownBroker(_) => true,
            Error::Broker { code, .. } => code.is_retriable(),
            _ => false,
        }
    }

    /// Whether SASL authentication failed (see [`Error::Authentication`]).
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Authentication { .. })
    }

    /// Whether the TLS handshake failed (see [`Error::Tls`]).
    pub fn is_tls(&self) -> bool {
        matches!(self, Error::Tls { .. })
    }

    /// Whether this is a request timeout (outcome unknown).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// Whether the connection failed (the request may or may not have reached the broker).
    pub fn is_transport(&self) -> bool {
        matches!(self, Error::Transport { .. })
    }

    /// The broker's error code, if this is a broker error (or a transaction error caused by
    /// one).
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Broker { code, .. } => Some(*code),
            Error::Transaction { code, .. } => *code,
            _ => None,
        }
    }

    /// A transaction error of class `class`.
    pub fn transaction(
        class: TxnClass,
        code: Option<ErrorCode>,
        message: impl Into<String>,
    ) -> Self {
        Error::Transaction {
            class,
            code,
            message: message.into(),
        }
    }

    /// The class, if this is a transaction error.
    pub fn txn_class(&self) -> Option<TxnClass> {
        match self {
            Error::Transaction { class, .. } => Some(*class),
            _ => None,
        }
    }

    /// A fatal transaction error: the producer is unusable ([`TxnClass::Fatal`]).
    pub fn is_fatal(&self) -> bool {
        self.txn_class() == Some(TxnClass::Fatal)
    }

    /// An abortable transaction error: abort the transaction and go on
    /// ([`TxnClass::Abortable`]).
    pub fn is_abortable(&self) -> bool {
        self.txn_class() == Some(TxnClass::Abortable)
    }

    /// A transactional call made in the wrong state ([`TxnClass::Usage`]).
    pub fn is_txn_usage(&self) -> bool {
        self.txn_class() == Some(TxnClass::Usage)
    }

    /// The commit's outcome is not known yet ([`TxnClass::CommitOutcomeUnknown`]).
    pub fn is_commit_outcome_unknown(&self) -> bool {
        self.txn_class() == Some(TxnClass::CommitOutcomeUnknown)
    }

    /// Fenced: a newer producer with the same `transactional.id` took over (fatal).
    pub fn is_fenced(&self) -> bool {
        self.is_fatal()
            && matches!(
                self.code(),
                Some(
                    ErrorCode::PRODUCER_FENCED
                        | ErrorCode::INVALID_PRODUCER_EPOCH
                        | ErrorCode::TRANSACTION_COORDINATOR_FENCED
                )
            )
    }
}
