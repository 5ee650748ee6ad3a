//! Transaction administration: list the transactions the coordinators know
//! (ListTransactions, KIP-664, Kafka 3.0+) filtered by state and id prefix, and describe
//! transactions by id (DescribeTransactions). A broker without these APIs gives an error
//! naming the API and what to do instead.
//!
//! Resolving transactions a dead process left behind:
//! - [`abort_transactions`] aborts the open transaction of given transactional ids by
//!   re-initialising them (InitProducerId): the coordinator bumps the epoch, which fences every
//!   earlier producer with that id and aborts what it left open. It needs no listing API, so it
//!   works on every broker that has transactions.
//! - [`abort_lingering`] finds the `Ongoing` transactions whose id starts with a prefix
//!   (ListTransactions) and aborts each that way.
//! - [`complete_transaction`] finishes a transaction with the producer id and epoch its owner
//!   recorded (FindCoordinator + EndTxn), committing or aborting it, so a restarted process can
//!   commit the work it had fully written (two-phase commit) without re-initialising, which
//!   would abort it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::messages::{
    DescribeTransactionsRequest, EndTxnRequest, InitProducerIdRequest, ListTransactionsRequest,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use krust_core::fetch::TopicPartition;
use krust_wire::{ApiKey, ErrorCode};

use super::Admin;
use crate::cluster::{backoff_delay, Cluster, NodeId};
use crate::coordinator::{self, CoordinatorType};
use crate::error::{Error, Result};

/// Which transactions [`Admin::list_transactions`] returns. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionFilter {
    /// Coordinator states to keep (`Empty`, `Ongoing`, `PrepareCommit`, `PrepareAbort`,
    /// `CompleteCommit`, `CompleteAbort`, ...), as Kafka names them. Sent to the brokers.
    pub states: Vec<String>,
    /// Producer ids to keep. Sent to the brokers.
    pub producer_ids: Vec<i64>,
    /// Keep only transactional ids starting with this (filtered here: the protocol has no
    /// prefix filter).
    pub prefix: Option<String>,
}

/// A transaction as ListTransactions reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedTransaction {
    /// `transactional.id`.
    pub transactional_id: String,
    /// The producer id holding it.
    pub producer_id: i64,
    /// The coordinator's state name.
    pub state: String,
    /// The coordinator (the broker that listed it).
    pub coordinator: NodeId,
}

