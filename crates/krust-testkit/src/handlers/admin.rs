//! Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords,
//! DescribeConfigs. Any broker acts as the controller.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse,
};

use super::{sb, tn};
use crate::cluster::Ctx;
use crate::errors as ec;

/// Topic config defaults reported by DescribeConfigs and CreateTopics.
const TOPIC_DEFAULTS: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("compression.type", "producer"),
    ("max.message.bytes", "1048588"),
    ("message.timestamp.type", "CreateTime"),
    ("min.insync.replicas", "1"),
    ("retention.bytes", "-1"),
    ("retention.ms", "604800000"),
    ("segment.bytes", "1073741824"),
];

const BROKER_DEFAULTS: &[(&str, &str)] = &[
    ("auto.create.topics.enable", "false"),
    ("default.replication.factor", "1"),
    ("message.max.bytes", "1048588"),
    ("num.partitions", "1"),
    ("offsets.topic.replication.factor", "1"),
    ("transaction.state.log.replication.factor", "1"),
];

fn merged(configs: &BTreeMap<String, String>) -> Vec<(String, String, bool)> {
    let mut out: BTreeMap<String, (String, bool)> = TOPIC_DEFAULTS
        .iter()
        .map(|(k, v)| (k.to_string(), (v.to_string(), true)))
        .collect();
    for (k, v) in configs {
        out.insert(k.clone(), (v.clone(), false));
    }
    out.into_iter().map(|(k, (v, d))| (k, v, d)).collect()
}

pub(crate) fn create_topics(ctx: &Ctx<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let v = ctx.version;
    let mut s = ctx.shared.lock();
    let mut resp = CreateTopicsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let configs: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect();
        let assignment = (!t.assignments.is_empty()).then(|| {
            let mut a = t.assignments.clone();
            a.sort_by_key(|x| x.partition_index);
            a.iter()
                .map(|x| x.broker_ids.iter().map(|b| b.0).collect())
                .collect::<Vec<Vec<i32>>>()
        });
        let partitions = match &assignment {
            Some(a) => a.len() as i32,
            None => t.num_partitions,
        };
        let rf = match &assignment {
            Some(a) => a.first().map(|r| r.len() as i16).unwrap_or(1),
            None => t.replication_factor,
        };
        let mut r = CreatableTopicResult::default().with_name(tn(&name));
        let result = if req.validate_only {
            if s.topics.contains_key(&name) {
                Err(ec::TOPIC_ALREADY_EXISTS)
            } else if i32::from(rf) > s.broker_count() {
                Err(ec::INVALID_REPLICATION_FACTOR)
            } else {
                Ok(())
            }
        } else {
            s.create_topic(&name, partitions, rf, configs.clone(), assignment)
        };
        match result {
            Err(code) => {
                r.error_code = code;
                if v >= 1 {
                    r.error_message = Some(sb(&format!("topic {name}: error {code}")));
                }
                if v >= 5 {
                    r.num_partitions = -1;
                    r.replication_factor = -1;
                }
            }
            Ok(()) => {
                if v >= 5 {
                    let (n, rf) = match s.topics.get(&name) {
                        Some(t) => (t.partitions.len() as i32, t.replication_factor),
                        None => (
                            if partitions > 0 {
                                partitions
                            } else {
                                s.cfg.default_partitions
                            },
                            rf.max(1),
                        ),
                    };
                    r.num_partitions = n;
                    r.replication_factor = rf;
                    r.configs = Some(
                        merged(&configs)
                            .into_iter()
                            .map(|(k, v, d)| {
                                CreatableTopicConfigs::default()
                                    .with_name(sb(&k))
                                    .with_value(Some(sb(&v)))
                                    .with_config_source(if d { 5 } else { 1 })
                            })
                            .collect(),
                    );
                }
                if v >= 7 {
                    r.topic_id = s.topics.get(&name).map(|t| t.id).unwrap_or_default();
                }
            }
        }
        resp.topics.push(r);
    }
    resp
}

