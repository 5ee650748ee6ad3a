//! `krust groups list|describe|reset-offsets|delete`, over `krust_client::group::admin`.

use std::process::ExitCode;

use krust_client::consumer::TopicPartition;
use krust_client::group::admin::{
    delete_groups, describe_group, list_groups, reset_offsets, GroupDescription, ResetTo,
};
use krust_client::Cluster;
use krust_wire::ErrorCode;

use super::{client_error, topic_names};
use crate::cli::{GroupResetArgs, GroupsCommand};
use crate::error::CliError;

/// A group error in one line: a missing or busy group is named plainly.
fn group_error(e: krust_client::Error, group: &str) -> CliError {
    match e.code() {
        Some(ErrorCode::GROUP_ID_NOT_FOUND) => unknown_group(group),
        Some(ErrorCode::NON_EMPTY_GROUP) => CliError::failed(format!(
            "group '{group}' still has active members (stop them first)"
        )),
        Some(ErrorCode::UNKNOWN_MEMBER_ID)
        | Some(ErrorCode::ILLEGAL_GENERATION)
        | Some(ErrorCode::REBALANCE_IN_PROGRESS) => CliError::failed(format!(
            "group '{group}' has active members: its offsets can only move while it is empty"
        )),
        _ => client_error(e, None),
    }
}

fn unknown_group(group: &str) -> CliError {
    CliError::failed(format!("unknown group '{group}'"))
}

/// Runs a `groups` subcommand.
pub(crate) async fn run(cmd: GroupsCommand) -> Result<ExitCode, CliError> {
    match cmd {
        GroupsCommand::List(args) => {
            let cluster = super::connect_cluster(&args.conn).await?;
            let groups = list_groups(&cluster)
                .await
                .map_err(|e| client_error(e, None))?;
            for g in groups {
                let state = g.state.as_deref().unwrap_or("-");
                let kind = if g.protocol_type.is_empty() {
                    "-"
                } else {
                    g.protocol_type.as_str()
                };
                println!("{}\t{state}\t{kind}", g.group_id);
            }
            cluster.close();
            Ok(ExitCode::SUCCESS)
        }
        GroupsCommand::Describe(args) => {
            let cluster = super::connect_cluster(&args.conn).await?;
            let mut d = describe_group(&cluster, &args.group)
                .await
                .map_err(|e| group_error(e, &args.group))?;
            // Kafka says Dead for a group it does not know; tansu says Empty. Either way, a
            // group with no member, no protocol and no committed offset is not there.
            let nothing = d.members.is_empty() && d.offsets.is_empty();
            if nothing && (d.state == "Dead" || d.protocol_type.is_empty()) {
                return Err(unknown_group(&args.group));
            }
            exact_ends(&cluster, &mut d).await;
            print!("{}", render_description(&d));
            cluster.close();
            Ok(ExitCode::SUCCESS)
        }
        GroupsCommand::ResetOffsets(args) => {
            let cluster = super::connect_cluster(&args.conn).await?;
            let moved = reset(&cluster, &args).await?;
            println!("topic\tpartition\toffset");
            for (tp, o) in &moved {
                println!("{}\t{}\t{o}", tp.topic, tp.partition);
            }
            eprintln!(
                "krust: group '{}': {} partition(s) of '{}' reset",
                args.group,
                moved.len(),
                args.topic
            );
            cluster.close();
            Ok(ExitCode::SUCCESS)
        }
        GroupsCommand::Delete(args) => {
            let cluster = super::connect_cluster(&args.conn).await?;
            let names: Vec<&str> = args.groups.iter().map(String::as_str).collect();
            let mut results = delete_groups(&cluster, &names)
                .await
                .map_err(|e| client_error(e, None))?;
            let mut first_error = None;
            for g in &args.groups {
                match results.remove(g) {
                    Some(Ok(())) => eprintln!("krust: deleted group '{g}'"),
                    Some(Err(e)) if first_error.is_none() => {
                        first_error = Some(group_error(e, g));
                    }
                    _ => {}
                }
            }
            cluster.close();
            match first_error {
                Some(e) => Err(e),
                None => Ok(ExitCode::SUCCESS),
            }
        }
    }
}