/// A described transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionDescription {
    /// `transactional.id`.
    pub transactional_id: String,
    /// The coordinator's state name.
    pub state: String,
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` the producer registered.
    pub timeout_ms: i32,
    /// When the open transaction started (ms since the epoch), -1 when none is open.
    pub start_time_ms: i64,
    /// The partitions in the open transaction.
    pub partitions: Vec<TopicPartition>,
    /// The coordinator.
    pub coordinator: NodeId,
}

fn sb(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

fn unsupported(api: ApiKey, broker: NodeId, e: Error) -> Error {
    match e {
        Error::Unsupported { .. } => Error::Other(format!(
            "broker {broker} does not support {api:?} (needs Kafka 3.0+, KIP-664); \
             transactions can still be aborted (by re-initialising their transactional.id) or \
             completed there by transactional id"
        )),
        e => e,
    }
}

/// Lists the transactions of every broker's coordinator that match `filter`, sorted by id.
pub async fn list_transactions(
    cluster: &Cluster,
    filter: &TransactionFilter,
) -> Result<Vec<ListedTransaction>> {
    let brokers: Vec<NodeId> = cluster.metadata().brokers.keys().copied().collect();
    let mut out = BTreeMap::new();
    for b in brokers {
        let (_v, resp) = cluster
            .send(b, |_v| {
                let mut r = ListTransactionsRequest::default();
                r.state_filters = filter.states.iter().map(|s| sb(s)).collect();
                r.producer_id_filters = filter.producer_ids.iter().map(|p| (*p).into()).collect();
                r
            })
            .await
            .map_err(|e| unsupported(ApiKey::ListTransactions, b, e))?;
        let code = ErrorCode(resp.error_code);
        if !code.is_ok() {
            return Err(Error::broker_with(
                ApiKey::ListTransactions,
                code,
                format!("broker {b}"),
                None,
            ));
        }
        if !resp.unknown_state_filters.is_empty() {
            let unknown: Vec<String> = resp
                .unknown_state_filters
                .iter()
                .map(|s| s.to_string())
                .collect();
            return Err(Error::Other(format!(
                "broker {b} does not know the transaction state(s) {}",
                unknown.join(", ")
            )));
        }
        for t in resp.transaction_states {
            let id = t.transactional_id.0.to_string();
            if filter.prefix.as_deref().is_some_and(|p| !id.starts_with(p)) {
                continue;
            }
            out.insert(
                id.clone(),
                ListedTransaction {
                    transactional_id: id,
                    producer_id: t.producer_id.0,
                    state: t.transaction_state.to_string(),
                    coordinator: b,
                },
            );
        }
    }
    Ok(out.into_values().collect())
}

/// The transaction coordinator of `id`, retried within `request.timeout.ms` while the answer
/// is retriable.
pub(crate) async fn find_txn_coordinator(cluster: &Cluster, id: &str) -> Result<NodeId> {
    coordinator::find(cluster, CoordinatorType::Transaction, id).await
}

/// Describes `ids` (each asked of its coordinator). An id the coordinator does not know fails
/// with TRANSACTIONAL_ID_NOT_FOUND naming it.
pub async fn describe_transactions(
    cluster: &Cluster,
    ids: &[&str],
) -> Result<Vec<TransactionDescription>> {
    let mut out = BTreeMap::new();
    let mut todo: Vec<&str> = ids.to_vec();
    // Ids whose coordinator moved between the lookup and the describe are looked up again.
    for round in 0..5u32 {
        let mut by_coordinator: BTreeMap<NodeId, Vec<&str>> = BTreeMap::new();
        for id in &todo {
            let node = find_txn_coordinator(cluster, id).await?;
            by_coordinator.entry(node).or_default().push(id);
        }
        let mut again = Vec::new();
        for (node, ids) in by_coordinator {
            let (_v, resp) = cluster
                .send(node, |_v| {
                    let mut r = DescribeTransactionsRequest::default();
                    r.transactional_ids = ids.iter().map(|i| TransactionalId(sb(i))).collect();
                    r
                })
                .await
                .map_err(|e| unsupported(ApiKey::DescribeTransactions, node, e))?;
            for t in resp.transaction_states {
                let id = t.transactional_id.0.to_string();
                let code = ErrorCode(t.error_code);
                let moved = matches!(
                    code,
                    ErrorCode::NOT_COORDINATOR
                        | ErrorCode::COORDINATOR_NOT_AVAILABLE
                        | ErrorCode::COORDINATOR_LOAD_IN_PROGRESS
                );
                if moved && round < 4 {
                    if let Some(i) = ids.iter().find(|i| **i == id) {
                        again.push(*i);
                    }
                    continue;
                }
                if !code.is_ok() {
                    return Err(Error::broker_with(
                        ApiKey::DescribeTransactions,
                        code,
                        format!("transactional id `{id}`"),
                        None,
                    ));
                }
                let mut partitions = Vec::new();
                for topic in &t.topics {
                    for p in &topic.partitions {
                        partitions.push(TopicPartition::new(topic.topic.0.to_string(), *p));
                    }
                }
                partitions.sort();
                out.insert(
                    id.clone(),
                    TransactionDescription {
                        transactional_id: id,
                        state: t.transaction_state.to_string(),
                        producer_id: t.producer_id.0,
                        producer_epoch: t.producer_epoch,
                        timeout_ms: t.transaction_timeout_ms,
                        start_time_ms: t.transaction_start_time_ms,
                        partitions,
                        coordinator: node,
                    },
                );
            }
        }
        if again.is_empty() {
            break;
        }
        let cfg = cluster.config();
        tokio::time::sleep(backoff_delay(
            cfg.retry_backoff,
            cfg.retry_backoff_max,
            round,
        ))
        .await;
        todo = again;
    }
    Ok(ids.iter().filter_map(|id| out.get(*id).cloned()).collect())
}

/// A transaction aborted by [`abort_transactions`] or [`abort_lingering`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// `transactional.id`.
    pub transactional_id: String,
    /// The producer id the coordinator holds for the id after the abort.
    pub producer_id: i64,
    /// The producer epoch after the abort: every producer with an older epoch is fenced.
    pub producer_epoch: i16,
    /// The coordinator's state before the abort, when it was listed (`Ongoing`).
    pub previous_state: Option<String>,
}

/// The `transaction.timeout.ms` registered by the re-initialisation that aborts a transaction.
/// No transaction is left open under it, so its value only has to be one every broker accepts
/// (Kafka's `transaction.max.timeout.ms` defaults to 15 minutes).
const ABORT_INIT_TIMEOUT_MS: i32 = 60_000;

/// How long a resolution keeps retrying a retriable answer (CONCURRENT_TRANSACTIONS while the
/// coordinator writes markers, a moving coordinator, a lost connection): the request timeout,
/// but at least this.
const MIN_RESOLVE_DEADLINE: Duration = Duration::from_secs(10);

/// Connection failures tolerated in a row on EndTxn before giving up (some brokers close the
/// connection of a fenced producer instead of answering PRODUCER_FENCED; retrying that for the
/// whole deadline helps nobody).
const END_TXN_TRANSPORT_TRIES: u32 = 3;

fn resolve_deadline(cluster: &Cluster) -> Instant {
    Instant::now() + cluster.config().request_timeout.max(MIN_RESOLVE_DEADLINE)
}

fn validate_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::Other("a transactional id cannot be empty".into()));
    }
    Ok(())
}

/// Re-initialises `id` (InitProducerId with the transactional id, no producer id): the
/// coordinator aborts the open transaction and bumps the epoch. Retries what is retriable.
async fn reinit(cluster: &Cluster, id: &str) -> Result<(i64, i16)> {
    let deadline = resolve_deadline(cluster);
    let mut attempt = 0;
    loop {
        let res = async {
            let node = find_txn_coordinator(cluster, id).await?;
            let (_v, resp) = cluster
                .send(node, |_v| {
                    let mut r = InitProducerIdRequest::default();
                    r.transactional_id = Some(TransactionalId(sb(id)));
                    r.transaction_timeout_ms = ABORT_INIT_TIMEOUT_MS;
                    r.producer_id = (-1).into();
                    r.producer_epoch = -1;
                    r
                })
                .await?;
            let code = ErrorCode(resp.error_code);
            if code.is_ok() {
                Ok((resp.producer_id.0, resp.producer_epoch))
            } else {
                Err(Error::broker_with(
                    ApiKey::InitProducerId,
                    code,
                    format!("transactional id `{id}`"),
                    None,
                ))
            }
        }
        .await;
        match res {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tracing::debug!(txn = id, error = %e, "re-initialisation retried");
                crate::cluster::retry_pause(cluster.config(), &mut attempt).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Aborts whatever transaction each of `ids` has open, by re-initialising the id
/// (InitProducerId): the coordinator bumps the epoch, aborts the open transaction (its records
/// become invisible to `read_committed` readers, its offsets are not committed) and fences
/// every producer still running with that id, whose next request fails with PRODUCER_FENCED.
/// An id without an open transaction is re-initialised all the same (harmless: nothing is
/// open); an id the coordinator never saw gets a fresh producer id.
///
/// Works without ListTransactions, so on every broker with transactions. Only use it on ids
/// whose owners are dead or meant to be fenced.
pub async fn abort_transactions(
    cluster: &Cluster,
    ids: &[&str],
) -> Result<Vec<AbortedTransaction>> {
    for id in ids {
        validate_id(id)?;
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let (producer_id, producer_epoch) = reinit(cluster, id).await?;
        tracing::info!(
            txn = *id,
            producer_id,
            producer_epoch,
            "transaction aborted"
        );
        out.push(AbortedTransaction {
            transactional_id: id.to_string(),
            producer_id,
            producer_epoch,
            previous_state: None,
        });
    }
    Ok(out)
}

/// Lists the `Ongoing` transactions whose transactional id starts with `prefix`
/// (ListTransactions on every broker) and aborts each with [`abort_transactions`]. A broker
/// without ListTransactions gives an error saying to name the ids instead.
///
/// An empty prefix matches every transactional id: refused, so that a typo cannot fence every
/// transactional application of the cluster.
pub async fn abort_lingering(cluster: &Cluster, prefix: &str) -> Result<Vec<AbortedTransaction>> {
    if prefix.is_empty() {
        return Err(Error::Other(
            "refusing to abort the transactions of every transactional id: give a non-empty \
             prefix (or name the ids)"
                .into(),
        ));
    }
    let filter = TransactionFilter {
        states: vec!["Ongoing".into()],
        producer_ids: Vec::new(),
        prefix: Some(prefix.to_string()),
    };
    let listed = list_transactions(cluster, &filter)
        .await
        .map_err(|e| match e {
            Error::Other(m) if m.contains("ListTransactions") => Error::Other(format!(
                "{m}; abort them by naming their transactional ids instead"
            )),
            e => e,
        })?;
    let mut out = Vec::with_capacity(listed.len());
    for t in listed {
        let (producer_id, producer_epoch) = reinit(cluster, &t.transactional_id).await?;
        tracing::info!(
            txn = %t.transactional_id,
            producer_id,
            producer_epoch,
            "lingering transaction aborted"
        );
        out.push(AbortedTransaction {
            transactional_id: t.transactional_id,
            producer_id,
            producer_epoch,
            previous_state: Some(t.state),
        });
    }
    Ok(out)
}

/// Why an EndTxn answer ended a [`complete_transaction`], in words.
fn end_txn_reason(code: ErrorCode, commit: bool) -> Option<&'static str> {
    Some(match code {
        ErrorCode::PRODUCER_FENCED | ErrorCode::INVALID_PRODUCER_EPOCH => {
            "a newer producer epoch took over this transactional id (a producer initialised it, \
             or the broker timed the transaction out): the transaction that was open under the \
             recorded epoch has been aborted, unless it had completed before"
        }
        ErrorCode::INVALID_PRODUCER_ID_MAPPING => {
            "the coordinator does not hold this producer id for the transactional id (it expired, \
             or a newer producer id replaced it)"
        }
        ErrorCode::INVALID_TXN_STATE if commit => {
            "there is no open transaction to commit: it was aborted (for example at its \
             transaction.timeout.ms) or never begun"
        }
        ErrorCode::INVALID_TXN_STATE => {
            "there is no open transaction to abort: it was committed or never begun"
        }
        _ => return None,
    })
}

/// Finishes the transaction of `transactional_id` that the producer `producer_id` /
/// `producer_epoch` left open: commits it (`commit`) or aborts it, with EndTxn at its
/// coordinator. This is the resume step of a two-phase commit: a process that flushed every
/// record of a transaction and recorded its producer id and epoch (see
/// `Producer::producer_id_and_epoch`) before crashing can commit that work after a restart.
/// It must do so *before* initialising a producer with the same id, which would abort it.
///
/// Asking again for the outcome the transaction already has succeeds on classic brokers, so
/// the call can be retried. Errors (as [`Error::Broker`] with the code and an explanation):
/// PRODUCER_FENCED or INVALID_PRODUCER_EPOCH when a newer epoch took over (the transaction was
/// aborted), INVALID_TXN_STATE when there is nothing open to finish (e.g. the broker aborted
/// it at its timeout and a commit is asked), INVALID_PRODUCER_ID_MAPPING when the coordinator
/// does not know the producer id. A connection the broker keeps closing gives the transport
/// error with a note that the outcome is unknown.
pub async fn complete_transaction(
    cluster: &Cluster,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
) -> Result<()> {
    validate_id(transactional_id)?;
    if producer_id < 0 || producer_epoch < 0 {
        return Err(Error::Other(format!(
            "producer id {producer_id} / epoch {producer_epoch} cannot hold a transaction \
             (both must be >= 0)"
        )));
    }
    let id = transactional_id;
    let context =
        format!("transactional id `{id}`, producer id {producer_id} epoch {producer_epoch}");
    let deadline = resolve_deadline(cluster);
    let mut attempt = 0;
    let mut transport_failures = 0;
    loop {
        let res = async {
            let node = find_txn_coordinator(cluster, id).await?;
            let (_v, resp) = cluster
                .send(node, |_v| {
                    let mut r = EndTxnRequest::default();
                    r.transactional_id = TransactionalId(sb(id));
                    r.producer_id = producer_id.into();
                    r.producer_epoch = producer_epoch;
                    r.committed = commit;
                    r
                })
                .await?;
            Ok::<ErrorCode, Error>(ErrorCode(resp.error_code))
        }
        .await;
        let e = match res {
            Ok(code) if code.is_ok() => {
                tracing::info!(
                    txn = id,
                    producer_id,
                    producer_epoch,
                    commit,
                    "transaction completed"
                );
                return Ok(());
            }
            Ok(code) => {
                if let Some(why) = end_txn_reason(code, commit) {
                    return Err(Error::broker_with(
                        ApiKey::EndTxn,
                        code,
                        context,
                        Some(why.to_string()),
                    ));
                }
                Error::broker_with(ApiKey::EndTxn, code, context.clone(), None)
            }
            Err(e) => e,
        };
        let transport = matches!(e, Error::Transport { .. } | Error::Timeout { .. });
        if transport {
            transport_failures += 1;
        } else {
            transport_failures = 0;
        }
        if !e.is_retriable()
            || Instant::now() >= deadline
            || transport_failures >= END_TXN_TRANSPORT_TRIES
        {
            if transport {
                return Err(Error::Other(format!(
                    "EndTxn ({context}) failed: {e}; the outcome is unknown (a broker may close \
                     the connection of a fenced producer instead of answering PRODUCER_FENCED); \
                     describe the transaction or retry"
                )));
            }
            return Err(e);
        }
        tracing::debug!(txn = id, error = %e, "EndTxn retried");
        crate::cluster::retry_pause(cluster.config(), &mut attempt).await;
    }
}

impl Admin {
    /// Aborts the open transactions of `ids` by re-initialising them (see
    /// [`abort_transactions`]): fences their producers.
    ///
    /// Cancel safety: each id is aborted by one request; dropping the future may leave some
    /// aborted and others not.
    pub async fn abort_transactions(&self, ids: &[&str]) -> Result<Vec<AbortedTransaction>> {
        abort_transactions(&self.cluster, ids).await
    }

    /// Aborts every `Ongoing` transaction whose id starts with `prefix` (see
    /// [`abort_lingering`]).
    ///
    /// Cancel safety: as [`Admin::abort_transactions`].
    pub async fn abort_lingering(&self, prefix: &str) -> Result<Vec<AbortedTransaction>> {
        abort_lingering(&self.cluster, prefix).await
    }

    /// Commits or aborts the transaction a producer left open, given the producer id and epoch
    /// it recorded (see [`complete_transaction`]).
    ///
    /// Cancel safety: dropping the future leaves the outcome unknown; call again (asking the
    /// same outcome twice is safe).
    pub async fn complete_transaction(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<()> {
        complete_transaction(
            &self.cluster,
            transactional_id,
            producer_id,
            producer_epoch,
            commit,
        )
        .await
    }

    /// Lists transactions matching `filter` across every broker's coordinator (see
    /// [`list_transactions`]).
    ///
    /// Cancel safety: read-only; safe to drop.
    pub async fn list_transactions(
        &self,
        filter: &TransactionFilter,
    ) -> Result<Vec<ListedTransaction>> {
        list_transactions(&self.cluster, filter).await
    }

    /// Describes transactions by id, in the order given (see [`describe_transactions`]).
    ///
    /// Cancel safety: read-only; safe to drop.
    pub async fn describe_transactions(&self, ids: &[&str]) -> Result<Vec<TransactionDescription>> {
        describe_transactions(&self.cluster, ids).await
    }
}
