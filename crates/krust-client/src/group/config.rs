//! [`GroupSettings`]: the consumer-group properties (`group.id`, `session.timeout.ms`,
//! `partition.assignment.strategy`, `enable.auto.commit`, ...), parsed from Kafka property names.

use std::sync::Arc;
use std::time::Duration;

use krust_core::group::{builtin, Assignor, GroupConfig};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::{ms, Properties};
use crate::error::{Error, Result};

/// Everything a group member needs besides the connection settings.
///
/// Part of a [`ConsumerConfig`](crate::consumer::ConsumerConfig) (its `group` field), filled from
/// the Kafka property names by [`ConsumerConfig::from_properties`](crate::consumer::ConsumerConfig::from_properties).
/// Serialized flat, durations in integer milliseconds and assignors by protocol name
/// (`{"group_id":"g","session_timeout":6000,"partition_assignment_strategy":["range"],...}`);
/// missing fields take their defaults. Two settings are equal when every value is and their
/// assignors have the same names in the same order.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// The membership machine's settings (group id, timeouts, assignors, static id).
    pub group: GroupConfig,
    /// `enable.auto.commit`: commit consumed positions every `auto.commit.interval.ms`, before
    /// a revocation and on close. Default true.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`. Default 5 000 ms.
    pub auto_commit_interval: Duration,
    /// `krust.require.stable.offsets`: OffsetFetch with RequireStable (KIP-447: wait for
    /// transactions that commit offsets to finish). Default true.
    pub require_stable: bool,
    /// `metadata.max.age.ms` for the group's topic checks (regex subscriptions pick up new
    /// topics, partition count changes trigger rebalances). Default 30 000 ms... capped by the
    /// client setting.
    pub topic_refresh: Duration,
}

impl GroupSettings {
    /// Defaults for `group_id`.
    pub fn new(group_id: impl Into<String>) -> Self {
        GroupSettings {
            group: GroupConfig::new(group_id),
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_millis(5_000),
            require_stable: true,
            topic_refresh: Duration::from_millis(30_000),
        }
    }

    /// Sets `group.instance.id` (static membership).
    pub fn with_instance_id(mut self, id: impl Into<String>) -> Self {
        self.group.instance_id = Some(id.into());
        self
    }

    /// Sets `session.timeout.ms`, `heartbeat.interval.ms` and `max.poll.interval.ms` (which is
    /// also the rebalance timeout).
    pub fn with_timeouts(
        mut self,
        session: Duration,
        heartbeat: Duration,
        max_poll: Duration,
    ) -> Self {
        self.group.session_timeout = session;
        self.group.heartbeat_interval = heartbeat;
        self.group.rebalance_timeout = max_poll;
        self.group.max_poll_interval = Some(max_poll);
        self
    }

    /// Sets the assignors (`partition.assignment.strategy`).
    pub fn with_assignors(mut self, assignors: Vec<Arc<dyn Assignor>>) -> Self {
        self.group.assignors = assignors;
        self
    }

    /// Sets `enable.auto.commit`.
    pub fn with_auto_commit(mut self, on: bool) -> Self {
        self.enable_auto_commit = on;
        self
    }

    /// Consumes the group properties from `props` (others are left for the caller). Fails,
    /// naming the property, on a bad value; `group.id` must be present.
    pub fn take_from(props: &mut Properties) -> Result<Self> {
        Self::take_optional(props)?
            .ok_or_else(|| Error::config("group.id", "required to join a group"))
    }

