//! Transaction administration: list the transactions the coordinators know
//! (ListTransactions, KIP-664, Kafka 3.0+) filtered by state and id prefix, and describe
//! transactions by id (DescribeTransactions). A broker without these APIs gives
//! [`Error::Unsupported`] naming the API and what to do instead.

use std::collections::BTreeMap;
use std::time::Instant;

use kafka_protocol::messages::{
    DescribeTransactionsRequest, FindCoordinatorRequest, FindCoordinatorResponse,
    ListTransactionsRequest, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;
use krust_core::fetch::TopicPartition;
use krust_wire::{ApiKey, ErrorCode};

use super::Admin;
use crate::cluster::{backoff_delay, Cluster, NodeId};
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
             lingering transactions can only be resolved there by re-initialising a producer \
             with the same transactional.id"
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

fn coordinator_of(resp: &FindCoordinatorResponse, version: i16, key: &str) -> Result<NodeId> {
    let (code, node, message) = if version >= 4 {
        match resp
            .coordinators
            .iter()
            .find(|c| c.key.as_str() == key)
            .or_else(|| resp.coordinators.first())
        {
            Some(c) => (
                ErrorCode(c.error_code),
                c.node_id.0,
                c.error_message.clone(),
            ),
            None => (ErrorCode::COORDINATOR_NOT_AVAILABLE, -1, None),
        }
    } else {
        (
            ErrorCode(resp.error_code),
            resp.node_id.0,
            resp.error_message.clone(),
        )
    };
    if code.is_ok() {
        Ok(node)
    } else {
        Err(Error::broker_with(
            ApiKey::FindCoordinator,
            code,
            format!("transactional id `{key}`"),
            message.map(|m| m.to_string()),
        ))
    }
}

/// The transaction coordinator of `id` (FindCoordinator with key type 1), retried within
/// `request.timeout.ms` while the answer is retriable.
pub(crate) async fn find_txn_coordinator(cluster: &Cluster, id: &str) -> Result<NodeId> {
    let cfg = cluster.config().clone();
    let deadline = Instant::now() + cfg.request_timeout;
    let mut attempt = 0;
    loop {
        let res = cluster
            .send_any(|v| {
                let mut r = FindCoordinatorRequest::default();
                if v >= 4 {
                    r.coordinator_keys = vec![sb(id)];
                } else {
                    r.key = sb(id);
                }
                r.key_type = 1;
                r
            })
            .await
            .and_then(|(_, v, resp)| coordinator_of(&resp, v, id));
        match res {
            Ok(node) => {
                if !cluster.metadata().brokers.contains_key(&node) {
                    let _ = cluster.refresh_metadata(&[]).await;
                }
                return Ok(node);
            }
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(backoff_delay(
                    cfg.retry_backoff,
                    cfg.retry_backoff_max,
                    attempt,
                ))
                .await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
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

impl Admin {
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
