//! Side-by-side comparison of krust and librdkafka (through rust-rdkafka): the same producer and
//! consumer workloads against the testkit's null broker (client cost alone) and against a real
//! broker (tansu), each client run in a child process so that its CPU time (getrusage) and peak
//! RSS are its own. Prints a markdown table with medians and krust/librdkafka ratios.
//!
//! ```text
//! cd benches/peer && CARGO_TARGET_DIR=../../target-peer cargo run --release -- [--quick]
//!     [--runs N] [--records N] [--broker null|tansu|both] [--only SUBSTRING] [--tansu ADDR]
//! ```
//!
//! `--latency [--latency-secs S]`: instead of the throughput table, produce-to-acknowledge
//! latency (open loop, `linger.ms=0`, at 1,000 and 50,000 records/s; see `latency.rs`), 10 s
//! per run (`--quick`: 3 s, one run). `--latency-child CLIENT BOOTSTRAP TOPIC RATE SECS` runs
//! one of those.
//!
//! `--ping-pong` prints how long moving a cache line between two threads takes now (the host's
//! placement of its vCPUs; see `benches/RESULTS.md`).
//!
//! `--null-broker PARTITIONS [FETCH_END SIZE CODEC]` runs a null broker alone (for profiling);
//! `--child CLIENT produce|consume BOOTSTRAP TOPIC SIZE PARTITIONS CODEC IDEMPOTENT(0|1) RECORDS`
//! runs one client workload and prints `RESULT records bytes seconds peak-rss-kib`.
//!
//! `--quick`: 200,000 records, one run. Defaults: 1,000,000 records, medians of 3 runs, both
//! brokers, tansu at 127.0.0.1:19092 (skipped with a note when it does not answer).

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::FutureExt;

mod latency;

