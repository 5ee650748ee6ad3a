//! Partition assignors: `range`, `roundrobin`, `sticky` and `cooperative-sticky`, with the Java
//! client's protocol names and member ordering, and the [`Assignor`] trait for custom ones.
//!
//! The group leader runs one assignor over every member's subscription. An assignor is a pure
//! function of its input; the membership machine encodes the result and, for cooperative
//! assignors, the member side computes what to revoke.
//!
//! The cooperative rule (KIP-429) is enforced here, in [`cooperative_adjust`], for every
//! cooperative assignor (custom ones included): a partition that some member reports as owned
//! is never handed to a *different* member in the same generation. It is left unassigned; its
//! owner sees it missing from its assignment, revokes it, and rejoins, and the follow-up
//! rebalance assigns it. (The bug this prevents: two members consuming one partition during an
//! incremental rebalance.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use krust_wire::group_protocol::{
    decode_subscription, encode_assignment, ConsumerProtocolAssignment, MAX_VERSION,
};
use krust_wire::kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use krust_wire::kafka_protocol::protocol::StrBytes;

use crate::fetch::TopicPartition;

/// How a protocol's members hand partitions over during a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RebalanceProtocol {
    /// Every member revokes everything before joining (range, roundrobin, sticky).
    Eager,
    /// Members keep their partitions while joining and revoke only what moves (KIP-429).
    Cooperative,
}

/// One member's subscription as the leader sees it (decoded from its JoinGroup metadata).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberSubscription {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// Its `group.instance.id`, for static members.
    pub instance_id: Option<String>,
    /// Topics it subscribes to.
    pub topics: BTreeSet<String>,
    /// Partitions it reports owning (embedded protocol v1+; eager members report none).
    pub owned: Vec<TopicPartition>,
    /// The generation of `owned` (v2+), or -1.
    pub generation: i32,
    /// Its rack (v3+).
    pub rack: Option<String>,
    /// Assignor-specific data.
    pub user_data: Option<Bytes>,
}

impl MemberSubscription {
    /// A member's subscription from the JoinGroup metadata it sent. A member whose metadata
    /// cannot be read subscribes to nothing (it will see an empty assignment) rather than
    /// breaking the group.
    pub fn from_metadata(member_id: String, instance_id: Option<String>, metadata: Bytes) -> Self {
        let mut m = MemberSubscription {
            member_id,
            instance_id,
            generation: -1,
            ..MemberSubscription::default()
        };
        if let Ok((_, s)) = decode_subscription(metadata) {
            m.topics = s.topics.iter().map(|t| t.to_string()).collect();
            m.owned = s
                .owned_partitions
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(move |p| TopicPartition::new(t.topic.as_str(), *p))
                })
                .collect();
            m.generation = s.generation_id;
            m.rack = s.rack_id.map(|r| r.to_string());
            m.user_data = s.user_data;
        }
        m
    }
}

/// What an assignor decides: the partitions of each member, by member id.
pub type Assignment = BTreeMap<String, Vec<TopicPartition>>;

/// A partition assignment strategy (`partition.assignment.strategy`).
///
/// Implementations must be deterministic: every member id in `members` gets an entry, no
/// partition may be given twice, and only partitions of topics in `partitions` (topic to
/// partition count) that the member subscribes to may be given to it. The machine checks the
/// result and refuses an assignment that breaks these rules.
pub trait Assignor: Send + Sync + fmt::Debug {
    /// The protocol name announced in JoinGroup (Java's names for the built-in ones).
    fn name(&self) -> &str;
    /// Eager or cooperative.
    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }
    /// Data this member adds to its subscription for this assignor (e.g. the sticky assignor's
    /// previous assignment). `owned` is what the member held at its last assignment.
    fn user_data(&self, _owned: &[TopicPartition], _generation: i32) -> Option<Bytes> {
        None
    }
    /// Computes the assignment.
    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Assignment;
}

/// The built-in assignors by their Java names: `range`, `roundrobin`, `sticky`,
/// `cooperative-sticky`. Also accepts the Java class names.
pub fn builtin(name: &str) -> Option<Arc<dyn Assignor>> {
    let short = name.trim().rsplit('.').next().unwrap_or(name);
    Some(match short {
        "range" | "RangeAssignor" => Arc::new(RangeAssignor),
        "roundrobin" | "RoundRobinAssignor" => Arc::new(RoundRobinAssignor),
        "sticky" | "StickyAssignor" => Arc::new(StickyAssignor),
        "cooperative-sticky" | "CooperativeStickyAssignor" => Arc::new(CooperativeStickyAssignor),
        _ => return None,
    })
}

