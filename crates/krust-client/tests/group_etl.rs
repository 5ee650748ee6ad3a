//! A chained ETL in the style of franz-go's group test, against krust-testkit's fake cluster:
//! `KRUST_ETL_RECORDS` records (default 50 000; the 200 000 takes minutes in a debug
//! build) are copied topic1 -> topic2 -> topic3 -> topic4 by three consumer groups (range,
//! cooperative-sticky, roundrobin). Each level starts with two members; a third joins, one quits,
//! a fourth joins and another quits while records flow, each step triggered by the level's
//! progress. Members produce every polled record, wait for its acknowledgement, then commit.
//!
//! Checked: every level holds every key at least once, and the duplicates a level adds are at
//! most what was in flight when it rebalanced (records produced but not committed when a commit
//! failed or a partition moved away), plus the duplicates it was given. Printed: the duplicates
//! per level.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use krust_client::consumer::ConsumerConfig;
use krust_client::group::Subscription;
use krust_client::{
    ClientConfig, Cluster, Consumer, Producer, ProducerConfig, ProducerRecord, Properties,
};
use krust_core::fetch::TopicPartition;
use krust_testkit::{ClusterConfig, FakeCluster};
use tokio::sync::watch;

const PARTITIONS: i32 = 6;
const LEVELS: usize = 3;
const ASSIGNORS: [&str; LEVELS] = ["range", "cooperative-sticky", "roundrobin"];