/// Corrects the end offsets (and so the lag) of `d` with the high watermarks a Fetch reports:
/// ListOffsets LATEST is not exact on every broker (tansu's can trail by a batch, see `krust
/// offsets`). Best effort: a partition whose watermark is not seen within 5 s keeps its listed
/// end.
async fn exact_ends(cluster: &Cluster, d: &mut GroupDescription) {
    use krust_client::consumer::StartOffset;
    use krust_client::{Consumer, ConsumerConfig};
    if d.offsets.is_empty() {
        return;
    }
    let mut config = ConsumerConfig::default();
    config.client = cluster.config().clone();
    // Only the watermarks are wanted: fetch as little as possible.
    config.max_partition_fetch_bytes = 1024;
    let Ok(mut consumer) = Consumer::with_cluster(cluster.clone(), config) else {
        return;
    };
    let tps: Vec<TopicPartition> = d.offsets.keys().cloned().collect();
    if consumer
        .assign(tps.iter().map(|tp| (tp.clone(), StartOffset::Earliest)))
        .await
        .is_err()
    {
        return;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < tps.len() && std::time::Instant::now() < deadline {
        let _ = consumer
            .poll_timeout(std::time::Duration::from_millis(200))
            .await;
        for tp in &tps {
            if let Some(w) = consumer.watermarks(tp) {
                seen.insert(tp.clone(), w.high_watermark);
            }
        }
    }
    for (tp, l) in d.offsets.iter_mut() {
        if let Some(hw) = seen.get(tp) {
            let end = l.end.map_or(*hw, |e| e.max(*hw));
            l.end = Some(end);
            l.lag = l.committed.map(|c| (end - c).max(0));
            l.end_error = None;
        }
    }
}

/// `reset-offsets`: checks the topic and partitions, then commits the new offsets.
async fn reset(
    cluster: &Cluster,
    args: &GroupResetArgs,
) -> Result<std::collections::BTreeMap<TopicPartition, i64>, CliError> {
    let to = if args.to_earliest {
        ResetTo::Earliest
    } else if args.to_latest {
        ResetTo::Latest
    } else if let Some(o) = args.to_offset {
        if o < 0 {
            return Err(CliError::Usage("--to-offset must not be negative".into()));
        }
        ResetTo::Offset(o)
    } else if let Some(t) = args.to_timestamp {
        if t < 0 {
            return Err(CliError::Usage(
                "--to-timestamp must not be negative".into(),
            ));
        }
        ResetTo::Timestamp(t)
    } else {
        return Err(CliError::Usage(
            "one of --to-earliest, --to-latest, --to-offset, --to-timestamp is required".into(),
        ));
    };
    let topic = args.topic.as_str();
    if !topic_names(cluster, true).await?.iter().any(|t| t == topic) {
        return Err(CliError::UnknownTopic(topic.to_string()));
    }
    let meta = cluster
        .topic(topic)
        .await
        .map_err(|e| client_error(e, Some(topic)))?;
    let count = meta.partitions.len() as i32;
    let partitions: Vec<i32> = if args.partitions.is_empty() {
        (0..count).collect()
    } else {
        if let Some(p) = args.partitions.iter().find(|p| **p < 0 || **p >= count) {
            return Err(CliError::failed(format!(
                "topic '{topic}' has no partition {p} (it has {count})"
            )));
        }
        args.partitions.clone()
    };
    let tps: Vec<TopicPartition> = partitions
        .iter()
        .map(|p| TopicPartition::new(topic, *p))
        .collect();
    reset_offsets(cluster, &args.group, &tps, to)
        .await
        .map_err(|e| group_error(e, &args.group))
}

/// The `describe` text: a header line, the members, then one row per partition with the
/// committed offset, the end offset, the lag and the owner.
pub(crate) fn render_description(d: &GroupDescription) -> String {
    let mut s = String::new();
    let protocol = match (d.protocol_type.as_str(), d.protocol.as_str()) {
        ("", "") => "-".to_string(),
        (t, "") => t.to_string(),
        (t, p) => format!("{t}/{p}"),
    };
    s.push_str(&format!(
        "group {}  state {}  protocol {protocol}  coordinator {}  members {}\n",
        d.group_id,
        d.state,
        d.coordinator,
        d.members.len()
    ));
    // Members are numbered (member ids are long); the partition table names owners by number.
    if !d.members.is_empty() {
        s.push('\n');
        let mut rows = vec![vec![
            "MEMBER".to_string(),
            "MEMBER-ID".to_string(),
            "INSTANCE".to_string(),
            "CLIENT-ID".to_string(),
            "HOST".to_string(),
            "ASSIGNMENT".to_string(),
        ]];
        for (i, m) in d.members.iter().enumerate() {
            rows.push(vec![
                format!("#{}", i + 1),
                m.member_id.clone(),
                m.instance_id.clone().unwrap_or_else(|| "-".into()),
                dash(&m.client_id),
                dash(&m.client_host),
                assignment_text(&m.assignment),
            ]);
        }
        s.push_str(&table(&rows));
    }
    s.push('\n');
    let mut rows = vec![vec![
        "TOPIC".to_string(),
        "PARTITION".to_string(),
        "COMMITTED".to_string(),
        "END".to_string(),
        "LAG".to_string(),
        "OWNER".to_string(),
    ]];
    for (tp, l) in &d.offsets {
        let owner = l
            .owner
            .as_ref()
            .and_then(|o| d.members.iter().position(|m| &m.member_id == o))
            .map_or("-".to_string(), |i| format!("#{}", i + 1));
        let num = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        rows.push(vec![
            tp.topic.to_string(),
            tp.partition.to_string(),
            num(l.committed),
            num(l.end),
            num(l.lag),
            owner,
        ]);
    }
    s.push_str(&table(&rows));
    let total: i64 = d.offsets.values().filter_map(|l| l.lag).sum();
    s.push_str(&format!("total lag {total}\n"));
    for (tp, l) in &d.offsets {
        if let (None, Some(e)) = (l.end, &l.end_error) {
            s.push_str(&format!("{tp}: end offset unknown: {e}\n"));
        }
    }
    s
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// `topic:0,1,2 other:0`.
fn assignment_text(a: &[TopicPartition]) -> String {
    if a.is_empty() {
        return "-".into();
    }
    let mut by_topic: std::collections::BTreeMap<&str, Vec<i32>> = Default::default();
    for tp in a {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    by_topic
        .into_iter()
        .map(|(t, mut ps)| {
            ps.sort_unstable();
            let ps: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
            format!("{t}:{}", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Left-aligned columns separated by two spaces (the last column is not padded).
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|v| v.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, v) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(v);
            } else {
                line.push_str(&format!("{v:<w$}  ", w = widths[c]));
            }
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use krust_client::group::admin::{GroupMemberDescription, PartitionLag};

    #[test]
    fn description_is_a_readable_table() {
        let tp = |p| TopicPartition::new("orders", p);
        let d = GroupDescription {
            group_id: "g".into(),
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            coordinator: 1,
            members: vec![GroupMemberDescription {
                member_id: "m-1".into(),
                instance_id: None,
                client_id: "krust".into(),
                client_host: "/127.0.0.1".into(),
                topics: vec!["orders".into()],
                assignment: vec![tp(1), tp(0)],
            }],
            offsets: [
                (
                    tp(0),
                    PartitionLag {
                        committed: Some(5),
                        end: Some(12),
                        lag: Some(7),
                        owner: Some("m-1".into()),
                        end_error: None,
                    },
                ),
                (
                    tp(1),
                    PartitionLag {
                        committed: None,
                        end: None,
                        lag: None,
                        owner: None,
                        end_error: Some("TOPIC_AUTHORIZATION_FAILED".into()),
                    },
                ),
            ]
            .into_iter()
            .collect(),
        };
        let text = render_description(&d);
        assert!(
            text.starts_with("group g  state Stable  protocol consumer/range"),
            "{text}"
        );
        assert!(text.contains("#1      m-1"), "{text}");
        assert!(text.contains("orders:0,1"), "{text}");
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with("orders  0"))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(row, ["orders", "0", "5", "12", "7", "#1"]);
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.starts_with("orders  1"))
            .unwrap()
            .split_whitespace()
            .collect();
        assert_eq!(row, ["orders", "1", "-", "-", "-", "-"]);
        assert!(
            text.ends_with(
                "total lag 7\norders-1: end offset unknown: TOPIC_AUTHORIZATION_FAILED\n"
            ),
            "{text}"
        );
    }
}