/// Which client a child runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Client {
    Krust,
    Rdkafka,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Krust => "krust",
            Client::Rdkafka => "librdkafka",
        }
    }
    fn parse(s: &str) -> Client {
        match s {
            "krust" => Client::Krust,
            _ => Client::Rdkafka,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Produce,
    Consume,
}

#[derive(Debug, Clone)]
struct Workload {
    kind: Kind,
    size: usize,
    partitions: i32,
    codec: &'static str,
    idempotent: bool,
    records: u64,
}

impl Workload {
    fn name(&self) -> String {
        let k = match self.kind {
            Kind::Produce => "produce",
            Kind::Consume => "consume",
        };
        let size = if self.size >= 1024 {
            format!("{} KiB", self.size / 1024)
        } else {
            format!("{} B", self.size)
        };
        let mut s = format!("{k} {size}, {}p, {}", self.partitions, self.codec);
        if self.kind == Kind::Produce {
            s.push_str(if self.idempotent { ", idem" } else { ", plain" });
        }
        s
    }
}

fn workloads(records: u64) -> Vec<Workload> {
    let p = |size, partitions, codec, idempotent| Workload {
        kind: Kind::Produce,
        size,
        partitions,
        codec,
        idempotent,
        records,
    };
    let c = |size, partitions, codec| Workload {
        kind: Kind::Consume,
        size,
        partitions,
        codec,
        idempotent: false,
        records,
    };
    vec![
        p(100, 1, "none", false),
        p(100, 1, "none", true),
        p(100, 6, "none", false),
        p(100, 6, "none", true),
        p(1024, 1, "none", false),
        p(1024, 6, "none", true),
        p(100, 1, "lz4", false),
        p(100, 1, "zstd", false),
        p(100, 1, "snappy", false),
        p(100, 1, "gzip", false),
        c(100, 1, "none"),
        c(100, 6, "none"),
        c(1024, 1, "none"),
        c(100, 1, "lz4"),
        c(100, 1, "zstd"),
    ]
}

/// One child's measurements.
#[derive(Debug, Clone, Copy)]
struct Run {
    records: u64,
    bytes: u64,
    secs: f64,
    cpu_secs: f64,
    max_rss_kb: i64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[v.len() / 2]
}

struct Summary {
    rec_s: f64,
    mb_s: f64,
    cpu_us: f64,
    rss_mb: f64,
}

fn summarize(runs: &[Run]) -> Option<Summary> {
    if runs.is_empty() {
        return None;
    }
    Some(Summary {
        rec_s: median(runs.iter().map(|r| r.records as f64 / r.secs).collect()),
        mb_s: median(runs.iter().map(|r| r.bytes as f64 / r.secs / 1e6).collect()),
        cpu_us: median(
            runs.iter()
                .map(|r| r.cpu_secs * 1e6 / r.records.max(1) as f64)
                .collect(),
        ),
        rss_mb: runs.iter().map(|r| r.max_rss_kb).max().unwrap_or(0) as f64 / 1024.0,
    })
}

/// Runs this executable as a child doing one workload; returns its measurements.
/// The executable children run: a private copy of this one (see [`ChildExe`]).
static CHILD_EXE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// A copy of this executable for the children, removed at the end: a rebuild of the benchmark
/// while it runs (another checkout's `cargo run`) replaces the original file, and children
/// started from its path would fail or run different code.
struct ChildExe(std::path::PathBuf);

impl ChildExe {
    fn new() -> std::io::Result<ChildExe> {
        let exe = std::env::current_exe()?;
        let copy = std::env::temp_dir().join(format!("krust-peer-bench-{}", std::process::id()));
        std::fs::copy(&exe, &copy)?;
        Ok(ChildExe(copy))
    }
}

impl Drop for ChildExe {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run_child(client: Client, w: &Workload, bootstrap: &str, topic: &str) -> Result<Run, String> {
    let (out, usage) = spawn_child(&[
        "--child",
        client.name(),
        match w.kind {
            Kind::Produce => "produce",
            Kind::Consume => "consume",
        },
        bootstrap,
        topic,
        &w.size.to_string(),
        &w.partitions.to_string(),
        w.codec,
        if w.idempotent { "1" } else { "0" },
        &w.records.to_string(),
    ])?;
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("no RESULT line in {out:?}"))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    if f.len() != 4 {
        return Err(format!("bad RESULT line {line:?}"));
    }
    Ok(Run {
        records: f[0].parse().map_err(|_| "records")?,
        bytes: f[1].parse().map_err(|_| "bytes")?,
        secs: f[2].parse().map_err(|_| "secs")?,
        cpu_secs: cpu_secs(&usage),
        max_rss_kb: match f[3].parse::<i64>() {
            Ok(kb) if kb > 0 => kb,
            _ => usage.ru_maxrss,
        },
    })
}

/// User + system CPU seconds of a child's rusage.
fn cpu_secs(usage: &libc::rusage) -> f64 {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs this executable (its private copy) as a child with `args`; returns its stdout and its
/// resource usage.
fn spawn_child(args: &[&str]) -> Result<(String, libc::rusage), String> {
    let exe = match CHILD_EXE.get() {
        Some(p) => p.clone(),
        None => std::env::current_exe().map_err(|e| e.to_string())?,
    };
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)
        .map_err(|e| e.to_string())?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet reaped (std's Child was never waited on).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if r != pid {
        return Err(format!("wait4 failed: {}", std::io::Error::last_os_error()));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("child failed (status {status}): {out}"));
    }
    Ok((out, usage))
}

// ---------------------------------------------------------------------------------------------
// Children.

fn child_main(args: &[String]) -> Result<(), String> {
    let [client, kind, bootstrap, topic, size, partitions, codec, idem, records] = args else {
        return Err(format!("bad child arguments {args:?}"));
    };
    let client = Client::parse(client);
    let size: usize = size.parse().map_err(|_| "size")?;
    let partitions: i32 = partitions.parse().map_err(|_| "partitions")?;
    let idem = idem == "1";
    let records: u64 = records.parse().map_err(|_| "records")?;
    let started = Instant::now();
    let (n, bytes) = match (client, kind.as_str()) {
        (Client::Krust, "produce") => krust_produce(bootstrap, topic, size, codec, idem, records)?,
        (Client::Krust, _) => krust_consume(bootstrap, topic, partitions, records)?,
        (Client::Rdkafka, "produce") => rdk_produce(bootstrap, topic, size, codec, idem, records)?,
        (Client::Rdkafka, _) => rdk_consume(bootstrap, topic, partitions, records)?,
    };
    let secs = started.elapsed().as_secs_f64();
    println!("RESULT {n} {bytes} {secs} {}", peak_rss_kb().unwrap_or(-1));
    Ok(())
}