/// Java's member order: static members first by instance id, then dynamic ones by member id.
fn member_order(a: &MemberSubscription, b: &MemberSubscription) -> std::cmp::Ordering {
    match (&a.instance_id, &b.instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(&b.member_id)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

fn empty_assignment(members: &[MemberSubscription]) -> Assignment {
    members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect()
}

/// `range`: per topic, the members subscribed to it (in Java's order) get contiguous ranges;
/// the first `n % m` members get one extra partition.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &str {
        "range"
    }
    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Assignment {
        let mut out = empty_assignment(members);
        let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
        sorted.sort_by(|a, b| member_order(a, b));
        for (topic, &n) in partitions {
            let subs: Vec<&&MemberSubscription> =
                sorted.iter().filter(|m| m.topics.contains(topic)).collect();
            if subs.is_empty() || n <= 0 {
                continue;
            }
            let c = subs.len() as i32;
            let per = n / c;
            let extra = n % c;
            for (i, m) in subs.iter().enumerate() {
                let i = i as i32;
                let start = per * i + i.min(extra);
                let len = per + i32::from(i < extra);
                let v = out.get_mut(&m.member_id).expect("member present");
                v.extend((start..start + len).map(|p| TopicPartition::new(topic.as_str(), p)));
            }
        }
        out
    }
}

/// `roundrobin`: every partition of every subscribed topic (sorted by topic, then partition),
/// dealt in turn to the members (in Java's order), skipping members not subscribed to it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &str {
        "roundrobin"
    }
    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Assignment {
        let mut out = empty_assignment(members);
        let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
        sorted.sort_by(|a, b| member_order(a, b));
        if sorted.is_empty() {
            return out;
        }
        let mut next = 0usize;
        for (topic, &n) in partitions {
            if !sorted.iter().any(|m| m.topics.contains(topic)) {
                continue;
            }
            for p in 0..n.max(0) {
                while !sorted[next % sorted.len()].topics.contains(topic) {
                    next += 1;
                }
                let m = sorted[next % sorted.len()];
                next += 1;
                out.get_mut(&m.member_id)
                    .expect("member present")
                    .push(TopicPartition::new(topic.as_str(), p));
            }
        }
        out
    }
}

/// `sticky` (eager): balanced, and keeps as many partitions where they were as balance allows.
/// Previous ownership comes from the members' owned partitions or, for eager members that
/// report none, from Java's `StickyAssignorUserData` in their user data.
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyAssignor;

impl Assignor for StickyAssignor {
    fn name(&self) -> &str {
        "sticky"
    }
    fn user_data(&self, owned: &[TopicPartition], generation: i32) -> Option<Bytes> {
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for tp in owned {
            by_topic
                .entry(tp.topic.to_string())
                .or_default()
                .push(tp.partition);
        }
        Some(
            krust_wire::group_protocol::StickyUserData {
                previous: by_topic.into_iter().collect(),
                generation: Some(generation),
            }
            .encode(),
        )
    }
    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Assignment {
        sticky_assign(partitions, members)
    }
}

/// `cooperative-sticky` (KIP-429): the sticky assignment, adjusted so that no partition moves
/// directly between members within one generation (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct CooperativeStickyAssignor;

impl Assignor for CooperativeStickyAssignor {
    fn name(&self) -> &str {
        "cooperative-sticky"
    }
    fn protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Cooperative
    }
    fn assign(
        &self,
        partitions: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> Assignment {
        sticky_assign(partitions, members)
    }
}

