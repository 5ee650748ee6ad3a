//! The transaction error classifier: (API, error code) -> class. One function, a reason per
//! branch; it refines `krust_wire::classify` with what a transactional producer must do.

use krust_wire::ErrorCode as E;

/// The APIs a transactional producer uses (Produce for failures of its batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnApi {
    /// FindCoordinator (transaction or group key).
    FindCoordinator,
    /// InitProducerId.
    InitProducerId,
    /// AddPartitionsToTxn.
    AddPartitionsToTxn,
    /// AddOffsetsToTxn.
    AddOffsetsToTxn,
    /// TxnOffsetCommit.
    TxnOffsetCommit,
    /// EndTxn.
    EndTxn,
    /// Produce (a batch's final failure).
    Produce,
}

/// How a retriable error is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RetryKind {
    /// The previous transaction is still completing: retry after a short fixed backoff.
    ConcurrentTransactions,
    /// Retry after the exponential backoff.
    Backoff,
    /// The coordinator moved or is unavailable: look it up again, then retry.
    Coordinator,
}

impl RetryKind {
    /// For FindCoordinator itself there is no coordinator to forget: plain backoff.
    pub(crate) fn no_coordinator(self) -> RetryKind {
        match self {
            RetryKind::Coordinator => RetryKind::Backoff,
            k => k,
        }
    }
}

/// The class of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnErrorClass {
    /// No error.
    Ok,
    /// Retried inside, never surfaced.
    Retriable(RetryKind),
    /// The application must abort; `bump_epoch`: the epoch must change after the abort (a
    /// batch may be persisted or the producer id is unknown), so late copies are fenced.
    Abortable {
        /// Bump the epoch after the abort (classic protocol; v2 bumps on every EndTxn).
        bump_epoch: bool,
    },
    /// The producer is unusable.
    Fatal,
    /// An API called in the wrong state; nothing changed.
    Usage,
}

/// Classifies `code` returned by `api` for a transactional producer.
pub fn classify(api: TxnApi, code: E) -> TxnErrorClass {
    use RetryKind::*;
    use TxnErrorClass::*;
    if code == E::NONE {
        return Ok;
    }
    match code {
        // Another instance with the same transactional id bumped the epoch, or this
        // coordinator was replaced: nothing this producer sends can succeed again.
        E::PRODUCER_FENCED | E::INVALID_PRODUCER_EPOCH | E::TRANSACTION_COORDINATOR_FENCED => Fatal,
        // Not authorised to use the transactional id or the cluster: configuration, fatal.
        E::TRANSACTIONAL_ID_AUTHORIZATION_FAILED | E::CLUSTER_AUTHORIZATION_FAILED => Fatal,
        // The coordinator moved or is not up yet: look it up again.
        E::NOT_COORDINATOR | E::COORDINATOR_NOT_AVAILABLE => Retriable(Coordinator),
        E::COORDINATOR_LOAD_IN_PROGRESS => Retriable(Backoff),
        // The previous transaction's markers are still being written: retry soon (Java uses
        // 20 ms here rather than retry.backoff.ms, since this usually clears fast).
        E::CONCURRENT_TRANSACTIONS => Retriable(ConcurrentTransactions),
        // Transport-ish errors inside a response (the broker answered): retry.
        E::REQUEST_TIMED_OUT | E::NETWORK_EXCEPTION | E::BROKER_NOT_AVAILABLE
            if api != TxnApi::Produce =>
        {
            Retriable(Coordinator)
        }
        // KIP-890: the broker asks the client to abort.
        E::TRANSACTION_ABORTABLE => Abortable { bump_epoch: false },
        // The coordinator lost the producer id (expired): abort, then get a new epoch.
        E::UNKNOWN_PRODUCER_ID | E::INVALID_PRODUCER_ID_MAPPING => Abortable { bump_epoch: true },
        _ => match api {
            TxnApi::FindCoordinator => match code {
                // The group's coordinator cannot be found for this principal (send_offsets).
                E::GROUP_AUTHORIZATION_FAILED => Abortable { bump_epoch: false },
                _ => Fatal,
            },
            TxnApi::InitProducerId => Fatal,
            TxnApi::AddPartitionsToTxn => match code {
                // Metadata lag on the coordinator: the topic will appear.
                E::UNKNOWN_TOPIC_OR_PARTITION => Retriable(Backoff),
                // Another partition of the batch failed; this one was not tried.
                E::OPERATION_NOT_ATTEMPTED => Retriable(Backoff),
                E::TOPIC_AUTHORIZATION_FAILED => Abortable { bump_epoch: false },
                // INVALID_TXN_STATE and anything unexpected: the coordinator and this
                // producer disagree about the transaction.
                _ => Fatal,
            },
            TxnApi::AddOffsetsToTxn => match code {
                E::GROUP_AUTHORIZATION_FAILED => Abortable { bump_epoch: false },
                _ => Fatal,
            },
            TxnApi::TxnOffsetCommit => match code {
                E::UNKNOWN_TOPIC_OR_PARTITION => Retriable(Backoff),
                // The consumer's generation is stale (KIP-447 zombie check): the offsets must
                // not commit, but the application can rejoin and go on.
                E::UNKNOWN_MEMBER_ID
                | E::ILLEGAL_GENERATION
                | E::FENCED_INSTANCE_ID
                | E::REBALANCE_IN_PROGRESS
                | E::GROUP_AUTHORIZATION_FAILED
                | E::TOPIC_AUTHORIZATION_FAILED => Abortable { bump_epoch: false },
                // Anything else, UNSUPPORTED_FOR_MESSAGE_FORMAT included (an old message
                // format: transactions cannot work).
                _ => Fatal,
            },
            TxnApi::EndTxn => Fatal,
            TxnApi::Produce => match code {
                E::INVALID_TXN_STATE => Fatal,
                // The batch may be persisted or the sequence state is broken: abort and bump.
                E::OUT_OF_ORDER_SEQUENCE_NUMBER
                | E::REQUEST_TIMED_OUT
                | E::NETWORK_EXCEPTION
                | E::NOT_ENOUGH_REPLICAS_AFTER_APPEND => Abortable { bump_epoch: true },
                // The batch was refused as a whole (too large, no rights, bad record): the
                // transaction is incomplete, so it cannot commit.
                _ => Abortable { bump_epoch: false },
            },
        },
    }
}