/// This process's peak RSS (VmHWM) in KiB. Unlike getrusage's ru_maxrss, it belongs to the
/// address space made at exec, so the parent's memory at the time of the spawn does not count.
fn peak_rss_kb() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn krust_runtime() -> tokio::runtime::Runtime {
    let mut b = if std::env::var("KRUST_PEER_RUNTIME").as_deref() == Ok("current") {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    b.enable_all().build().expect("tokio runtime")
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn krust_produce(
    bootstrap: &str,
    topic: &str,
    size: usize,
    codec: &str,
    idem: bool,
    records: u64,
) -> Result<(u64, u64), String> {
    use krust_client::producer::{Compression, Producer, ProducerConfig, ProducerRecord};
    krust_runtime().block_on(async {
        let mut cfg = ProducerConfig::new(bootstrap);
        cfg.compression = Compression::from_name(codec).ok_or("codec")?;
        cfg.enable_idempotence = Some(idem);
        cfg.linger = Duration::from_millis(5);
        // librdkafka's default batch.size; KRUST_PEER_BATCH_SIZE overrides.
        cfg.batch_size = env_usize("KRUST_PEER_BATCH_SIZE").unwrap_or(1_000_000);
        if let Some(n) = env_usize("KRUST_PEER_BUFFER_MEMORY") {
            cfg.buffer_memory = n;
        }
        if let Some(n) = env_usize("KRUST_PEER_LINGER_MS") {
            cfg.linger = Duration::from_millis(n as u64);
        }
        // KRUST_PEER_PARTIAL=N: max_in_flight_partial (5: partial batches go as soon as an
        // in-flight slot is free, the rule before the partial-batch hold).
        // KRUST_PEER_PIPELINE=1: the same as KRUST_PEER_PARTIAL=5.
        // KRUST_PEER_IN_FLIGHT=N: max.in.flight.requests.per.connection.
        // KRUST_PEER_ADAPTIVE=0: adaptive_in_flight off.
        if let Some(n) = env_usize("KRUST_PEER_IN_FLIGHT") {
            cfg.max_in_flight = n;
        }
        cfg.adaptive_in_flight = adaptive_in_flight();
        let pipeline = std::env::var_os("KRUST_PEER_PIPELINE").map(|_| 5);
        if let Some(n) = env_usize("KRUST_PEER_PARTIAL").or(pipeline) {
            cfg.max_in_flight_partial = n;
        }
        let producer = Producer::new(cfg).await.map_err(|e| e.to_string())?;
        let value = bytes::Bytes::from(vec![b'x'; size]);
        let mut pending = std::collections::VecDeque::new();
        let mut acked = 0u64;
        let mut first_error = None;
        let mut settle = |r: Result<krust_client::RecordMetadata, _>| match r {
            Ok(_) => acked += 1,
            Err(e) => {
                first_error.get_or_insert_with(|| format!("{e}"));
            }
        };
        // KRUST_PEER_FRESH_VALUES=1: each record's value is a copy of its own (as an
        // application that builds every value, and as librdkafka's RD_KAFKA_MSG_F_COPY does
        // inside the client); by default every record shares one `Bytes`.
        let fresh = std::env::var_os("KRUST_PEER_FRESH_VALUES").is_some();
        for i in 0..records {
            let v = if fresh {
                bytes::Bytes::copy_from_slice(&value)
            } else {
                value.clone()
            };
            let rec = ProducerRecord::new(topic).with_value(v);
            let f = producer.send(rec).await.map_err(|e| e.to_string())?;
            pending.push_back(f);
            // Every 256 records (as the librdkafka loop serves its callbacks every 1024), settle
            // the oldest deliveries that are already complete (they complete in order per
            // partition), so completed futures do not pile up. A complete future is read once;
            // polling each one right after its send would register a waker per record.
            if i % 256 != 255 {
                continue;
            }
            while let Some(front) = pending.front_mut() {
                match front.now_or_never() {
                    Some(r) => {
                        pending.pop_front();
                        settle(r);
                    }
                    None => break,
                }
            }
        }
        for f in pending {
            settle(f.await);
        }
        producer.close().await;
        if krust_client::producer::probe::enabled() {
            // KRUST_LAT_PROBE (with KRUST_PEER_PROBE_FILE): one line per Produce request.
            if let Some(path) = std::env::var_os("KRUST_PEER_PROBE_FILE") {
                let rows = krust_client::producer::probe::take();
                let mut out = String::new();
                let mut last = u64::MAX;
                for r in rows {
                    if r.drained != last {
                        last = r.drained;
                        out.push_str(&format!(
                            "{} {} {} {} {} {}\n",
                            r.driver, r.drained, r.polled, r.answered, r.resolved, r.depth
                        ));
                    }
                }
                let _ = std::fs::write(path, out);
            }
        }
        if let Some(e) = first_error {
            return Err(format!("krust produce failed: {e}"));
        }
        Ok((acked, acked * size as u64))
    })
}

fn krust_consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    records: u64,
) -> Result<(u64, u64), String> {
    use krust_client::consumer::{Consumer, ConsumerConfig, StartOffset, TopicPartition};
    krust_runtime().block_on(async {
        let mut cfg = ConsumerConfig::new(bootstrap);
        if let Some(n) = env_usize("KRUST_PEER_PARTITION_FETCH_BYTES") {
            cfg = cfg.with_max_partition_fetch_bytes(n as i32);
        }
        if let Some(n) = env_usize("KRUST_PEER_PREFETCH_BYTES") {
            cfg = cfg.with_max_prefetch_bytes(n);
        }
        if let Some(n) = env_usize("KRUST_PEER_MAX_POLL") {
            cfg = cfg.with_max_poll_records(n);
        }
        let mut consumer = Consumer::connect(cfg).await.map_err(|e| e.to_string())?;
        consumer
            .assign(
                (0..partitions).map(|p| (TopicPartition::new(topic, p), StartOffset::Offset(0))),
            )
            .await
            .map_err(|e| e.to_string())?;
        let (mut n, mut bytes) = (0u64, 0u64);
        while n < records {
            let batch = tokio::time::timeout(Duration::from_secs(30), consumer.poll())
                .await
                .map_err(|_| format!("krust consume stalled at {n} records"))?
                .map_err(|e| e.to_string())?;
            for r in &batch {
                n += 1;
                bytes += r.value.as_ref().map_or(0, |v| v.len() as u64);
            }
        }
        if std::env::var_os("KRUST_PEER_STATS").is_some() {
            eprintln!("krust consumer: {:?}", consumer.prefetch_stats());
        }
        Ok((n, bytes))
    })
}

struct DeliveryCounter {
    acked: AtomicU64,
    failed: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl rdkafka::ClientContext for DeliveryCounter {}

impl rdkafka::producer::ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, r: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        match r {
            Ok(_) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut fe = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
                fe.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// A librdkafka configuration with `KRUST_PEER_RDK_DEBUG` as its `debug` property, if set.
fn rdk_config(bootstrap: &str) -> rdkafka::ClientConfig {
    let mut c = rdkafka::ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    if let Ok(d) = std::env::var("KRUST_PEER_RDK_FETCH_MAX_BYTES") {
        c.set("fetch.max.bytes", d);
    }
    if let Ok(d) = std::env::var("KRUST_PEER_RDK_DEBUG") {
        c.set("debug", d);
    }
    c
}

fn rdk_produce(
    bootstrap: &str,
    topic: &str,
    size: usize,
    codec: &str,
    idem: bool,
    records: u64,
) -> Result<(u64, u64), String> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let ctx = DeliveryCounter {
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        first_error: std::sync::Mutex::new(None),
    };
    let producer: BaseProducer<DeliveryCounter> = rdk_config(bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", codec)
        .set("enable.idempotence", if idem { "true" } else { "false" })
        .create_with_context(ctx)
        .map_err(|e| e.to_string())?;
    let value = vec![b'x'; size];
    for i in 0..records {
        let mut rec = BaseRecord::<(), [u8]>::to(topic).payload(&value[..]);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => return Err(format!("librdkafka send failed: {e}")),
            }
        }
        if i % 1024 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| e.to_string())?;
    let ctx = producer.context();
    if let Some(e) = ctx.first_error.lock().unwrap().clone() {
        return Err(format!("librdkafka delivery failed: {e}"));
    }
    let acked = ctx.acked.load(Ordering::Relaxed);
    Ok((acked, acked * size as u64))
}

fn rdk_consume(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    records: u64,
) -> Result<(u64, u64), String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = rdk_config(bootstrap)
        // rd_kafka_consumer_poll needs a group even in assign mode (no join happens).
        .set("group.id", "krust-peer-bench")
        .set("enable.auto.commit", "false")
        // librdkafka postpones a partition's next fetch by this much once its queue is over
        // queued.min.messages (default 1000 ms), which against a broker that answers at once
        // measures the back-off, not the client: KRUST_PEER_RDK_FETCH_BACKOFF overrides.
        .set(
            "fetch.queue.backoff.ms",
            std::env::var("KRUST_PEER_RDK_FETCH_BACKOFF").unwrap_or_else(|_| "1".into()),
        )
        .set("enable.auto.offset.store", "false")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(0))
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let (mut n, mut bytes) = (0u64, 0u64);
    let deadline_gap = Duration::from_secs(30);
    let mut last = Instant::now();
    while n < records {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                n += 1;
                bytes += m.payload_len() as u64;
                last = Instant::now();
            }
            Some(Err(e)) => return Err(format!("librdkafka consume failed: {e}")),
            None => {
                if last.elapsed() > deadline_gap {
                    return Err(format!("librdkafka consume stalled at {n} records"));
                }
            }
        }
    }
    Ok((n, bytes))
}

