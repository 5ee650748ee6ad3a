//! Produce: leader check, CRC-validated batches, idempotent sequence checks, transactional
//! partition checks, append, acks.

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use crate::batch::{self, BatchError};
use crate::cluster::Ctx;
use crate::errors as ec;
use crate::log::Append;
use crate::state::State;
use crate::txn::TxnStatus;

/// Default `max.message.bytes` (Kafka's).
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// Checks that a transactional batch may be written: the partition is part of the producer's
/// ongoing transaction (added by AddPartitionsToTxn, or implicitly under KIP-890 with
/// Produce v12+).
fn check_txn(
    s: &mut State,
    txn_id: Option<&str>,
    topic: &str,
    partition: i32,
    h: &batch::BatchHeader,
    version: i16,
) -> Result<(), i16> {
    if !h.is_transactional() {
        return Ok(());
    }
    let Some(txn_id) = txn_id else {
        return Err(ec::INVALID_TXN_STATE);
    };
    let kip890 = s.cfg.txn_protocol == crate::TxnProtocol::Kip890 && version >= 12;
    let Some(t) = s.txns.get_mut(txn_id) else {
        return Err(ec::INVALID_PRODUCER_ID_MAPPING);
    };
    if t.producer_id != h.producer_id {
        return Err(ec::INVALID_PRODUCER_ID_MAPPING);
    }
    if h.producer_epoch < t.epoch {
        return Err(ec::INVALID_PRODUCER_EPOCH);
    }
    if t.status.is_preparing() {
        return Err(ec::CONCURRENT_TRANSACTIONS);
    }
    let key = (topic.to_string(), partition);
    if t.status == TxnStatus::Ongoing && t.partitions.contains(&key) {
        return Ok(());
    }
    if kip890 && h.producer_epoch == t.epoch {
        if t.status != TxnStatus::Ongoing {
            t.begin();
        }
        t.partitions.insert(key);
        return Ok(());
    }
    Err(ec::INVALID_TXN_STATE)
}

pub(crate) fn handle(ctx: &Ctx<'_>, req: ProduceRequest) -> Option<ProduceResponse> {
    let v = ctx.version;
    let acks = req.acks;
    let txn_id = req.transactional_id.as_ref().map(|t| t.0.to_string());
    let mut appended = false;
    let mut resp = ProduceResponse::default();
    {
        let mut s = ctx.shared.lock();
        let policy = s.seq_policy();
        for td in req.topic_data {
            let topic = td.name.0.to_string();
            let mut tr = TopicProduceResponse::default().with_name(td.name.clone());
            for pd in td.partition_data {
                let mut pr = PartitionProduceResponse::default()
                    .with_index(pd.index)
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1);
                if v >= 5 {
                    pr.log_start_offset = -1;
                }
                let code = (|| {
                    if !matches!(acks, -1..=1) {
                        return Err(ec::INVALID_REQUIRED_ACKS);
                    }
                    let max_bytes = s
                        .topics
                        .get(&topic)
                        .and_then(|t| t.configs.get("max.message.bytes"))
                        .and_then(|m| m.parse().ok())
                        .unwrap_or(DEFAULT_MAX_MESSAGE_BYTES);
                    let Some(p) = s.partition(&topic, pd.index) else {
                        return Err(ec::UNKNOWN_TOPIC_OR_PARTITION);
                    };
                    if p.leader != ctx.broker {
                        return Err(ec::NOT_LEADER_OR_FOLLOWER);
                    }
                    // acks=all needs min.insync.replicas replicas up (a down broker leaves
                    // the ISR).
                    if acks == -1 {
                        let min_isr: usize = s
                            .topics
                            .get(&topic)
                            .and_then(|t| t.configs.get("min.insync.replicas"))
                            .and_then(|m| m.parse().ok())
                            .unwrap_or(1);
                        let in_sync = p
                            .replicas
                            .iter()
                            .filter(|r| s.brokers.get(**r as usize).is_some_and(|b| b.up))
                            .count();
                        if in_sync < min_isr {
                            return Err(ec::NOT_ENOUGH_REPLICAS);
                        }
                    }
                    let Some(records) = &pd.records else {
                        return Err(ec::CORRUPT_MESSAGE);
                    };
                    let batches = batch::split_batches(records).map_err(|e| match e {
                        BatchError::BadMagic(_) => ec::UNSUPPORTED_FOR_MESSAGE_FORMAT,
                        _ => ec::CORRUPT_MESSAGE,
                    })?;
                    if batches.iter().any(|(_, b)| b.len() > max_bytes) {
                        return Err(ec::MESSAGE_TOO_LARGE);
                    }
                    if batches.iter().any(|(h, _)| h.is_control()) {
                        return Err(ec::INVALID_RECORD);
                    }
                    // Produce v3+ carries exactly one batch per partition (Kafka's rule).
                    if batches.len() > 1 {
                        return Err(ec::INVALID_RECORD);
                    }
                    for (h, _) in &batches {
                        // A broker that lost its producer ids (FakeCluster::lose_producer_ids)
                        // knows none of them, whatever the sequence.
                        if h.producer_id >= 0 && s.lost_producer_ids.contains(&h.producer_id) {
                            return Err(ec::UNKNOWN_PRODUCER_ID);
                        }
                        check_txn(&mut s, txn_id.as_deref(), &topic, pd.index, h, v)?;
                    }
                    let log_append_time = s
                        .topics
                        .get(&topic)
                        .and_then(|t| t.configs.get("message.timestamp.type"))
                        .is_some_and(|x| x == "LogAppendTime");
                    let now_ms = s.now_ms();
                    let batches: Vec<(batch::BatchHeader, bytes::Bytes)> = if log_append_time {
                        batches
                            .into_iter()
                            .map(|(mut h, b)| {
                                h.attributes |= batch::ATTR_LOG_APPEND_TIME;
                                h.max_timestamp = now_ms;
                                (h, batch::set_log_append_time(&b, now_ms))
                            })
                            .collect()
                    } else {
                        batches
                    };
                    let p = s.partition_mut(&topic, pd.index).expect("checked above");
                    let epoch = p.epoch();
                    let mut first = None;
                    for (h, b) in &batches {
                        match p.log.append(h, b, epoch, policy) {
                            Append::Appended(off) => {
                                appended = true;
                                first.get_or_insert(off);
                            }
                            Append::Duplicate(off) => {
                                first.get_or_insert(off);
                            }
                            Append::Rejected(code) => return Err(code),
                        }
                    }
                    Ok((
                        first.unwrap_or(-1),
                        p.log.log_start,
                        if log_append_time { now_ms } else { -1 },
                    ))
                })();
                match code {
                    Ok((base, start, append_time)) => {
                        pr.base_offset = base;
                        pr.log_append_time_ms = append_time;
                        if v >= 5 {
                            pr.log_start_offset = start;
                        }
                    }
                    Err(code) => pr.error_code = code,
                }
                tr.partition_responses.push(pr);
            }
            resp.responses.push(tr);
        }
    }
    if appended {
        ctx.shared.bump_data();
    }
    (acks != 0).then_some(resp)
}
