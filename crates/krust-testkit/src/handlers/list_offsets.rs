//! ListOffsets: earliest (-2), latest (-1, the LSO under read_committed), max timestamp (-3),
//! earliest local (-4), latest tiered (-5) and by timestamp.

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::fetch::check_epoch;
use crate::cluster::Ctx;
use crate::errors as ec;

pub(crate) fn handle(ctx: &Ctx<'_>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let v = ctx.version;
    let s = ctx.shared.lock();
    let mut resp = ListOffsetsResponse::default();
    for t in req.topics {
        let topic = t.name.0.to_string();
        let mut tr = ListOffsetsTopicResponse::default().with_name(t.name.clone());
        for rp in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default()
                .with_partition_index(rp.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            let r = (|| {
                let p = s
                    .partition(&topic, rp.partition_index)
                    .ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION)?;
                if p.leader != ctx.broker {
                    return Err(ec::NOT_LEADER_OR_FOLLOWER);
                }
                if v >= 4 {
                    check_epoch(rp.current_leader_epoch, p.epoch())?;
                    pr.leader_epoch = p.epoch();
                }
                let log = &p.log;
                let (off, ts) = match rp.timestamp {
                    -1 => {
                        if req.isolation_level == 1 {
                            (log.last_stable(), -1)
                        } else {
                            (log.high_watermark(), -1)
                        }
                    }
                    -2 | -4 => (log.log_start, -1),
                    -5 => (log.high_watermark(), -1),
                    -3 => log.max_timestamp().unwrap_or((-1, -1)),
                    ts if ts >= 0 => log.offset_for_timestamp(ts).unwrap_or((-1, -1)),
                    _ => return Err(ec::INVALID_REQUEST),
                };
                pr.offset = off;
                pr.timestamp = ts;
                Ok(())
            })();
            if let Err(code) = r {
                pr.error_code = code;
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
