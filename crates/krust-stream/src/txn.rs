//! The transactional calls of an EXACTLY_ONCE job, with the producer's error classes mapped to
//! what the job does: abortable -> abort and replay; fatal (fenced) -> stop; commit outcome
//! unknown -> keep waiting for the same commit.

use std::collections::BTreeMap;

use krust_client::consumer::TopicPartition;
use krust_client::group::{ConsumerGroupMetadata, OffsetAndMetadata};
use krust_client::{Error, Producer};

use crate::error::StreamError;

/// How a transaction commit failed.
pub(crate) enum Failure {
    /// Abort, rewind, and go on.
    Abortable(String),
    /// Stop the job.
    Fatal(StreamError),
}

fn fatal(e: Error) -> StreamError {
    if e.is_fenced() {
        StreamError::Fenced(e.to_string())
    } else {
        StreamError::Transaction(e.to_string())
    }
}

fn classify(e: Error) -> Failure {
    if e.is_fatal() || e.is_fenced() || e.is_txn_usage() {
        Failure::Fatal(fatal(e))
    } else {
        Failure::Abortable(e.to_string())
    }
}

/// InitProducerId for the job's transactional id: fences an older instance with the same id
/// and lets the coordinator abort what it left open.
pub(crate) async fn init(p: &Producer) -> Result<(), StreamError> {
    p.init_transactions().await.map_err(fatal)
}

/// Starts a transaction.
pub(crate) async fn begin(p: &Producer) -> Result<(), StreamError> {
    p.begin_transaction().await.map_err(fatal)
}

/// Adds the offsets (with the group metadata) and commits.
pub(crate) async fn commit(
    p: &Producer,
    offsets: &BTreeMap<TopicPartition, OffsetAndMetadata>,
    group: &ConsumerGroupMetadata,
) -> Result<(), Failure> {
    if !offsets.is_empty() {
        p.send_offsets_to_transaction(offsets.clone(), group)
            .await
            .map_err(classify)?;
    }
    let mut tries = 0;
    loop {
        match p.commit_transaction().await {
            Ok(()) => return Ok(()),
            Err(e) if e.is_commit_outcome_unknown() && tries < 3 => {
                tracing::warn!(error = %e, "transaction commit outcome unknown; waiting again");
                tries += 1;
            }
            Err(e) => return Err(classify(e)),
        }
    }
}

/// Aborts the open transaction.
pub(crate) async fn abort(p: &Producer) -> Result<(), StreamError> {
    p.abort_transaction().await.map_err(fatal)
}
