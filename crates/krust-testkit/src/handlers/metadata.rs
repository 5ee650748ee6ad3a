//! Metadata: brokers (as advertised), topics, partitions, leaders and leader epochs.

use std::collections::BTreeMap;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{sb, tn};
use crate::cluster::Ctx;
use crate::errors as ec;
use crate::state::{State, Topic};

fn topic_entry(s: &State, name: &str, t: &Topic, version: i16) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut mp = MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(p.leader))
                .with_replica_nodes(p.replicas.iter().map(|r| BrokerId(*r)).collect())
                .with_isr_nodes(
                    p.replicas
                        .iter()
                        .filter(|r| s.brokers.get(**r as usize).is_some_and(|b| b.up))
                        .map(|r| BrokerId(*r))
                        .collect(),
                );
            if version >= 7 {
                mp.leader_epoch = p.epoch();
            }
            if p.leader < 0 {
                mp.error_code = ec::LEADER_NOT_AVAILABLE;
            }
            mp
        })
        .collect();
    let mut e = MetadataResponseTopic::default()
        .with_name(Some(tn(name)))
        .with_partitions(partitions);
    if version >= 10 {
        e.topic_id = t.id;
    }
    e
}

fn unknown(name: &str) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(tn(name)))
        .with_error_code(ec::UNKNOWN_TOPIC_OR_PARTITION)
}

pub(crate) fn brokers(s: &State) -> Vec<MetadataResponseBroker> {
    s.brokers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(i as i32))
                .with_host(sb(&b.advertised.0))
                .with_port(i32::from(b.advertised.1))
        })
        .collect()
}

pub(crate) fn handle(ctx: &Ctx<'_>, req: MetadataRequest) -> MetadataResponse {
    let v = ctx.version;
    let mut s = ctx.shared.lock();
    let mut resp = MetadataResponse::default().with_brokers(brokers(&s));
    if v >= 1 {
        resp.controller_id = BrokerId(0);
    }
    if v >= 2 {
        resp.cluster_id = Some(sb(&s.cfg.cluster_id));
    }
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && v == 0,
    };
    if all {
        let visible: Vec<String> = s
            .topics
            .keys()
            .filter(|t| !s.is_hidden(t))
            .cloned()
            .collect();
        resp.topics = visible
            .iter()
            .map(|n| topic_entry(&s, n, &s.topics[n.as_str()], v))
            .collect();
        return resp;
    }
    let auto = s.cfg.auto_create_topics && (v < 4 || req.allow_auto_topic_creation);
    for rt in req.topics.unwrap_or_default() {
        let name = match (&rt.name, rt.topic_id.is_nil()) {
            (Some(n), _) => n.0.to_string(),
            (None, false) => match s.topics.iter().find(|(_, t)| t.id == rt.topic_id) {
                Some((n, _)) => n.clone(),
                None => {
                    resp.topics.push(
                        MetadataResponseTopic::default()
                            .with_topic_id(rt.topic_id)
                            .with_error_code(ec::UNKNOWN_TOPIC_ID),
                    );
                    continue;
                }
            },
            (None, true) => continue,
        };
        if s.is_hidden(&name) {
            resp.topics.push(unknown(&name));
            continue;
        }
        if !s.topics.contains_key(&name) && auto {
            let n = s.cfg.default_partitions;
            match s.create_topic(&name, n, 1, BTreeMap::new(), None) {
                Ok(()) => {
                    // Kafka answers LEADER_NOT_AVAILABLE while a new topic's leaders are elected;
                    // the fake's are immediate.
                }
                Err(code) => {
                    resp.topics.push(
                        MetadataResponseTopic::default()
                            .with_name(Some(tn(&name)))
                            .with_error_code(code),
                    );
                    continue;
                }
            }
        }
        match s.topics.get(&name) {
            Some(t) => resp.topics.push(topic_entry(&s, &name, t, v)),
            None => resp.topics.push(unknown(&name)),
        }
    }
    resp
}