    /// As [`GroupSettings::take_from`], but a missing or empty `group.id` gives `None`: the
    /// other group properties are still consumed and their values checked, then ignored (an
    /// assign-mode consumer; Java and librdkafka accept them there too).
    pub fn take_optional(props: &mut Properties) -> Result<Option<Self>> {
        let id = props.take("group.id").filter(|g| !g.is_empty());
        let mut s = GroupSettings::new(id.clone().unwrap_or_default());
        if let Some(i) = props.take("group.instance.id") {
            s.group.instance_id = Some(i).filter(|i| !i.is_empty());
        }
        if let Some(v) = props.take_ms("session.timeout.ms")? {
            s.group.session_timeout = v;
        }
        if let Some(v) = props.take_ms("heartbeat.interval.ms")? {
            s.group.heartbeat_interval = v;
        }
        if let Some(v) = props.take_ms("max.poll.interval.ms")? {
            s.group.rebalance_timeout = v;
            s.group.max_poll_interval = Some(v);
        }
        if let Some(v) = props.take_ms("krust.revoke.timeout.ms")? {
            s.group.revoke_timeout = v;
        }
        if let Some(v) = props.take("client.rack") {
            s.group.rack = Some(v).filter(|r| !r.is_empty());
        }
        if let Some(v) = props.take_parsed("partition.assignment.strategy", parse_strategies)? {
            s.group.assignors = v;
        }
        if let Some(v) = props.take_bool("enable.auto.commit")? {
            s.enable_auto_commit = v;
        }
        if let Some(v) = props.take_ms("auto.commit.interval.ms")? {
            s.auto_commit_interval = v;
        }
        if let Some(v) = props.take_bool("krust.require.stable.offsets")? {
            s.require_stable = v;
        }
        if id.is_none() {
            return Ok(None);
        }
        s.validate()?;
        Ok(Some(s))
    }

    /// Checks the values, naming the first bad property.
    pub fn validate(&self) -> Result<()> {
        let g = &self.group;
        if g.group_id.is_empty() {
            return Err(Error::config("group.id", "must not be empty"));
        }
        if g.heartbeat_interval.is_zero() || g.heartbeat_interval >= g.session_timeout {
            return Err(Error::config(
                "heartbeat.interval.ms",
                "must be positive and lower than session.timeout.ms",
            ));
        }
        if g.assignors.is_empty() {
            return Err(Error::config(
                "partition.assignment.strategy",
                "no assignor",
            ));
        }
        if self.enable_auto_commit && self.auto_commit_interval.is_zero() {
            return Err(Error::config("auto.commit.interval.ms", "must be positive"));
        }
        Ok(())
    }
}

/// The flat, serializable form of [`GroupSettings`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct Repr {
    group_id: String,
    group_instance_id: Option<String>,
    #[serde(with = "ms")]
    session_timeout: Duration,
    #[serde(with = "ms")]
    heartbeat_interval: Duration,
    #[serde(with = "ms")]
    rebalance_timeout: Duration,
    #[serde(with = "opt_ms")]
    max_poll_interval: Option<Duration>,
    #[serde(with = "ms")]
    retry_backoff: Duration,
    #[serde(with = "ms")]
    retry_backoff_max: Duration,
    partition_assignment_strategy: Vec<String>,
    client_rack: Option<String>,
    #[serde(with = "ms")]
    revoke_timeout: Duration,
    enable_auto_commit: bool,
    #[serde(with = "ms")]
    auto_commit_interval: Duration,
    require_stable: bool,
    #[serde(with = "ms")]
    topic_refresh: Duration,
}

impl Default for Repr {
    fn default() -> Self {
        Repr::from(&GroupSettings::new(""))
    }
}

impl From<&GroupSettings> for Repr {
    fn from(s: &GroupSettings) -> Self {
        let g = &s.group;
        Repr {
            group_id: g.group_id.clone(),
            group_instance_id: g.instance_id.clone(),
            session_timeout: g.session_timeout,
            heartbeat_interval: g.heartbeat_interval,
            rebalance_timeout: g.rebalance_timeout,
            max_poll_interval: g.max_poll_interval,
            retry_backoff: g.retry_backoff,
            retry_backoff_max: g.retry_backoff_max,
            partition_assignment_strategy: g
                .assignors
                .iter()
                .map(|a| a.name().to_string())
                .collect(),
            client_rack: g.rack.clone(),
            revoke_timeout: g.revoke_timeout,
            enable_auto_commit: s.enable_auto_commit,
            auto_commit_interval: s.auto_commit_interval,
            require_stable: s.require_stable,
            topic_refresh: s.topic_refresh,
        }
    }
}

impl PartialEq for GroupSettings {
    fn eq(&self, other: &Self) -> bool {
        Repr::from(self) == Repr::from(other)
    }
}

impl Eq for GroupSettings {}

