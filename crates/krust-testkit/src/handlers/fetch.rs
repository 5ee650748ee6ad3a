//! Fetch: offsets and epochs checked, whole batches up to the byte limits, read_committed up
//! to the LSO with the aborted-transaction list, long-polling until `min_bytes` arrive or
//! `max_wait_ms` passes. Fetch sessions (KIP-227): created on epoch 0, then incremental requests
//! (partitions added, changed or forgotten) get incremental answers that leave out partitions
//! with nothing new; unknown sessions get FETCH_SESSION_ID_NOT_FOUND, wrong epochs
//! INVALID_FETCH_SESSION_EPOCH.

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

/// One partition to fetch: what the request (or the session) says.
#[derive(Debug, Clone)]
pub(crate) struct FetchItem {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) fetch_offset: i64,
    pub(crate) max_bytes: i32,
    pub(crate) current_leader_epoch: i32,
}

fn build(
    ctx: &Ctx<'_>,
    s: &State,
    req: &FetchRequest,
    items: &[FetchItem],
) -> (FetchResponse, usize) {
    let v = ctx.version;
    let read_committed = req.isolation_level == 1;
    let mut total = 0usize;
    let max_bytes = if v >= 3 && req.max_bytes > 0 {
        req.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut resp = FetchResponse::default();
    for fp in items {
        let topic = fp.topic.clone();
        {
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
                let part_max = fp.max_bytes.max(0) as usize;
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
                        if s.cfg.partial_trailing_batches {
                            let room = part_max
                                .saturating_sub(data.len())
                                .min(max_bytes.saturating_sub(total + data.len()))
                                .min(b.bytes.len() - 1);
                            data.extend_from_slice(&b.bytes[..room]);
                        }
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
            match resp.responses.last_mut() {
                Some(tr) if tr.topic.0.as_str() == topic => tr.partitions.push(pd),
                _ => resp.responses.push(
                    FetchableTopicResponse::default()
                        .with_topic(super::tn(&topic))
                        .with_partitions(vec![pd]),
                ),
            }
        }
    }
    (resp, total)
}

fn request_items(req: &FetchRequest) -> Vec<FetchItem> {
    req.topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| FetchItem {
                topic: t.topic.0.to_string(),
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
            })
        })
        .collect()
}

/// Resolves the request against the fetch-session cache: the items to fetch, the session id to
/// answer with, and whether the answer is incremental.
fn resolve_session(
    ctx: &Ctx<'_>,
    s: &mut State,
    req: &FetchRequest,
) -> Result<(Vec<FetchItem>, i32, bool), i16> {
    let items = request_items(req);
    if ctx.version < 7 {
        return Ok((items, 0, false));
    }
    let (id, epoch) = (req.session_id, req.session_epoch);
    if id != 0 && epoch <= 0 {
        // Close the session (epoch -1: a sessionless full fetch; 0: and open a new one).
        s.fetch_sessions.remove(&id);
    }
    if epoch == -1 {
        return Ok((items, 0, false));
    }
    if epoch == 0 {
        if !s.cfg.fetch_sessions {
            return Ok((items, 0, false));
        }
        s.next_fetch_session += 1;
        let new_id = s.next_fetch_session;
        let mut sess = FetchSession {
            broker: ctx.broker,
            next_epoch: 1,
            parts: indexmap::IndexMap::new(),
        };
        for it in &items {
            sess.parts
                .insert((it.topic.clone(), it.partition), SessionPart::new(it));
        }
        s.fetch_sessions.insert(new_id, sess);
        return Ok((items, new_id, false));
    }
    if id == 0 {
        return Err(ec::INVALID_FETCH_SESSION_EPOCH);
    }
    let sess = s
        .fetch_sessions
        .get_mut(&id)
        .filter(|x| x.broker == ctx.broker)
        .ok_or(ec::FETCH_SESSION_ID_NOT_FOUND)?;
    if epoch != sess.next_epoch {
        return Err(ec::INVALID_FETCH_SESSION_EPOCH);
    }
    sess.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
    for it in items {
        let key = (it.topic.clone(), it.partition);
        match sess.parts.get_mut(&key) {
            Some(p) => {
                p.item = it;
            }
            None => {
                sess.parts.insert(key, SessionPart::new(&it));
            }
        }
    }
    for f in &req.forgotten_topics_data {
        for p in &f.partitions {
            sess.parts.shift_remove(&(f.topic.0.to_string(), *p));
        }
    }
    Ok((
        sess.parts.values().map(|p| p.item.clone()).collect(),
        id,
        true,
    ))
}

/// Remembers what a session's answer carried; when `incremental`, keeps only the partitions
/// the answer must carry (new data, an error, or changed offsets).
fn session_answer(s: &mut State, session_id: i32, resp: &mut FetchResponse, incremental: bool) {
    let Some(sess) = s.fetch_sessions.get_mut(&session_id) else {
        return;
    };
    for tr in &mut resp.responses {
        let topic = tr.topic.0.to_string();
        tr.partitions.retain(|pd| {
            let Some(sp) = sess.parts.get_mut(&(topic.clone(), pd.partition_index)) else {
                return true;
            };
            let changed = pd.error_code != 0
                || pd.records.as_ref().is_some_and(|r| !r.is_empty())
                || pd.high_watermark != sp.hw
                || pd.last_stable_offset != sp.lso
                || pd.log_start_offset != sp.log_start;
            if changed {
                sp.hw = pd.high_watermark;
                sp.lso = pd.last_stable_offset;
                sp.log_start = pd.log_start_offset;
            }
            changed || !incremental
        });
    }
    resp.responses.retain(|t| !t.partitions.is_empty());
}

/// A fetch session (KIP-227) as the broker caches it.
#[derive(Debug, Clone)]
pub(crate) struct FetchSession {
    pub(crate) broker: i32,
    next_epoch: i32,
    parts: indexmap::IndexMap<(String, i32), SessionPart>,
}

#[derive(Debug, Clone)]
struct SessionPart {
    item: FetchItem,
    hw: i64,
    lso: i64,
    log_start: i64,
}

impl SessionPart {
    fn new(item: &FetchItem) -> Self {
        SessionPart {
            item: item.clone(),
            hw: i64::MIN,
            lso: i64::MIN,
            log_start: i64::MIN,
        }
    }
}

pub(crate) async fn handle(ctx: &Ctx<'_>, req: FetchRequest) -> FetchResponse {
    let (items, session_id, incremental) = match resolve_session(ctx, &mut ctx.shared.lock(), &req)
    {
        Ok(x) => x,
        Err(code) => return FetchResponse::default().with_error_code(code),
    };
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let mut data_rx = ctx.shared.data.subscribe();
    loop {
        data_rx.borrow_and_update();
        let (mut resp, bytes) = build(ctx, &ctx.shared.lock(), &req, &items);
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
            resp.session_id = session_id;
            if session_id != 0 {
                session_answer(&mut ctx.shared.lock(), session_id, &mut resp, incremental);
            }
            return resp;
        }
        tokio::select! {
            r = data_rx.changed() => { if r.is_err() { return resp; } }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}