// ---------------------------------------------------------------------------------------------
// Parent.

struct Options {
    runs: usize,
    records: u64,
    null: bool,
    tansu: bool,
    tansu_addr: String,
    only: Option<String>,
    /// `--latency`: the produce-to-acknowledge latency table instead of the throughput one.
    latency: bool,
    latency_secs: f64,
}

fn parse_options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        runs: 3,
        records: 1_000_000,
        null: true,
        tansu: true,
        tansu_addr: std::env::var("KRUST_BROKER").unwrap_or_else(|_| "127.0.0.1:19092".into()),
        only: None,
        latency: false,
        latency_secs: 10.0,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => {
                o.runs = 1;
                o.records = 200_000;
                o.latency_secs = 3.0;
            }
            "--latency" => o.latency = true,
            "--latency-secs" => o.latency_secs = val()?.parse().map_err(|_| "--latency-secs")?,
            "--runs" => o.runs = val()?.parse().map_err(|_| "--runs")?,
            "--records" => o.records = val()?.parse().map_err(|_| "--records")?,
            "--broker" => match val()?.as_str() {
                "null" => o.tansu = false,
                "tansu" => o.null = false,
                "both" => {}
                other => return Err(format!("unknown broker {other}")),
            },
            "--tansu" => o.tansu_addr = val()?,
            "--only" => o.only = Some(val()?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// Records per served batch for the null broker: about 64 KiB of values.
fn null_batch_records(size: usize) -> usize {
    (64 * 1024 / size.max(1)).max(1)
}

async fn run_null(w: &Workload, client: Client) -> Result<Run, String> {
    use krust_testkit::{NullBroker, NullBrokerConfig};
    let mut cfg = NullBrokerConfig::new().with_partitions(w.partitions);
    if w.kind == Kind::Consume {
        let per = w.records.div_ceil(w.partitions as u64);
        cfg = cfg
            .with_fetch_end(per as i64)
            .with_fetch_record_size(w.size)
            .with_fetch_batch_records(null_batch_records(w.size))
            .with_fetch_compression(
                krust_wire::record::Compression::from_name(w.codec).ok_or("codec")?,
            );
    }
    let broker = NullBroker::start(cfg).await.map_err(|e| e.to_string())?;
    let bootstrap = broker.bootstrap();
    let w2 = w.clone();
    let mut run =
        tokio::task::spawn_blocking(move || run_child(client, &w2, &bootstrap, &unique("peer")))
            .await
            .map_err(|e| e.to_string())??;
    if w.kind == Kind::Consume {
        // The last fetches may overshoot what the child needed; count what it consumed.
        run.records = run
            .records
            .min(w.records.div_ceil(w.partitions as u64) * w.partitions as u64);
    } else if broker.stats().produced_records < run.records {
        return Err(format!(
            "the null broker saw {} records, the client claims {}",
            broker.stats().produced_records,
            run.records
        ));
    }
    Ok(run)
}

async fn tansu_admin(addr: &str) -> Result<krust_client::Admin, String> {
    krust_client::Admin::connect(krust_client::ClientConfig::new(addr))
        .await
        .map_err(|e| e.to_string())
}

async fn tansu_topic(admin: &krust_client::Admin, partitions: i32) -> Result<String, String> {
    let topic = unique("peer");
    admin
        .create_topics(&[krust_client::NewTopic::new(&topic, partitions, 1)])
        .await
        .map_err(|e| e.to_string())?;
    Ok(topic)
}

/// Fills `topic` on tansu with `w.records` records for the consumer workloads (krust producer,
/// in this process: not measured).
async fn prefill(addr: &str, topic: &str, w: &Workload) -> Result<(), String> {
    use krust_client::producer::{Compression, Producer, ProducerConfig, ProducerRecord};
    let mut cfg = ProducerConfig::new(addr);
    cfg.compression = Compression::from_name(w.codec).ok_or("codec")?;
    cfg.batch_size = 64 * 1024;
    let producer = Producer::new(cfg).await.map_err(|e| e.to_string())?;
    let value = bytes::Bytes::from(vec![b'x'; w.size]);
    let mut last = None;
    for i in 0..w.records {
        let p = (i % w.partitions as u64) as i32;
        let rec = ProducerRecord::new(topic)
            .with_partition(p)
            .with_value(value.clone());
        last = Some(producer.send(rec).await.map_err(|e| e.to_string())?);
    }
    producer.flush().await;
    if let Some(f) = last {
        f.await.map_err(|e| e.to_string())?;
    }
    producer.close().await;
    Ok(())
}

/// `--null-broker PARTITIONS [FETCH_END SIZE CODEC]`: runs a null broker in the foreground
/// (for profiling a client child by hand); prints its address.
fn serve_null(args: &[String]) {
    use krust_testkit::{NullBroker, NullBrokerConfig};
    let arg = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_string());
    let partitions: i32 = arg(0, "1").parse().expect("partitions");
    let end: i64 = arg(1, "0").parse().expect("fetch end");
    let size: usize = arg(2, "100").parse().expect("size");
    let codec = krust_wire::record::Compression::from_name(&arg(3, "none")).expect("codec");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let cfg = NullBrokerConfig::new()
            .with_partitions(partitions)
            .with_fetch_end(end)
            .with_fetch_record_size(size)
            .with_fetch_batch_records(null_batch_records(size))
            .with_fetch_compression(codec);
        let broker = NullBroker::start(cfg).await.expect("null broker");
        println!("{}", broker.bootstrap());
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            eprintln!("{:?}", broker.stats());
        }
    });
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else {
        format!("{:.0} k", v / 1e3)
    }
}