pub(crate) fn delete_topics(ctx: &Ctx<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut s = ctx.shared.lock();
    let mut names: Vec<(Option<String>, uuid::Uuid)> = req
        .topic_names
        .iter()
        .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
        .collect();
    for t in &req.topics {
        names.push((t.name.as_ref().map(|n| n.0.to_string()), t.topic_id));
    }
    let mut resp = DeleteTopicsResponse::default();
    for (name, id) in names {
        let name = name.or_else(|| {
            s.topics
                .iter()
                .find(|(_, t)| t.id == id)
                .map(|(n, _)| n.clone())
        });
        let mut r = DeletableTopicResult::default();
        if ctx.version >= 6 {
            r.topic_id = id;
        }
        match name {
            Some(n) => {
                r.name = Some(tn(&n));
                match s.topics.shift_remove(&n) {
                    Some(t) => {
                        if ctx.version >= 6 {
                            r.topic_id = t.id;
                        }
                    }
                    None => r.error_code = ec::UNKNOWN_TOPIC_OR_PARTITION,
                }
            }
            None => r.error_code = ec::UNKNOWN_TOPIC_ID,
        }
        resp.responses.push(r);
    }
    resp
}

pub(crate) fn create_partitions(
    ctx: &Ctx<'_>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut s = ctx.shared.lock();
    let mut resp = CreatePartitionsResponse::default();
    for t in req.topics {
        let name = t.name.0.to_string();
        let r = if req.validate_only {
            match s.topics.get(&name) {
                None => Err(ec::UNKNOWN_TOPIC_OR_PARTITION),
                Some(x) if x.partitions.len() as i32 >= t.count => Err(ec::INVALID_PARTITIONS),
                Some(_) => Ok(()),
            }
        } else {
            s.grow_topic(&name, t.count)
        };
        let mut tr = CreatePartitionsTopicResult::default().with_name(t.name.clone());
        if let Err(code) = r {
            tr.error_code = code;
            tr.error_message = Some(sb(&format!("topic {name}: error {code}")));
        }
        resp.results.push(tr);
    }
    resp
}

pub(crate) fn delete_records(ctx: &Ctx<'_>, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut s = ctx.shared.lock();
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let topic = t.name.0.to_string();
        let mut tr = DeleteRecordsTopicResult::default().with_name(t.name.clone());
        for rp in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default()
                .with_partition_index(rp.partition_index)
                .with_low_watermark(-1);
            let r = (|| {
                let p = s
                    .partition_mut(&topic, rp.partition_index)
                    .ok_or(ec::UNKNOWN_TOPIC_OR_PARTITION)?;
                if p.leader != ctx.broker {
                    return Err(ec::NOT_LEADER_OR_FOLLOWER);
                }
                let hw = p.log.high_watermark();
                let target = if rp.offset == -1 { hw } else { rp.offset };
                if target < 0 || target > hw {
                    return Err(ec::OFFSET_OUT_OF_RANGE);
                }
                p.log.delete_before(target);
                Ok(p.log.log_start)
            })();
            match r {
                Ok(lw) => pr.low_watermark = lw,
                Err(code) => pr.error_code = code,
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}

pub(crate) fn describe_configs(
    ctx: &Ctx<'_>,
    req: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let s = ctx.shared.lock();
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let name = res.resource_name.to_string();
        let mut r = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let entries: Option<Vec<(String, String, bool)>> = match res.resource_type {
            2 => s
                .topics
                .get(&name)
                .filter(|_| !s.is_hidden(&name))
                .map(|t| merged(&t.configs)),
            4 => Some(
                BROKER_DEFAULTS
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string(), true))
                    .collect(),
            ),
            _ => None,
        };
        match entries {
            None => {
                r.error_code = if res.resource_type == 2 {
                    ec::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    ec::INVALID_REQUEST
                };
            }
            Some(entries) => {
                r.configs = entries
                    .into_iter()
                    .filter(|(k, _, _)| {
                        res.configuration_keys
                            .as_ref()
                            .is_none_or(|keys| keys.iter().any(|x| x.as_str() == k))
                    })
                    .map(|(k, v, default)| {
                        let mut c = DescribeConfigsResourceResult::default()
                            .with_name(sb(&k))
                            .with_value(Some(sb(&v)))
                            .with_config_source(if default {
                                5
                            } else if res.resource_type == 2 {
                                1
                            } else {
                                4
                            });
                        if ctx.version >= 3 {
                            c.config_type = if v.parse::<i64>().is_ok() { 5 } else { 2 };
                        }
                        c
                    })
                    .collect();
            }
        }
        resp.results.push(r);
    }
    resp
}