/// The previous owner of each partition, resolving claims by generation: the highest generation
/// wins; claims tied at the highest generation are all dropped (nobody keeps it for free).
fn previous_owners(
    partitions: &BTreeMap<String, i32>,
    members: &[MemberSubscription],
) -> BTreeMap<TopicPartition, String> {
    let mut claims: BTreeMap<TopicPartition, Vec<(i32, &str)>> = BTreeMap::new();
    for m in members {
        let mut owned: Vec<(TopicPartition, i32)> = m
            .owned
            .iter()
            .map(|tp| (tp.clone(), m.generation))
            .collect();
        if owned.is_empty() {
            if let Some(ud) = &m.user_data {
                if let Ok(d) = krust_wire::group_protocol::StickyUserData::decode(ud.clone()) {
                    let g = d.generation.unwrap_or(-1);
                    for (t, ps) in d.previous {
                        for p in ps {
                            owned.push((TopicPartition::new(t.as_str(), p), g));
                        }
                    }
                }
            }
        }
        for (tp, g) in owned {
            let exists = partitions
                .get(&*tp.topic)
                .is_some_and(|&n| tp.partition >= 0 && tp.partition < n);
            if exists && m.topics.contains(&*tp.topic) {
                claims.entry(tp).or_default().push((g, &m.member_id));
            }
        }
    }
    let mut out = BTreeMap::new();
    for (tp, mut c) in claims {
        c.sort();
        c.dedup();
        let best = c.last().map(|x| x.0).expect("non-empty");
        let top: Vec<_> = c.iter().filter(|x| x.0 == best).collect();
        if top.len() == 1 {
            out.insert(tp, top[0].1.to_string());
        }
    }
    out
}

