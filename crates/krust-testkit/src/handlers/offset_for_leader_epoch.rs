//! OffsetForLeaderEpoch: the end offset of a leader epoch, from each partition's epoch history.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::fetch::check_epoch;
use crate::cluster::Ctx;
use crate::errors as ec;

pub(crate) fn handle(
    ctx: &Ctx<'_>,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let s = ctx.shared.lock();
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let topic = t.topic.0.to_string();
        let mut tr = OffsetForLeaderTopicResult::default().with_topic(t.topic.clone());
        for rp in t.partitions {
            let mut pr = EpochEndOffset::default()
                .with_partition(rp.partition)
                .with_leader_epoch(-1)
                .with_end_offset(-1);
            let r = (|| {
                let p = s
                    .partition(&topic, rp.partition)
                    .ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION)?;
                if p.leader != ctx.broker {
                    return Err(ec::NOT_LEADER_OR_FOLLOWER);
                }
                check_epoch(rp.current_leader_epoch, p.epoch())?;
                let (epoch, end) = p.log.end_offset_for_epoch(rp.leader_epoch);
                pr.leader_epoch = epoch;
                pr.end_offset = end;
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
