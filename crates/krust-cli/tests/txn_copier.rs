//! The transactional copier (`krust txn copy`) in the shape of Kafka's transactions test:
//! unique records copied from a 2-partition input to a 3-partition output in transactions of
//! 750 by a consume-transform-produce loop with send_offsets_to_transaction, while the copier
//! process is killed with SIGKILL three times at random points and restarted.
//!
//! - Fake cluster (krust-testkit, in-process; the copier is a separate process): every broker
//!   sits behind a `FaultProxy` that resets each connection after 500–1500 ms. The
//!   read_committed output holds exactly the input set (0 duplicates, 0 missing), and a
//!   concurrent read_committed reader never sees an aborted or duplicate record.
//! - Real broker (`KRUST_BROKER`, tansu): tansu sends no aborted-transactions list in Fetch,
//!   so no client can drop aborted records there; read_committed on tansu stops at the LSO
//!   and returns the aborted records below it. The test asserts what is true there: the
//!   committed transactions (rebuilt from the log's own control markers) hold exactly the
//!   input set, and everything the reader saw beyond that is an aborted record.
//! - Zombie fencing (fake cluster): copier A is paused with SIGSTOP past its transaction and
//!   session timeouts, copier B takes over with the same transactional id, A is resumed with
//!   SIGCONT: A stops with a fatal fenced error and commits nothing more; the output is
//!   exactly once.
//!
//! Size: `KRUST_COPIER_RECORDS` (default 100,000, the number).

mod common;

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use krust_client::consumer::{StartOffset, TopicPartition};
use krust_client::{Cluster, Consumer, ConsumerConfig, Producer, ProducerConfig, Properties};
use krust_core::backoff::SmallRng;
use krust_testkit::{test_seed, ClusterConfig, FakeCluster, FaultProxy, TxnProtocol};
use tokio::sync::watch;

use common::suffix;
use common::txn_log::txn_log;

const BATCH: &str = "750";