/// The sticky engine shared by `sticky` and `cooperative-sticky`.
///
/// 1. Every partition keeps its valid previous owner.
/// 2. Unowned partitions go, one by one, to the eligible member with the fewest partitions.
/// 3. While a member holds two more partitions than an eligible member, one moves across
///    (each move strictly lowers the sum of squared counts, so this ends). With identical
///    subscriptions this yields counts that differ by at most one, and only the partitions that
///    balance requires move.
pub fn sticky_assign(
    partitions: &BTreeMap<String, i32>,
    members: &[MemberSubscription],
) -> Assignment {
    let mut sorted: Vec<&MemberSubscription> = members.iter().collect();
    sorted.sort_by(|a, b| member_order(a, b));
    let index: HashMap<&str, usize> = sorted
        .iter()
        .enumerate()
        .map(|(i, m)| (m.member_id.as_str(), i))
        .collect();
    let mut held: Vec<BTreeSet<TopicPartition>> = vec![BTreeSet::new(); sorted.len()];
    let prev = previous_owners(partitions, members);
    for (tp, owner) in &prev {
        held[index[owner.as_str()]].insert(tp.clone());
    }
    for (topic, &n) in partitions {
        for p in 0..n.max(0) {
            let tp = TopicPartition::new(topic.as_str(), p);
            if prev.contains_key(&tp) {
                continue;
            }
            let best = (0..sorted.len())
                .filter(|&i| sorted[i].topics.contains(topic))
                .min_by_key(|&i| (held[i].len(), i));
            if let Some(i) = best {
                held[i].insert(tp);
            }
        }
    }
    // Balance.
    loop {
        let mut moved = false;
        let mut order: Vec<usize> = (0..sorted.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(held[i].len()), i));
        'outer: for &from in &order {
            let mut targets: Vec<usize> = (0..sorted.len())
                .filter(|&j| held[j].len() + 1 < held[from].len())
                .collect();
            targets.sort_by_key(|&j| (held[j].len(), j));
            for &to in &targets {
                // Move the highest partition `to` may take; prefer ones `from` did not own
                // before this generation (they cost nothing to move).
                let candidate = held[from]
                    .iter()
                    .rev()
                    .filter(|tp| sorted[to].topics.contains(&*tp.topic))
                    .min_by_key(|tp| prev.get(*tp).is_some_and(|o| *o == sorted[from].member_id))
                    .cloned();
                if let Some(tp) = candidate {
                    held[from].remove(&tp);
                    held[to].insert(tp);
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
    sorted
        .iter()
        .zip(held)
        .map(|(m, h)| (m.member_id.clone(), h.into_iter().collect()))
        .collect()
}

/// The wire bytes of one member's assignment (ConsumerProtocolAssignment at the newest
/// version), partitions grouped by topic, as the group leader sends it in SyncGroup.
pub fn encode_member_assignment(tps: &[TopicPartition]) -> Bytes {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in tps {
        by_topic
            .entry(tp.topic.to_string())
            .or_default()
            .push(tp.partition);
    }
    let mut asg = ConsumerProtocolAssignment::default();
    asg.assigned_partitions = by_topic
        .into_iter()
        .map(|(t, ps)| {
            let mut x = AssignedTopic::default();
            x.topic = StrBytes::from_string(t).into();
            x.partitions = ps;
            x
        })
        .collect();
    encode_assignment(&asg, MAX_VERSION).expect("an assignment built here always encodes")
}

/// Applies the cooperative rule to `assignment`: a partition reported as owned by a member
/// other than the one it is assigned to is withdrawn from the assignment for this generation.
/// Returns the withdrawn partitions (they will be assigned in the follow-up rebalance).
pub fn cooperative_adjust(
    assignment: &mut Assignment,
    members: &[MemberSubscription],
) -> Vec<TopicPartition> {
    let mut claimed: HashMap<&TopicPartition, Vec<&str>> = HashMap::new();
    for m in members {
        for tp in &m.owned {
            claimed.entry(tp).or_default().push(&m.member_id);
        }
    }
    let mut withdrawn = Vec::new();
    for (member, tps) in assignment.iter_mut() {
        tps.retain(|tp| {
            let foreign = claimed
                .get(tp)
                .is_some_and(|owners| owners.iter().any(|o| *o != member.as_str()));
            if foreign {
                withdrawn.push(tp.clone());
            }
            !foreign
        });
    }
    withdrawn.sort();
    withdrawn
}

/// Checks an assignment against the rules every assignor must follow: each partition at most
/// once, only existing partitions of topics the member subscribes to, only known members.
pub fn validate(
    assignment: &Assignment,
    partitions: &BTreeMap<String, i32>,
    members: &[MemberSubscription],
) -> Result<(), String> {
    let by_id: HashMap<&str, &MemberSubscription> =
        members.iter().map(|m| (m.member_id.as_str(), m)).collect();
    let mut seen = BTreeSet::new();
    for (member, tps) in assignment {
        let m = by_id
            .get(member.as_str())
            .ok_or_else(|| format!("assignment for unknown member `{member}`"))?;
        for tp in tps {
            let n = partitions.get(&*tp.topic).copied().unwrap_or(0);
            if tp.partition < 0 || tp.partition >= n {
                return Err(format!("{tp} does not exist"));
            }
            if !m.topics.contains(&*tp.topic) {
                return Err(format!(
                    "{tp} given to `{member}`, which does not subscribe to it"
                ));
            }
            if !seen.insert(tp.clone()) {
                return Err(format!("{tp} assigned twice"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            generation: -1,
            ..Default::default()
        }
    }

    fn tps(v: &[(&str, i32)]) -> Vec<TopicPartition> {
        v.iter().map(|(t, p)| TopicPartition::new(*t, *p)).collect()
    }

    fn parts(v: &[(&str, i32)]) -> BTreeMap<String, i32> {
        v.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn builtin_names() {
        for n in ["range", "roundrobin", "sticky", "cooperative-sticky"] {
            assert_eq!(builtin(n).unwrap().name(), n);
        }
        assert_eq!(
            builtin("org.apache.kafka.clients.consumer.CooperativeStickyAssignor")
                .unwrap()
                .protocol(),
            RebalanceProtocol::Cooperative
        );
        assert!(builtin("nope").is_none());
    }

    #[test]
    fn range_matches_java() {
        // Java's documented example: t0, t1 with 3 partitions each, two members.
        let m = [member("c0", &["t0", "t1"]), member("c1", &["t0", "t1"])];
        let a = RangeAssignor.assign(&parts(&[("t0", 3), ("t1", 3)]), &m);
        assert_eq!(a["c0"], tps(&[("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)]));
        assert_eq!(a["c1"], tps(&[("t0", 2), ("t1", 2)]));
    }

    #[test]
    fn range_orders_static_members_first() {
        let mut a = member("a", &["t"]);
        let mut z = member("z", &["t"]);
        z.instance_id = Some("i0".into());
        a.instance_id = None;
        let out = RangeAssignor.assign(&parts(&[("t", 3)]), &[a, z]);
        assert_eq!(out["z"], tps(&[("t", 0), ("t", 1)]));
        assert_eq!(out["a"], tps(&[("t", 2)]));
    }

    #[test]
    fn roundrobin_matches_java() {
        let m = [member("c0", &["t0", "t1"]), member("c1", &["t0", "t1"])];
        let a = RoundRobinAssignor.assign(&parts(&[("t0", 3), ("t1", 3)]), &m);
        assert_eq!(a["c0"], tps(&[("t0", 0), ("t0", 2), ("t1", 1)]));
        assert_eq!(a["c1"], tps(&[("t0", 1), ("t1", 0), ("t1", 2)]));
        // Unequal subscriptions: c0 only t0.
        let m = [member("c0", &["t0"]), member("c1", &["t0", "t1"])];
        let a = RoundRobinAssignor.assign(&parts(&[("t0", 2), ("t1", 2)]), &m);
        assert_eq!(a["c0"], tps(&[("t0", 0)]));
        assert_eq!(a["c1"], tps(&[("t0", 1), ("t1", 0), ("t1", 1)]));
    }

    #[test]
    fn sticky_moves_only_what_balance_needs() {
        let p = parts(&[("t", 12)]);
        let mut m = vec![member("a", &["t"]), member("b", &["t"])];
        let first = sticky_assign(&p, &m);
        assert_eq!(first["a"].len(), 6);
        m[0].owned = first["a"].clone();
        m[1].owned = first["b"].clone();
        m[0].generation = 1;
        m[1].generation = 1;
        m.push(member("c", &["t"]));
        let second = sticky_assign(&p, &m);
        for id in ["a", "b", "c"] {
            assert_eq!(second[id].len(), 4, "{id}");
        }
        for id in ["a", "b"] {
            assert!(
                second[id].iter().all(|tp| first[id].contains(tp)),
                "{id} kept"
            );
        }
        validate(&second, &p, &m).unwrap();
    }

    #[test]
    fn sticky_uses_java_user_data_when_no_owned_partitions() {
        let p = parts(&[("t", 4)]);
        let mut a = member("a", &["t"]);
        a.user_data = StickyAssignor.user_data(&tps(&[("t", 3), ("t", 2)]), 5);
        let b = member("b", &["t"]);
        let out = StickyAssignor.assign(&p, &[a, b]);
        assert_eq!(out["a"], tps(&[("t", 2), ("t", 3)]));
    }

    #[test]
    fn conflicting_claims_resolved_by_generation() {
        let p = parts(&[("t", 2)]);
        let mut a = member("a", &["t"]);
        let mut b = member("b", &["t"]);
        a.owned = tps(&[("t", 0)]);
        a.generation = 3;
        b.owned = tps(&[("t", 0), ("t", 1)]);
        b.generation = 2;
        let out = sticky_assign(&p, &[a, b]);
        assert_eq!(out["a"], tps(&[("t", 0)]));
        assert_eq!(out["b"], tps(&[("t", 1)]));
    }

    #[test]
    fn cooperative_adjust_withdraws_moving_partitions() {
        let p = parts(&[("t", 4)]);
        let mut a = member("a", &["t"]);
        a.owned = tps(&[("t", 0), ("t", 1), ("t", 2), ("t", 3)]);
        a.generation = 1;
        let b = member("b", &["t"]);
        let m = [a, b];
        let mut out = CooperativeStickyAssignor.assign(&p, &m);
        assert_eq!(out["b"].len(), 2);
        let w = cooperative_adjust(&mut out, &m);
        assert_eq!(w.len(), 2);
        assert!(out["b"].is_empty());
        assert_eq!(out["a"].len(), 2);
    }

    #[test]
    fn validate_catches_bad_assignments() {
        let p = parts(&[("t", 2)]);
        let m = [member("a", &["t"]), member("b", &["u"])];
        let mut bad = Assignment::new();
        bad.insert("a".into(), tps(&[("t", 0), ("t", 0)]));
        assert!(validate(&bad, &p, &m).is_err());
        bad.insert("a".into(), tps(&[("t", 5)]));
        assert!(validate(&bad, &p, &m).is_err());
        bad.insert("a".into(), vec![]);
        bad.insert("b".into(), tps(&[("t", 0)]));
        assert!(validate(&bad, &p, &m).is_err());
    }

    #[test]
    fn heterogeneous_sticky_is_valid_and_complete() {
        let p = parts(&[("t0", 5), ("t1", 7), ("t2", 3)]);
        let m = [
            member("a", &["t0"]),
            member("b", &["t0", "t1"]),
            member("c", &["t1", "t2"]),
            member("d", &["t2"]),
        ];
        let out = sticky_assign(&p, &m);
        validate(&out, &p, &m).unwrap();
        assert_eq!(out.values().map(Vec::len).sum::<usize>(), 15);
    }
}