impl Serialize for GroupSettings {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        Repr::from(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for GroupSettings {
    /// Assignors are looked up by name among the built-in ones (a custom assignor cannot be
    /// deserialized: set it in code).
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let r = Repr::deserialize(d)?;
        let assignors = parse_strategies(&r.partition_assignment_strategy.join(","))
            .map_err(serde::de::Error::custom)?;
        let mut s = GroupSettings::new(r.group_id);
        let g = &mut s.group;
        g.instance_id = r.group_instance_id;
        g.session_timeout = r.session_timeout;
        g.heartbeat_interval = r.heartbeat_interval;
        g.rebalance_timeout = r.rebalance_timeout;
        g.max_poll_interval = r.max_poll_interval;
        g.retry_backoff = r.retry_backoff;
        g.retry_backoff_max = r.retry_backoff_max;
        g.assignors = assignors;
        g.rack = r.client_rack;
        g.revoke_timeout = r.revoke_timeout;
        s.enable_auto_commit = r.enable_auto_commit;
        s.auto_commit_interval = r.auto_commit_interval;
        s.require_stable = r.require_stable;
        s.topic_refresh = r.topic_refresh;
        Ok(s)
    }
}

/// `Option<Duration>` as integer milliseconds or null.
mod opt_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as milliseconds or null.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    /// Deserializes from milliseconds or null.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

fn parse_strategies(v: &str) -> std::result::Result<Vec<Arc<dyn Assignor>>, String> {
    let mut out = Vec::new();
    for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        out.push(builtin(name).ok_or_else(|| {
            format!("unknown assignor `{name}` (range, roundrobin, sticky, cooperative-sticky)")
        })?);
    }
    if out.is_empty() {
        return Err("no assignor given".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_names() {
        let mut p = Properties::new()
            .with("group.id", "g")
            .with("group.instance.id", "i1")
            .with("session.timeout.ms", "6000")
            .with("heartbeat.interval.ms", "500")
            .with("max.poll.interval.ms", "6000")
            .with("partition.assignment.strategy", "cooperative-sticky,range")
            .with("enable.auto.commit", "false")
            .with("other", "x");
        let s = GroupSettings::take_from(&mut p).unwrap();
        assert_eq!(s.group.instance_id.as_deref(), Some("i1"));
        assert_eq!(s.group.session_timeout, Duration::from_millis(6000));
        assert_eq!(s.group.assignors[0].name(), "cooperative-sticky");
        assert!(!s.enable_auto_commit);
        assert!(p.contains("other"));
        let mut bad = Properties::new()
            .with("group.id", "g")
            .with("partition.assignment.strategy", "fair");
        let e = GroupSettings::take_from(&mut bad).unwrap_err().to_string();
        assert!(
            e.contains("partition.assignment.strategy") && e.contains("fair"),
            "{e}"
        );
        assert!(GroupSettings::take_from(&mut Properties::new()).is_err());
    }

    #[test]
    fn without_group_id_values_are_checked_then_ignored() {
        let mut p = Properties::new()
            .with("enable.auto.commit", "false")
            .with("session.timeout.ms", "6000");
        assert!(GroupSettings::take_optional(&mut p).unwrap().is_none());
        assert!(!p.contains("session.timeout.ms"), "consumed");
        let mut bad = Properties::new().with("session.timeout.ms", "soon");
        let e = GroupSettings::take_optional(&mut bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("session.timeout.ms"), "{e}");
    }

    #[test]
    fn serde_round_trip_flat_with_defaults() {
        let mut s = GroupSettings::new("g")
            .with_instance_id("i")
            .with_assignors(vec![builtin("cooperative-sticky").unwrap()])
            .with_auto_commit(false);
        s.group.max_poll_interval = None;
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.contains("\"partition_assignment_strategy\":[\"cooperative-sticky\"]"),
            "{json}"
        );
        assert!(json.contains("\"session_timeout\":45000"), "{json}");
        let back: GroupSettings = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let partial: GroupSettings =
            serde_json::from_str(r#"{"group_id":"h","heartbeat_interval":500}"#).unwrap();
        assert_eq!(partial.group.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(partial, {
            let mut d = GroupSettings::new("h");
            d.group.heartbeat_interval = Duration::from_millis(500);
            d
        });
        let e = serde_json::from_str::<GroupSettings>(
            r#"{"group_id":"h","partition_assignment_strategy":["fair"]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("fair"), "{e}");
    }
}