fn records() -> usize {
    std::env::var("KRUST_ETL_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
}

fn topic(n: usize) -> String {
    format!("topic{n}")
}

/// What a level's members report.
#[derive(Default)]
struct LevelStats {
    /// Records produced to the next topic and acknowledged.
    produced: AtomicUsize,
    /// Records produced whose offsets were not committed by this member (commit failed or the
    /// partition moved away first): the new owner copies them again.
    in_flight_at_rebalance: AtomicUsize,
    /// Commits that failed (fenced by a rebalance).
    failed_commits: AtomicUsize,
}

struct Member {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn consumer_config(bootstrap: &str, level: usize) -> ConsumerConfig {
    ConsumerConfig::from_properties(
        Properties::new()
            .with("bootstrap.servers", bootstrap)
            .with("request.timeout.ms", "5000")
            .with("retry.backoff.ms", "20")
            .with("group.id", format!("etl-{level}"))
            .with("partition.assignment.strategy", ASSIGNORS[level - 1])
            .with("session.timeout.ms", "6000")
            .with("heartbeat.interval.ms", "200")
            .with("max.poll.interval.ms", "30000")
            .with("enable.auto.commit", "false")
            .with("krust.revoke.timeout.ms", "3000")
            .with("auto.offset.reset", "earliest")
            .with("fetch.max.wait.ms", "50")
            .with("max.poll.records", "500"),
    )
    .expect("consumer config")
}

fn spawn_member(
    cluster: &Cluster,
    bootstrap: &str,
    level: usize,
    stats: Arc<LevelStats>,
    progress: Arc<watch::Sender<usize>>,
) -> Member {
    let (stop, mut stopped) = watch::channel(false);
    let consumer =
        Consumer::with_cluster(cluster.clone(), consumer_config(bootstrap, level)).unwrap();
    let mut pc = ProducerConfig::new(bootstrap);
    pc.client = cluster.config().clone();
    pc.linger = Duration::from_millis(2);
    let producer = Producer::with_cluster(cluster.clone(), pc).unwrap();
    let output = topic(level + 1);
    let task = tokio::spawn(async move {
        let mut gc = consumer
            .subscribe(Subscription::topics([topic(level)]))
            .unwrap();
        loop {
            let recs = tokio::select! {
                r = gc.poll_timeout(Duration::from_millis(100)) => r.expect("poll"),
                _ = stopped.wait_for(|s| *s) => break,
            };
            let Some(recs) = recs else { continue };
            let mut pending: BTreeMap<TopicPartition, usize> = BTreeMap::new();
            let mut deliveries = Vec::with_capacity(recs.len());
            for r in &recs {
                *pending
                    .entry(TopicPartition::new(r.topic.clone(), r.partition))
                    .or_default() += 1;
                let mut out = ProducerRecord::new(output.clone()).with_partition(r.partition);
                if let Some(v) = &r.value {
                    out = out.with_key(v.clone()).with_value(v.clone());
                }
                deliveries.push(producer.send(out).await.expect("send"));
            }
            for d in deliveries {
                d.await.expect("produced");
            }
            stats.produced.fetch_add(recs.len(), Ordering::Relaxed);
            // Commit after processing. Partitions that moved away meanwhile are not committed
            // (GroupConsumer commits what it owns): their records will be copied again.
            let owned = gc.member().assignment();
            let lost: usize = match gc.commit().await {
                Ok(()) => pending
                    .iter()
                    .filter(|(tp, _)| !owned.contains(*tp))
                    .map(|(_, n)| n)
                    .sum(),
                Err(_) => {
                    stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                    pending.values().sum()
                }
            };
            stats
                .in_flight_at_rebalance
                .fetch_add(lost, Ordering::Relaxed);
            progress.send_modify(|n| *n += recs.len());
        }
        gc.close().await;
        producer.close().await;
    });
    Member { stop, task }
}

/// Sum of the group's committed offsets over the topic's partitions.
fn committed(fake: &FakeCluster, level: usize) -> i64 {
    (0..PARTITIONS)
        .map(|p| {
            fake.committed(&format!("etl-{level}"), &topic(level), p)
                .unwrap_or(0)
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_etl_through_three_groups_with_members_coming_and_going() {
    let n = records();
    let mut cfg = ClusterConfig::new().with_brokers(1);
    for l in 1..=LEVELS + 1 {
        cfg = cfg.with_topic(topic(l), PARTITIONS, 1);
    }
    let fake = FakeCluster::with_config(cfg).await.expect("fake cluster");
    let bootstrap = fake.bootstrap();
    for p in 0..PARTITIONS {
        let values: Vec<Vec<u8>> = (0..n)
            .filter(|i| (*i as i32) % PARTITIONS == p)
            .map(|i| format!("k{i:07}").into_bytes())
            .collect();
        for chunk in values.chunks(1000) {
            let refs: Vec<&[u8]> = chunk.iter().map(|v| v.as_slice()).collect();
            fake.append(
                &topic(1),
                p,
                krust_testkit::batch::data_batch(&refs, 1, -1, 0, 0, false),
            )
            .unwrap();
        }
    }
    let mut c = ClientConfig::new(&bootstrap);
    c.request_timeout = Duration::from_millis(5_000);
    c.retry_backoff = Duration::from_millis(20);
    c.retry_backoff_max = Duration::from_millis(200);
    let cluster = Cluster::connect(c).await.expect("connect");
    let t0 = Instant::now();

    // Per level: its stats, its progress (records processed), and a driver that changes the
    // membership at 20/40/60/80 % of the records.
    let mut drivers = Vec::new();
    let mut all_stats = Vec::new();
    let mut watchers = Vec::new();
    for level in 1..=LEVELS {
        let stats = Arc::new(LevelStats::default());
        all_stats.push(stats.clone());
        let progress = Arc::new(watch::channel(0usize).0);
        watchers.push(progress.subscribe());
        let cluster = cluster.clone();
        let bootstrap = bootstrap.clone();
        drivers.push(tokio::spawn(async move {
            let spawn =
                || spawn_member(&cluster, &bootstrap, level, stats.clone(), progress.clone());
            let mut members: Vec<Member> = vec![spawn(), spawn()];
            let mut rx = progress.subscribe();
            let mut changes = 0;
            for (step, pct) in [20, 40, 60, 80].into_iter().enumerate() {
                let at = n * pct / 100;
                rx.wait_for(|done| *done >= at).await.unwrap();
                if step % 2 == 0 {
                    members.push(spawn());
                } else {
                    let quitting = members.remove(0);
                    let _ = quitting.stop.send(true);
                    quitting.task.await.unwrap();
                }
                changes += 1;
            }
            (members, changes)
        }));
    }
    // Done when every level has committed everything it was given, level by level (checked
    // after each of the level's commits).
    let deadline = t0 + Duration::from_secs(240);
    for level in 1..=LEVELS {
        let rx = &mut watchers[level - 1];
        loop {
            rx.borrow_and_update();
            let given = if level == 1 {
                n
            } else {
                all_stats[level - 2].produced.load(Ordering::Relaxed)
            };
            let upstream_done = level == 1
                || committed(&fake, level - 1) as usize >= {
                    if level == 2 {
                        n
                    } else {
                        all_stats[level - 3].produced.load(Ordering::Relaxed)
                    }
                };
            if upstream_done && committed(&fake, level) as usize >= given {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "level {level}: committed {} of {given}",
                committed(&fake, level)
            );
            let _ = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await;
        }
    }
    let elapsed = t0.elapsed();
    let mut members = Vec::new();
    for d in drivers {
        let (ms, changes) = d.await.unwrap();
        assert_eq!(changes, 4);
        members.extend(ms);
    }
    for m in members {
        let _ = m.stop.send(true);
        m.task.await.unwrap();
    }

    // Every level holds every key; duplicates bounded by what was in flight at rebalances.
    let mut dups_in = 0usize;
    for level in 1..=LEVELS {
        let out = topic(level + 1);
        let mut seen: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for p in 0..PARTITIONS {
            for (_, v) in fake.records(&out, p).unwrap() {
                *seen.entry(v.unwrap().to_vec()).or_default() += 1;
            }
        }
        let total: usize = seen.values().sum();
        let keys: BTreeSet<&Vec<u8>> = seen.keys().collect();
        assert_eq!(keys.len(), n, "{out} holds every key");
        let dups = total - n;
        let s = &all_stats[level - 1];
        let in_flight = s.in_flight_at_rebalance.load(Ordering::Relaxed);
        eprintln!(
            "ETL level {level} ({}; {out}): {total} records, {dups} duplicates ({} added here; in flight at rebalances {in_flight}, failed commits {})",
            ASSIGNORS[level - 1],
            dups - dups_in,
            s.failed_commits.load(Ordering::Relaxed),
        );
        assert!(
            dups <= dups_in + in_flight,
            "level {level}: {dups} duplicates, more than the {dups_in} received plus {in_flight} in flight"
        );
        dups_in = dups;
    }
    eprintln!("ETL: {n} records through {LEVELS} groups in {elapsed:?}");
}
