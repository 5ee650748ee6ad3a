//! The stream layer's error type: configuration mistakes found when a job is built, and the
//! reasons a running job stops.

use krust_client::producer::ProduceError;

/// Result alias for krust-stream.
pub type Result<T, E = StreamError> = std::result::Result<T, E>;

/// Why a job could not be built or had to stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The job's configuration is inconsistent (found by a `build()` before anything
    /// connects): names the setting and says what to change.
    #[error("invalid stream configuration `{setting}`: {message}")]
    Config {
        /// The builder setting (or Kafka property) at fault.
        setting: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The Kafka client failed (connection, broker error, group membership).
    #[error(transparent)]
    Client(#[from] krust_client::Error),
    /// An output record could not be written (with AT_LEAST_ONCE the job stops so the input
    /// offsets are not committed past it).
    #[error("output record to `{topic}` failed: {source}")]
    Produce {
        /// The destination topic.
        topic: String,
        /// The producer's error.
        #[source]
        source: Box<ProduceError>,
    },
    /// A record failed a stage and the error policy is [`ErrorPolicy::Fail`](crate::ErrorPolicy::Fail).
    #[error("record {topic}-{partition}@{offset}: {error}")]
    Record {
        /// Input topic.
        topic: String,
        /// Input partition.
        partition: i32,
        /// Input offset.
        offset: i64,
        /// What failed.
        error: RecordError,
    },
    /// The producer was fenced: another instance with the same transactional id started.
    /// The job stops (it no longer owns its transactional id).
    #[error("fenced: {0}")]
    Fenced(String),
    /// The consumer group member failed for good (fenced, unauthorized, misconfigured).
    #[error("consumer group member failed: {0}")]
    Group(String),
    /// A transaction could not be completed.
    #[error("transaction failed: {0}")]
    Transaction(String),
}

impl StreamError {
    /// A configuration error for `setting`.
    pub fn config(setting: impl Into<String>, message: impl Into<String>) -> Self {
        StreamError::Config {
            setting: setting.into(),
            message: message.into(),
        }
    }

    /// Whether this is a configuration error (found at build time).
    pub fn is_config(&self) -> bool {
        matches!(self, StreamError::Config { .. })
    }

    /// Whether the producer was fenced by a newer instance with the same transactional id.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StreamError::Fenced(_))
    }
}

/// Why one record failed a stage (deserialization, an operator, serialization). Goes to the
/// error policy: fail the job, skip and count, or send the input record to a dead-letter topic
/// with this error in its headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{stage}: {message}")]
pub struct RecordError {
    /// The stage: `deserialize`, `serialize`, or the operator's name (`try_map`, ...).
    pub stage: String,
    /// What went wrong, in one line.
    pub message: String,
}

impl RecordError {
    /// An error in `stage`.
    pub fn new(stage: impl Into<String>, message: impl std::fmt::Display) -> Self {
        RecordError {
            stage: stage.into(),
            message: message.to_string(),
        }
    }
}
