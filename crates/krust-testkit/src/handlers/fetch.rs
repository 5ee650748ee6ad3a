//! Fetch: offsets and epochs checked, whole batches up to the byte limits, read_committed up
//! to the LSO with the aborted-transaction list, long-polling until `min_bytes` arrive or
//! `max_wait_ms` passes. Fetch sessions are always declined (session id 0), which Kafka allows.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId};

use crate::cluster::Ctx;
use crate::errors as ec;
use crate::state::State;

/// Checks a client-stated leader epoch against the partition's.
pub(crate) fn check_epoch(stated: i32, current: i32) -> Result<(), i16> {
    if stated < 0 || stated == current {
        Ok(())
    } else if stated < current {
        Err(ec::FENCED_LEADER_EPOCH)
    } else {
        Err(ec::UNKNOWN_LEADER_EPOCH)
    }
}

fn build(ctx: &Ctx<'_>, s: &State, req: &FetchRequest) -> (FetchResponse, usize) {
    let v = ctx.version;
    let read_committed = req.isolation_level == 1;
    let mut total = 0usize;
    let max_bytes = if v >= 3 && req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut resp = FetchResponse::default();
    for ft in &req.topics {
        let topic = ft.topic.0.to_string();
        let mut tr = FetchableTopicResponse::default().with_topic(ft.topic.clone());
        for fp in &ft.partitions {
            let mut pd = PartitionData::default()
                .with_partition_index(fp.partition)
                .with_high_watermark(-1)
                .with_last_stable_offset(-1)
                .with_log_start_offset(-1);
            let r = (|| {
                let p = s
                    .partition(&topic, fp.partition)
                    .ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION)?;
                if p.leader != ctx.broker {
                    if v >= 12 {
                        pd.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(p.leader))
                            .with_leader_epoch(p.epoch());
                    }
                    return Err(ec::NOT_LEADER_OR_FOLLOWER);
                }
                if v >= 9 {
                    check_epoch(fp.current_leader_epoch, p.epoch())?;
                }
                let log = &p.log;
                pd.high_watermark = log.high_watermark();
                pd.last_stable_offset = log.last_stable();
                pd.log_start_offset = log.log_start;
                if fp.fetch_offset < log.log_start || fp.fetch_offset > log.end {
                    return Err(ec::OFFSET_OUT_OF_RANGE);
                }
                let upper = if read_committed {
                    log.last_stable()
                } else {
                    log.high_watermark()
                };
                let part_max = fp.partition_max_bytes.max(0) as usize;
                let mut data = BytesMut::new();
                let mut last_included = fp.fetch_offset - 1;
                for b in &log.batches[log.batch_index(fp.fetch_offset)..] {
                    if b.last_offset >= upper {
                        break;
                    }
                    let first = data.is_empty() && total == 0;
                    if !first
                        && (data.len() + b.bytes.len() > part_max
                            || total + data.len() + b.bytes.len() > max_bytes)
                    {
                        break;
                    }
                    data.extend_from_slice(&b.bytes);
                    last_included = b.last_offset;
                    if data.len() >= part_max {
                        break;
                    }
                }
                if read_committed {
                    let mut aborted: Vec<AbortedTransaction> = log
                        .aborted
                        .iter()
                        .filter(|a| {
                            a.last_offset >= fp.fetch_offset && a.first_offset <= last_included
                        })
                        .map(|a| {
                            AbortedTransaction::default()
                                .with_producer_id(ProducerId(a.producer_id))
                                .with_first_offset(a.first_offset)
                        })
                        .collect();
                    if s.cfg.unsorted_aborted {
                        aborted.reverse();
                    }
                    pd.aborted_transactions = Some(aborted);
                }
                total += data.len();
                pd.records = Some(data.freeze());
                Ok(())
            })();
            if let Err(code) = r {
                pd.error_code = code;
            }
            tr.partitions.push(pd);
        }
        resp.responses.push(tr);
    }
    (resp, total)
}

pub(crate) async fn handle(ctx: &Ctx<'_>, req: FetchRequest) -> FetchResponse {
    if ctx.version >= 7 && req.session_id != 0 {
        return FetchResponse::default().with_error_code(ec::FETCH_SESSION_ID_NOT_FOUND);
    }
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut data_rx = ctx.shared.data.subscribe();
    loop {
        data_rx.borrow_and_update();
        let (resp, bytes) = build(ctx, &ctx.shared.lock(), &req);
        let has_error = resp
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .any(|p| p.error_code != 0);
        if req.min_bytes <= 0
            || bytes >= req.min_bytes as usize
            || has_error
            || Instant::now() >= deadline
        {
            return resp;
        }
        tokio::select! {
            r = data_rx.changed() => { if r.is_err() { return resp; } }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}