fn records_wanted() -> usize {
    std::env::var("KRUST_COPIER_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

/// The test's random source: krust-core's SmallRng seeded from `KRUST_COPIER_SEED` or the
/// clock (the seed is printed, so a failing run can be replayed).
fn rng() -> SmallRng {
    SmallRng::new(test_seed("KRUST_COPIER_SEED"))
}

/// Uniform in `[lo, hi)` (`lo` when the range is empty).
fn value(i: usize) -> String {
    format!("v{i:07}")
}

/// Writes `range` as records `k{i}` / `v{i}` to `topic` (idempotent producer).
async fn seed(bootstrap: &str, topic: &str, range: std::ops::Range<usize>) {
    let producer = Producer::new(ProducerConfig::new(bootstrap)).await.unwrap();
    let mut acks = Vec::with_capacity(range.len());
    for i in range {
        let rec = krust_client::ProducerRecord::new(topic)
            .with_key(format!("k{i}"))
            .with_value(value(i));
        acks.push(producer.send(rec).await.expect("send"));
    }
    for a in acks {
        a.await.expect("input record acknowledged");
    }
    producer.close().await;
}

/// A `krust txn copy` process; killed on drop.
struct Copier {
    child: Child,
    log: PathBuf,
}

impl Copier {
    fn start(bootstrap: &str, names: &Names, extra: &[&str]) -> Copier {
        Copier::start_as(bootstrap, names, &names.txn_id, extra)
    }

    /// As [`Copier::start`] with another transactional id (a second copier in the group).
    fn start_as(bootstrap: &str, names: &Names, txn_id: &str, extra: &[&str]) -> Copier {
        let log = std::env::temp_dir().join(format!("krust-copier-{}.log", suffix()));
        let file = std::fs::File::create(&log).unwrap();
        let child = common::krust()
            .args([
                "txn",
                "copy",
                "-b",
                bootstrap,
                "--from",
                &names.input,
                "--to",
                &names.output,
                "-G",
                &names.group,
                "--transactional-id",
                txn_id,
            ])
            .args(if extra.contains(&"--batch") {
                &[][..]
            } else {
                &["--batch", BATCH][..]
            })
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn krust txn copy");
        Copier { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the copier says it is copying (set up, its stop signals registered: a
    /// SIGTERM from now on ends it cleanly instead of killing it).
    async fn wait_ready(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log_text().contains("krust: copying") {
            if let Some(st) = self.exited() {
                panic!("copier exited before it ran ({st}): {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "copier not running after {limit:?}; log: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM once the copier can handle it.
    async fn terminate(&mut self) {
        self.wait_ready(Duration::from_secs(30)).await;
        self.signal("TERM");
    }

    fn signal(&self, sig: &str) {
        let st = std::process::Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} failed");
    }

    fn sigkill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the process to end (up to `limit`), polling its status.
    async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(st) = self.exited() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "copier did not exit within {limit:?}; log: {}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Copier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

struct Names {
    input: String,
    output: String,
    group: String,
    txn_id: String,
}

impl Names {
    fn new(tag: &str) -> Names {
        let s = suffix();
        Names {
            input: format!("copy-in-{tag}-{s}"),
            output: format!("copy-out-{tag}-{s}"),
            group: format!("copier-{tag}-{s}"),
            txn_id: format!("copier-txn-{tag}-{s}"),
        }
    }
}

/// What the concurrent read_committed reader saw.
#[derive(Debug, Default)]
struct Seen {
    total: usize,
    unique: BTreeSet<String>,
    duplicates: Vec<String>,
    unknown: Vec<String>,
}

/// A read_committed consumer of every partition of `topic`, from the beginning, running until
/// `stop` is set; `progress` carries the count of unique known values seen.
struct Reader {
    seen: Arc<Mutex<Seen>>,
    progress: watch::Receiver<(usize, usize)>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    async fn start(
        bootstrap: &str,
        topic: &str,
        partitions: i32,
        known: Arc<HashSet<String>>,
    ) -> Reader {
        let mut props = Properties::new();
        props.set("bootstrap.servers", bootstrap.to_string());
        props.set("isolation.level", "read_committed");
        let config = ConsumerConfig::from_properties(props).unwrap();
        let mut consumer = Consumer::connect(config).await.unwrap();
        consumer
            .assign((0..partitions).map(|p| (TopicPartition::new(topic, p), StartOffset::Earliest)))
            .await
            .unwrap();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, progress) = watch::channel((0, 0));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let task = tokio::spawn(async move {
            while !stop2.load(std::sync::atomic::Ordering::Acquire) {
                let recs = match consumer.poll_timeout(Duration::from_millis(100)).await {
                    Ok(r) => r,
                    Err(e) => panic!("reader: {e}"),
                };
                let mut s = seen2.lock().unwrap();
                for r in recs {
                    let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                        .into_owned();
                    s.total += 1;
                    if !known.contains(&v) {
                        s.unknown.push(v);
                    } else if !s.unique.insert(v.clone()) {
                        s.duplicates.push(v);
                    }
                }
                let _ = tx.send((s.unique.len(), s.total));
            }
            consumer.cluster().close();
        });
        Reader {
            seen,
            progress,
            stop,
            task,
        }
    }

    /// Waits until `pred(unique, total)` holds (or `limit` passes: panics).
    async fn wait(&mut self, limit: Duration, what: &str, pred: impl Fn(usize, usize) -> bool) {
        let ok = tokio::time::timeout(limit, self.progress.wait_for(|(u, t)| pred(*u, *t)))
            .await
            .is_ok_and(|r| r.is_ok());
        let (u, t) = *self.progress.borrow();
        assert!(
            ok,
            "reader: {what} not reached within {limit:?} (unique {u}, total {t})"
        );
    }

    async fn finish(self) -> Seen {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.task.await.expect("reader task");
        Arc::try_unwrap(self.seen).unwrap().into_inner().unwrap()
    }
}

/// As [`Reader::wait`], failing at once (with its log) if `copier` exits meanwhile.
async fn wait_alive(
    reader: &mut Reader,
    copier: &mut Copier,
    limit: Duration,
    what: &str,
    pred: impl Fn(usize, usize) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let ok = tokio::time::timeout(
            Duration::from_millis(500),
            reader.progress.wait_for(|(u, t)| pred(*u, *t)),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if ok {
            return;
        }
        if let Some(st) = copier.exited() {
            panic!(
                "copier exited ({st}) while waiting for {what}: {}",
                copier.log_text()
            );
        }
        let (u, t) = *reader.progress.borrow();
        assert!(
            Instant::now() < deadline,
            "reader: {what} not reached within {limit:?} (unique {u}, total {t}); copier log: {}",
            copier.log_text()
        );
    }
}

/// A fake cluster of `brokers` brokers (from `config`) holding the copier's input (2
/// partitions) and output (3), every broker behind a [`FaultProxy`] (chaos off) and advertised
/// as the proxy.
async fn fake_behind_proxies(
    names: &Names,
    config: ClusterConfig,
    brokers: usize,
) -> (FakeCluster, Vec<FaultProxy>) {
    let fake = FakeCluster::with_config(
        config
            .with_brokers(brokers)
            .with_topic(&names.input, 2, 1)
            .with_topic(&names.output, 3, 1),
    )
    .await
    .unwrap();
    let mut proxies = Vec::new();
    for id in 0..brokers as i32 {
        let p = FaultProxy::start(fake.broker_addr(id)).await.unwrap();
        fake.set_advertised(id, "127.0.0.1", p.addr().port());
        proxies.push(p);
    }
    (fake, proxies)
}

/// Seeds the input with records `0..n` and starts a read_committed [`Reader`] of the output
/// (3 partitions) that knows the values `0..known`; returns those values and the reader.
async fn seed_and_read(
    bootstrap: &str,
    names: &Names,
    n: usize,
    known: usize,
) -> (Arc<HashSet<String>>, Reader) {
    seed(bootstrap, &names.input, 0..n).await;
    let known: Arc<HashSet<String>> = Arc::new((0..known).map(value).collect());
    let reader = Reader::start(bootstrap, &names.output, 3, known.clone()).await;
    (known, reader)
}

/// The copier's output log (3 partitions), sorted into transactions by its markers.
async fn output_log(bootstrap: &str, names: &Names) -> common::txn_log::TxnLog {
    let cluster = Cluster::connect(krust_client::ClientConfig::new(bootstrap))
        .await
        .unwrap();
    txn_log(&cluster, &names.output).await
}

/// The output log holds exactly the `n` input records in committed transactions: no
/// duplicate or missing one (`dups_missing`, from [`diff`]), none open, none written outside a
/// transaction.
fn assert_log_is_input(log: &common::txn_log::TxnLog, dups_missing: (usize, usize), n: usize) {
    assert_eq!(dups_missing, (0, 0), "committed output vs input");
    assert_eq!(log.committed.len(), n);
    assert!(
        log.open.is_empty(),
        "{} records in open transactions",
        log.open.len()
    );
    assert!(
        log.plain.is_empty(),
        "non-transactional records in the output"
    );
}

/// Duplicates and missing values of `got` against `want` (a set).
fn diff(want: &HashSet<String>, got: &[String]) -> (usize, usize) {
    let mut seen = HashSet::with_capacity(got.len());
    let mut dups = 0;
    for v in got {
        if !seen.insert(v.as_str()) {
            dups += 1;
        }
    }
    let missing = want.iter().filter(|v| !seen.contains(v.as_str())).count();
    (dups, missing)
}

/// Runs the copier over `n` records with three SIGKILLs at random points of its progress,
/// restarting it each time; returns the kills done and the seconds the copy took.
async fn copy_with_kills(
    bootstrap: &str,
    names: &Names,
    n: usize,
    reader: &mut Reader,
    copier_args: &[&str],
    limit: Duration,
) -> (usize, f64) {
    let mut rng = rng();
    let mut points: Vec<usize> = (0..3)
        .map(|_| rng.range(n as u64 / 20, n as u64 * 75 / 100) as usize)
        .collect();
    points.sort();
    // Paced so that a whole copy takes at least ~4 s: each transaction (of 750) is held open a
    // little before its commit. Unpaced, a fast machine copies everything between two looks at
    // the progress, and the kills land after the end instead of inside the copy. With the last
    // kill point at 75 %, at least ~1 s of copying is left when the reader sees it.
    let hold = (4000 * 750 / n.max(1)).clamp(5, 200).to_string();
    let mut args: Vec<&str> = copier_args.to_vec();
    args.extend(["--hold-ms", hold.as_str()]);
    let copier_args = &args[..];
    let started = Instant::now();
    let mut copier = Copier::start(bootstrap, names, copier_args);
    let mut kills = 0;
    for point in points {
        wait_alive(
            reader,
            &mut copier,
            limit,
            &format!("{point} unique records before kill {}", kills + 1),
            |u, _| u >= point,
        )
        .await;
        // A little further at random, so the kill lands anywhere in a transaction.
        tokio::time::sleep(Duration::from_millis(rng.below(100))).await;
        if let Some(st) = copier.exited() {
            panic!("copier exited on its own ({st}): {}", copier.log_text());
        }
        copier.sigkill();
        let at = reader.progress.borrow().0;
        eprintln!("SIGKILL {} with {at} of {n} records copied", kills + 1);
        assert!(at < n, "kill {} landed after the copy ended", kills + 1);
        kills += 1;
        copier = Copier::start(bootstrap, names, copier_args);
    }
    wait_alive(reader, &mut copier, limit, "every record copied", |u, _| {
        u >= n
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    assert!(
        copier.exited().is_none(),
        "copier died: {}",
        copier.log_text()
    );
    copier.terminate().await;
    let st = copier.wait_exit(Duration::from_secs(30)).await;
    assert!(
        st.success(),
        "copier stopped by SIGTERM: {st}; log: {}",
        copier.log_text()
    );
    (kills, secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copier_killed_three_times_on_fake_cluster_with_cut_connections() {
    kills_on_fake_cluster(records_wanted(), TxnProtocol::Classic).await;
}

/// The same under KIP-890 (transactions v2: the epoch is bumped at every commit and abort).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copier_killed_three_times_on_kip890_fake_cluster_with_cut_connections() {
    kills_on_fake_cluster(30_000usize.min(records_wanted()), TxnProtocol::Kip890).await;
}

async fn kills_on_fake_cluster(n: usize, protocol: TxnProtocol) {
    let names = Names::new("fake");
    let (fake, proxies) =
        fake_behind_proxies(&names, ClusterConfig::new().with_txn_protocol(protocol), 3).await;
    let b = fake.bootstrap();
    let (known, mut reader) = seed_and_read(&b, &names, n, n).await;
    for p in &proxies {
        p.set_chaos(true);
    }
    let copier_args = [
        "--consumer-property",
        "session.timeout.ms=3000",
        "--consumer-property",
        "heartbeat.interval.ms=300",
    ];
    let (kills, secs) = copy_with_kills(
        &b,
        &names,
        n,
        &mut reader,
        &copier_args,
        Duration::from_secs(120),
    )
    .await;
    let resets: u64 = proxies.iter().map(|p| p.stats().chaos_resets).sum();
    for p in &proxies {
        p.set_chaos(false);
    }
    let seen = reader.finish().await;

    let log = output_log(&b, &names).await;
    let (dups, missing) = diff(&known, &log.committed);
    eprintln!(
        "copier on the fake cluster ({protocol:?}): {n} records, {secs:.1} s, {kills} SIGKILLs, {resets} \
         connection resets, committed {} (duplicates {dups}, missing {missing}), aborted {}, \
         reader saw {} (duplicates {}, unknown {})",
        log.committed.len(),
        log.aborted.len(),
        seen.total,
        seen.duplicates.len(),
        seen.unknown.len()
    );
    assert_eq!(kills, 3);
    assert!(resets > 0, "the proxies cut no connection");
    assert_log_is_input(&log, (dups, missing), n);
    // The concurrent read_committed reader: every input record once, nothing else.
    assert_eq!(seen.unique.len(), n);
    assert!(
        seen.duplicates.is_empty(),
        "reader saw duplicates: {:?}",
        &seen.duplicates[..seen.duplicates.len().min(5)]
    );
    assert!(seen.unknown.is_empty(), "reader saw unknown values");
    assert_eq!(seen.total, n);
    // The consumer group's committed input offsets are the input's ends.
    for p in 0..2 {
        let (_, hw, _) = fake.offsets(&names.input, p).unwrap();
        assert_eq!(
            fake.committed(&names.group, &names.input, p),
            Some(hw),
            "input partition {p}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copier_killed_three_times_on_real_broker() {
    let Some(b) = common::broker() else {
        return;
    };
    let n = records_wanted();
    let names = Names::new("broker");
    let admin = krust_client::admin::Admin::connect(krust_client::ClientConfig::new(&b))
        .await
        .unwrap();
    admin
        .create_topics(&[
            krust_client::admin::NewTopic::new(&names.input, 2, 1),
            krust_client::admin::NewTopic::new(&names.output, 3, 1),
        ])
        .await
        .unwrap();
    let (known, mut reader) = seed_and_read(&b, &names, n, n).await;
    // tansu accepts short sessions; a killed member is gone after 2 s.
    let copier_args = [
        "--consumer-property",
        "session.timeout.ms=2000",
        "--consumer-property",
        "heartbeat.interval.ms=200",
    ];
    let (kills, secs) = copy_with_kills(
        &b,
        &names,
        n,
        &mut reader,
        &copier_args,
        Duration::from_secs(120),
    )
    .await;

    let log = output_log(&b, &names).await;
    // The reader drains what is below the LSO (tansu returns aborted records there too).
    let below_lso = log.committed.len() + log.aborted.len();
    reader
        .wait(Duration::from_secs(30), "the whole log", |_, t| {
            t >= below_lso
        })
        .await;
    let seen = reader.finish().await;
    let (dups, missing) = diff(&known, &log.committed);
    eprintln!(
        "copier on the real broker: {n} records, {secs:.1} s, {kills} SIGKILLs, committed {} \
         (duplicates {dups}, missing {missing}), aborted {}, reader saw {} (duplicates {}, \
         unknown {})",
        log.committed.len(),
        log.aborted.len(),
        seen.total,
        seen.duplicates.len(),
        seen.unknown.len()
    );
    assert_eq!(kills, 3);
    assert_log_is_input(&log, (dups, missing), n);
    // What read_committed gives on tansu: every committed record, plus the aborted ones (no
    // aborted-transactions list in Fetch): exactly the log below the LSO.
    assert_eq!(seen.unique.len(), n);
    assert!(seen.unknown.is_empty());
    assert_eq!(seen.total, below_lso, "reader total vs committed + aborted");
    let aborted: HashSet<&str> = log.aborted.iter().map(String::as_str).collect();
    assert!(
        seen.duplicates.iter().all(|d| aborted.contains(d.as_str())),
        "a duplicate the reader saw is not an aborted record"
    );
    admin
        .delete_topics(&[names.input.as_str(), names.output.as_str()])
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zombie_copier_is_fenced_on_fake_cluster() {
    let n = 20_000usize.min(records_wanted());
    let more = 2_000usize;
    let names = Names::new("zombie");
    let fake = FakeCluster::with_config(
        ClusterConfig::new()
            .with_brokers(1)
            .with_topic(&names.input, 2, 1)
            .with_topic(&names.output, 3, 1),
    )
    .await
    .unwrap();
    let b = fake.bootstrap();
    let (known, mut reader) = seed_and_read(&b, &names, n, n + more).await;
    let timeouts = [
        "--consumer-property",
        "session.timeout.ms=2000",
        "--consumer-property",
        "heartbeat.interval.ms=200",
        "--producer-property",
        "transaction.timeout.ms=3000",
        // delivery.timeout.ms follows the transaction timeout down, and must stay above
        // linger.ms + request.timeout.ms.
        "--producer-property",
        "request.timeout.ms=1000",
    ];
    // A holds each transaction open for a while, so that it is paused inside one.
    let mut a_args = timeouts.to_vec();
    a_args.extend(["--batch", "200", "--hold-ms", "400"]);
    let mut a = Copier::start(&b, &names, &a_args);
    wait_alive(
        &mut reader,
        &mut a,
        Duration::from_secs(30),
        "A's first commit",
        |u, _| u > 0,
    )
    .await;
    // Into the hold of A's next transaction (its records written, not committed), mostly.
    tokio::time::sleep(Duration::from_millis(rng().range(100, 300))).await;
    a.signal("STOP");
    let admin = krust_client::admin::Admin::connect(krust_client::ClientConfig::new(&b))
        .await
        .unwrap();
    let before = admin.describe_transactions(&[&names.txn_id]).await.unwrap()[0].clone();
    // Past A's timeouts: its session expired (the group is empty) and the coordinator aborted
    // its open transaction and bumped the epoch.
    fake.wait_for_group(&names.group, |g| g.members.is_empty())
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = admin.describe_transactions(&[&names.txn_id]).await.unwrap()[0].clone();
        if d.state != "Ongoing"
            && (before.state != "Ongoing" || d.producer_epoch > before.producer_epoch)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "transaction timeout did not fire: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let copied_by_a = reader.progress.borrow().0;

    let mut b_copier = Copier::start(&b, &names, &timeouts);
    wait_alive(
        &mut reader,
        &mut b_copier,
        Duration::from_secs(60),
        "B copied everything",
        |u, _| u >= n,
    )
    .await;
    a.signal("CONT");
    // New input: whoever owns its partitions copies it; A, if it gets any, must be fenced.
    seed(&b, &names.input, n..n + more).await;
    let st = a.wait_exit(Duration::from_secs(40)).await;
    let a_log = a.log_text();
    assert!(!st.success(), "A exited successfully: {a_log}");
    assert!(
        a_log.to_lowercase().contains("fenc"),
        "A's error names the fencing: {a_log}"
    );
    assert_eq!(
        a_log
            .lines()
            .filter(|l| l.contains("copier stopped"))
            .count(),
        1,
        "{a_log}"
    );
    wait_alive(
        &mut reader,
        &mut b_copier,
        Duration::from_secs(60),
        "B copied the new input",
        |u, _| u >= n + more,
    )
    .await;
    assert!(
        b_copier.exited().is_none(),
        "B died: {}",
        b_copier.log_text()
    );
    b_copier.terminate().await;
    assert!(b_copier.wait_exit(Duration::from_secs(30)).await.success());
    let seen = reader.finish().await;

    let log = output_log(&b, &names).await;
    let (dups, missing) = diff(&known, &log.committed);
    eprintln!(
        "zombie: A copied {copied_by_a} before the pause (its transaction then: {} epoch {}); \
         A's last words: {}; committed {} (duplicates {dups}, missing {missing}), aborted {}",
        before.state,
        before.producer_epoch,
        a_log.lines().last().unwrap_or_default(),
        log.committed.len(),
        log.aborted.len()
    );
    assert_eq!((dups, missing), (0, 0));
    assert!(log.open.is_empty());
    assert!(seen.duplicates.is_empty() && seen.unknown.is_empty());
    assert_eq!(seen.total, n + more);
    // A committed nothing after B took over: in every partition, A's committed batches (the
    // older epoch) all come before B's (same producer id, newer epoch).
    let epochs: BTreeSet<i16> = log.committed_batches.iter().map(|b| b.1).collect();
    assert!(
        epochs.len() >= 2,
        "A and B both committed: epochs {epochs:?}"
    );
    let b_epoch = *epochs.iter().next_back().unwrap();
    for p in 0..3 {
        let last_a = log
            .committed_batches
            .iter()
            .filter(|x| x.0 == p && x.1 < b_epoch)
            .map(|x| x.2)
            .max();
        let first_b = log
            .committed_batches
            .iter()
            .filter(|x| x.0 == p && x.1 == b_epoch)
            .map(|x| x.2)
            .min();
        if let (Some(a), Some(b)) = (last_a, first_b) {
            assert!(
                a < b,
                "partition {p}: A committed at offset {a} after B's first batch at {b}"
            );
        }
    }
}

/// Two copiers with their own transactional ids share the group (each rebalance moves input
/// partitions between them); one or the other is killed with SIGKILL three times and
/// restarted, with the connections cut every 500–1500 ms: the output is still exactly the
/// input, and the read_committed reader sees every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copiers_with_rebalances_and_kills_on_fake_cluster() {
    let n = 40_000usize.min(records_wanted());
    let names = Names::new("pair");
    let (fake, proxies) = fake_behind_proxies(&names, ClusterConfig::new(), 2).await;
    let b = fake.bootstrap();
    let (known, mut reader) = seed_and_read(&b, &names, n, n).await;
    for p in &proxies {
        p.set_chaos(true);
    }
    // Slower transactions, so that both copiers are busy when the group rebalances.
    let args = [
        "--consumer-property",
        "session.timeout.ms=3000",
        "--consumer-property",
        "heartbeat.interval.ms=300",
        "--batch",
        "250",
        "--hold-ms",
        "20",
    ];
    let ids = [format!("{}-a", names.txn_id), format!("{}-b", names.txn_id)];
    let mut copiers = [
        Copier::start_as(&b, &names, &ids[0], &args),
        Copier::start_as(&b, &names, &ids[1], &args),
    ];
    let mut rng = rng();
    let mut points: Vec<usize> = (0..3)
        .map(|_| rng.range(n as u64 / 10, n as u64 * 8 / 10) as usize)
        .collect();
    points.sort();
    for (k, point) in points.into_iter().enumerate() {
        let victim = rng.below(2) as usize;
        wait_alive(
            &mut reader,
            &mut copiers[1 - victim],
            Duration::from_secs(90),
            &format!("{point} records before kill {}", k + 1),
            |u, _| u >= point,
        )
        .await;
        if let Some(st) = copiers[victim].exited() {
            panic!(
                "copier {victim} exited on its own ({st}): {}",
                copiers[victim].log_text()
            );
        }
        copiers[victim].sigkill();
        eprintln!(
            "SIGKILL {} of copier {victim} at {}",
            k + 1,
            reader.progress.borrow().0
        );
        copiers[victim] = Copier::start_as(&b, &names, &ids[victim], &args);
    }
    wait_alive(
        &mut reader,
        &mut copiers[0],
        Duration::from_secs(90),
        "every record copied",
        |u, _| u >= n,
    )
    .await;
    for c in &mut copiers {
        assert!(c.exited().is_none(), "a copier died: {}", c.log_text());
        c.terminate().await;
    }
    for c in &mut copiers {
        let st = c.wait_exit(Duration::from_secs(30)).await;
        assert!(
            st.success(),
            "copier stopped by SIGTERM: {st}; {}",
            c.log_text()
        );
    }
    for p in &proxies {
        p.set_chaos(false);
    }
    let seen = reader.finish().await;
    let log = output_log(&b, &names).await;
    let (dups, missing) = diff(&known, &log.committed);
    eprintln!(
        "two copiers: {n} records, committed {} (duplicates {dups}, missing {missing}), \
         aborted {}, reader saw {} (duplicates {})",
        log.committed.len(),
        log.aborted.len(),
        seen.total,
        seen.duplicates.len()
    );
    assert_eq!((dups, missing), (0, 0));
    assert!(log.open.is_empty());
    assert!(seen.duplicates.is_empty() && seen.unknown.is_empty());
    assert_eq!(seen.total, n);
}