/// krust's `adaptive_in_flight` for a run: on, unless `KRUST_PEER_ADAPTIVE=0`.
pub(crate) fn adaptive_in_flight() -> bool {
    std::env::var("KRUST_PEER_ADAPTIVE").as_deref() != Ok("0")
}

/// `--ping-pong`: two threads hand one counter back and forth; returns the mean time of one
/// hand-off, i.e. of moving a cache line between the cores they run on. On the shared
/// 2-vCPU host it is 22-35 ns most of the time and ~200 ns at moments, and krust's 1 KiB
/// producer slows in those moments (`benches/RESULTS.md`).
fn ping_pong() -> f64 {
    const HANDOFFS: u64 = 2_000_000;
    let line = std::sync::Arc::new(AtomicU64::new(0));
    let other = line.clone();
    // Odd values are the other thread's turn to answer with the next even one.
    let answerer = std::thread::spawn(move || {
        let mut expect = 1;
        while expect < HANDOFFS {
            while other.load(Ordering::Acquire) != expect {
                std::hint::spin_loop();
            }
            other.store(expect + 1, Ordering::Release);
            expect += 2;
        }
    });
    let start = std::time::Instant::now();
    let mut sent = 1;
    while sent < HANDOFFS {
        line.store(sent, Ordering::Release);
        while line.load(Ordering::Acquire) != sent + 1 {
            std::hint::spin_loop();
        }
        sent += 2;
    }
    let elapsed = start.elapsed();
    let _ = answerer.join();
    elapsed.as_nanos() as f64 / (HANDOFFS - 1) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        if let Err(e) = child_main(&args[1..]) {
            eprintln!("child: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.first().map(String::as_str) == Some("--latency-child") {
        if let Err(e) = latency::child(&args[1..]) {
            eprintln!("latency child: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.first().map(String::as_str) == Some("--null-broker") {
        serve_null(&args[1..]);
        return;
    }
    if args.first().map(String::as_str) == Some("--ping-pong") {
        println!("{:.0} ns per one-way cache-line transfer", ping_pong());
        return;
    }
    let opts = match parse_options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let child_exe = match ChildExe::new() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("copying the benchmark for its children: {e}");
            std::process::exit(2);
        }
    };
    let _ = CHILD_EXE.set(child_exe.0.clone());
    // The null broker and the tansu set-up run here, on one worker thread; clients run in
    // children.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let all = workloads(opts.records);
    let selected: Vec<&Workload> = all
        .iter()
        .filter(|w| {
            opts.only
                .as_ref()
                .is_none_or(|o| w.name().contains(o.as_str()))
        })
        .collect();
    let mut rows: Vec<String> = Vec::new();
    let mut brokers = Vec::new();
    if opts.null {
        brokers.push("null");
    }
    if opts.tansu {
        let up = std::net::TcpStream::connect_timeout(
            &opts.tansu_addr.parse().expect("tansu address"),
            Duration::from_secs(1),
        )
        .is_ok();
        if up {
            brokers.push("tansu");
        } else {
            eprintln!(
                "tansu at {} does not answer; skipped (bash scripts/broker.sh start)",
                opts.tansu_addr
            );
        }
    }
    if opts.latency {
        latency::parent(
            &rt,
            &brokers,
            &opts.tansu_addr,
            opts.runs,
            opts.latency_secs,
        );
        return;
    }
    for broker in brokers {
        for w in &selected {
            let mut w = (*w).clone();
            if broker == "tansu" && w.size >= 1024 {
                // tansu keeps everything in memory: a quarter of the records at 1 KiB.
                w.records /= 4;
            }
            let consume_topic = if broker == "tansu" && w.kind == Kind::Consume {
                let r = rt.block_on(async {
                    let admin = tansu_admin(&opts.tansu_addr).await?;
                    let t = tansu_topic(&admin, w.partitions).await?;
                    prefill(&opts.tansu_addr, &t, &w).await?;
                    if std::env::var_os("KRUST_PEER_STATS").is_some() {
                        eprintln!("prefilled topic {t}");
                    }
                    Ok::<_, String>(t)
                });
                match r {
                    Ok(t) => Some(t),
                    Err(e) => {
                        eprintln!("{broker} {}: prefill failed: {e}", w.name());
                        continue;
                    }
                }
            } else {
                None
            };
            // Runs alternate between the clients (krust, librdkafka, krust, ...), so a slow
            // spell of the host weighs on both instead of on one client's runs.
            let mut results: Vec<(Client, Vec<Run>)> =
                vec![(Client::Krust, Vec::new()), (Client::Rdkafka, Vec::new())];
            for i in 0..opts.runs {
                for (client, runs) in results.iter_mut() {
                    let client = *client;
                    let r = if broker == "null" {
                        rt.block_on(run_null(&w, client))
                    } else {
                        rt.block_on(async {
                            let admin = tansu_admin(&opts.tansu_addr).await?;
                            let (topic, temp) = match &consume_topic {
                                Some(t) => (t.clone(), false),
                                None => (tansu_topic(&admin, w.partitions).await?, true),
                            };
                            let addr = opts.tansu_addr.clone();
                            let w2 = w.clone();
                            let t2 = topic.clone();
                            let r = tokio::task::spawn_blocking(move || {
                                run_child(client, &w2, &addr, &t2)
                            })
                            .await
                            .map_err(|e| e.to_string())?;
                            if temp {
                                let _ = admin.delete_topics(&[topic.as_str()]).await;
                            }
                            r
                        })
                    };
                    match r {
                        Ok(run) => {
                            eprintln!(
                                "{broker:5} {:32} {:10} run {}: {:>9.0} rec/s, {:.3} us CPU/rec, {} MB RSS",
                                w.name(),
                                client.name(),
                                i + 1,
                                run.records as f64 / run.secs,
                                run.cpu_secs * 1e6 / run.records.max(1) as f64,
                                run.max_rss_kb / 1024
                            );
                            runs.push(run);
                        }
                        Err(e) => eprintln!("{broker} {} {}: {e}", w.name(), client.name()),
                    }
                }
            }
            if let Some(t) = consume_topic {
                let _ = rt.block_on(async {
                    let admin = tansu_admin(&opts.tansu_addr).await?;
                    admin
                        .delete_topics(&[t.as_str()])
                        .await
                        .map_err(|e| e.to_string())
                });
            }
            let k = summarize(&results[0].1);
            let r = summarize(&results[1].1);
            let cell = |s: &Option<Summary>, f: &dyn Fn(&Summary) -> String| {
                s.as_ref().map_or("failed".to_string(), f)
            };
            let ratio = |f: &dyn Fn(&Summary) -> f64| match (&k, &r) {
                (Some(k), Some(r)) => format!("{:.2}", f(k) / f(r)),
                _ => "-".into(),
            };
            let mut name = w.name();
            if w.records != opts.records {
                name.push_str(&format!(" ({} records)", w.records));
            }
            rows.push(format!(
                "| {broker} | {name} | {} | {} | {} | {} / {} | {} | {} | {} | {} / {} |",
                cell(&k, &|s| fmt_rate(s.rec_s)),
                cell(&r, &|s| fmt_rate(s.rec_s)),
                ratio(&|s| s.rec_s),
                cell(&k, &|s| format!("{:.0}", s.mb_s)),
                cell(&r, &|s| format!("{:.0}", s.mb_s)),
                cell(&k, &|s| format!("{:.3}", s.cpu_us)),
                cell(&r, &|s| format!("{:.3}", s.cpu_us)),
                ratio(&|s| s.cpu_us),
                cell(&k, &|s| format!("{:.0}", s.rss_mb)),
                cell(&r, &|s| format!("{:.0}", s.rss_mb)),
            ));
        }
    }
    println!(
        "records: {} per workload (tansu 1 KiB: a quarter), medians of {} run(s); rec/s and MB/s from client start to last ack (produce) or last record (consume); CPU = child getrusage user+sys / records; RSS = peak of the child\n",
        opts.records, opts.runs
    );
    println!("| broker | workload | krust rec/s | librdkafka rec/s | rec/s ratio | MB/s krust / rdk | krust µs CPU/rec | librdkafka µs CPU/rec | CPU ratio | peak RSS MB krust / rdk |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}
