//! [`GroupSettings`]: the consumer-group properties (`group.id`, `session.timeout.ms`,
//! `partition.assignment.strategy`, `enable.auto.commit`, ...), parsed from Kafka property names.

use std::sync::Arc;
use std::time::Duration;

use krust_core::group::{builtin, Assignor, GroupConfig};

use crate::config::Properties;
use crate::error::{Error, Result};

/// Everything a group member needs besides the connection settings.
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
        let id = props
            .take("group.id")
            .filter(|g| !g.is_empty())
            .ok_or_else(|| Error::config("group.id", "required to join a group"))?;
        let mut s = GroupSettings::new(id);
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
        s.validate()?;
        Ok(s)
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
}
