//! Produce-to-acknowledge latency (issue #9 item 5): an open-loop, paced producer with
//! `linger.ms=0`, `acks=all`, idempotence on, 100 B records, one partition.
//!
//! Record `i` is scheduled at `start + i / rate`. One pacing thread (the same code for both
//! clients) sleeps until the next record is due and then sends every record that is due, so a
//! slow send delays later sends but is charged to them: latency is measured from a record's
//! scheduled time (not from the moment `send` was called) to the moment the application sees
//! its acknowledgement, which avoids coordinated omission.
//!
//! - krust: `Producer::try_send` from the pacing thread; each `DeliveryFuture` is awaited by a
//!   task of its own spawned on the producer's tokio runtime (multi-thread), which takes the
//!   time as soon as it is woken.
//! - librdkafka: `ThreadedProducer` (its own thread serves the delivery reports as they
//!   arrive); the record's index rides in the delivery opaque and the callback takes the time.
//!
//! Before the clock starts, each client sends one record and waits for it (connections,
//! metadata and the producer id are set up outside the measurement).

use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The rates measured, records per second.
pub const RATES: [u64; 2] = [1_000, 50_000];

/// Record size in bytes.
pub const SIZE: usize = 100;

/// What one child reports.
#[derive(Debug, Clone, Copy)]
pub struct LatencyRun {
    pub delivered: u64,
    pub failed: u64,
    /// Achieved rate: acknowledged records / (last acknowledgement - start).
    pub rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    /// Client CPU (user + sys of the child) per record, µs.
    pub cpu_us: f64,
}

/// One acknowledgement: record index, latency in ns from its scheduled time, success.
type Ack = (u64, u64, bool);

/// Sleeps the calling thread until `t` (with a 1 µs timer slack, see [`precise_timers`]).
fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// Lowers this thread's timer slack from Linux's default 50 µs to 1 µs, so the pacing thread
/// wakes when a record is due rather than up to 50 µs later.
fn precise_timers() {
    // SAFETY: PR_SET_TIMERSLACK takes a value in ns and only affects the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
    }
}

/// Runs the schedule: calls `send(i)` for each record at or after its scheduled time.
fn pace(start: Instant, interval: Duration, records: u64, mut send: impl FnMut(u64)) {
    precise_timers();
    let mut i = 0;
    while i < records {
        let due = start + interval * i as u32;
        sleep_until(due);
        let now = Instant::now();
        while i < records && start + interval * i as u32 <= now {
            send(i);
            i += 1;
        }
    }
}

/// Collects `records` acknowledgements from `rx` and turns them into the child's result line.
fn collect(rx: mpsc::Receiver<Ack>, records: u64, interval: Duration) -> Result<String, String> {
    // KRUST_PEER_LAT_TRACE: the worst latency per 500 ms of schedule, on stderr.
    let trace = std::env::var_os("KRUST_PEER_LAT_TRACE").is_some();
    let mut worst = vec![0u64; 1 + (interval * records as u32).as_millis() as usize / 500];
    let mut lat = Vec::with_capacity(records as usize);
    let mut failed = 0u64;
    let mut last_ack_ns = 0u64;
    for _ in 0..records {
        let (i, ns, ok) = rx
            .recv_timeout(Duration::from_secs(60))
            .map_err(|_| format!("{} of {records} acknowledgements arrived", lat.len()))?;
        if ok {
            lat.push(ns);
        } else {
            failed += 1;
        }
        let slot = (interval * i as u32).as_millis() as usize / 500;
        worst[slot] = worst[slot].max(ns);
        let at = (interval * i as u32).as_nanos() as u64 + ns;
        last_ack_ns = last_ack_ns.max(at);
    }
    if trace {
        let ms: Vec<u64> = worst.iter().map(|ns| ns / 1_000_000).collect();
        eprintln!("worst latency (ms) per 500 ms: {ms:?}");
    }
    if lat.is_empty() {
        return Err(format!("all {failed} records failed"));
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        let idx = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[idx] as f64 / 1e3
    };
    Ok(format!(
        "LATENCY {} {failed} {} {} {} {} {}",
        lat.len(),
        lat.len() as f64 / (last_ack_ns as f64 / 1e9),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        *lat.last().expect("not empty") as f64 / 1e3,
    ))
}

/// `--latency-child CLIENT BOOTSTRAP TOPIC RATE SECS`: one paced run; prints
/// `LATENCY delivered failed rate p50 p99 p999 max` (µs).
pub fn child(args: &[String]) -> Result<(), String> {
    let [client, bootstrap, topic, rate, secs] = args else {
        return Err(format!("bad latency child arguments {args:?}"));
    };
    let rate: u64 = rate.parse().map_err(|_| "rate")?;
    let secs: f64 = secs.parse().map_err(|_| "secs")?;
    let records = ((rate as f64 * secs) as u64).max(1);
    let interval = Duration::from_nanos(1_000_000_000 / rate.max(1));
    let line = match client.as_str() {
        "krust" => krust(bootstrap, topic, records, interval, None)?,
        // The rule before the partial-batch hold: partial batches go whenever a slot is free.
        "krust-pipelined" => krust(bootstrap, topic, records, interval, Some(5))?,
        "krust-partial2" => krust(bootstrap, topic, records, interval, Some(2))?,
        _ => rdkafka_run(bootstrap, topic, records, interval)?,
    };
    println!("{line}");
    Ok(())
}

fn krust(
    bootstrap: &str,
    topic: &str,
    records: u64,
    interval: Duration,
    partial: Option<usize>,
) -> Result<String, String> {
    use krust_client::producer::{Producer, ProducerConfig, ProducerRecord, TrySendReason};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut cfg = ProducerConfig::new(bootstrap);
    cfg.linger = Duration::ZERO;
    // KRUST_PEER_LINGER_US: another linger.ms (in µs), to see what batching buys the tail.
    if let Some(us) = crate::env_usize("KRUST_PEER_LINGER_US") {
        cfg.linger = Duration::from_micros(us as u64);
    }
    // krust's default with acks=all; stated for clarity.
    cfg.enable_idempotence = Some(true);
    if let Some(n) = crate::env_usize("KRUST_PEER_BATCH_SIZE") {
        cfg.batch_size = n;
    }
    // Clients krust-pipelined / krust-partial2 (or KRUST_PEER_PARTIAL=N):
    // `max_in_flight_partial`.
    if let Some(n) = partial.or_else(|| crate::env_usize("KRUST_PEER_PARTIAL")) {
        cfg.max_in_flight_partial = n;
    }
    // KRUST_PEER_ADAPTIVE=0: adaptive_in_flight off.
    cfg.adaptive_in_flight = crate::adaptive_in_flight();
    let producer = rt.block_on(Producer::new(cfg)).map_err(|e| e.to_string())?;
    let value = bytes::Bytes::from(vec![b'x'; SIZE]);
    let rec = || {
        ProducerRecord::new(topic)
            .with_partition(0)
            .with_value(value.clone())
    };
    // Warm-up: connection, metadata and producer id.
    rt.block_on(async {
        producer
            .send(rec())
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())
    })?;
    let (tx, rx) = mpsc::channel::<Ack>();
    let handle = rt.handle().clone();
    let _guard = rt.enter();
    // KRUST_LAT_PROBE: per-record stage times (send call, wake-up) to line up with the
    // producer's probe rows.
    let probe = krust_client::producer::probe::enabled();
    let sent_at: std::sync::Arc<Vec<std::sync::atomic::AtomicU64>> = std::sync::Arc::new(
        (0..if probe { records } else { 0 })
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect(),
    );
    let woken_at = std::sync::Arc::new(
        (0..if probe { records } else { 0 })
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect::<Vec<_>>(),
    );
    let start = Instant::now();
    let mut send_error = None;
    pace(start, interval, records, |i| {
        if probe {
            sent_at[i as usize].store(
                krust_client::producer::probe::ns(Instant::now()),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let f = match producer.try_send(rec()) {
            Ok(f) => Ok(f),
            Err(e) if matches!(e.reason, TrySendReason::BufferFull) => handle
                .block_on(producer.send(e.record))
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("{:?}", e.reason)),
        };
        match f {
            Ok(f) => {
                let tx = tx.clone();
                let woken_at = woken_at.clone();
                handle.spawn(async move {
                    let ok = f.await.is_ok();
                    if probe {
                        woken_at[i as usize].store(
                            krust_client::producer::probe::ns(Instant::now()),
                            std::sync::atomic::Ordering::Relaxed,
                        );
                    }
                    let ns = start.elapsed().saturating_sub(interval * i as u32);
                    let _ = tx.send((i, ns.as_nanos() as u64, ok));
                });
            }
            Err(e) => {
                send_error.get_or_insert(e);
                let _ = tx.send((i, 0, false));
            }
        }
    });
    if let Some(e) = send_error {
        return Err(format!("krust send failed: {e}"));
    }
    drop(tx);
    let line = collect(rx, records, interval);
    if std::env::var_os("KRUST_PEER_STATS").is_some() {
        eprintln!("krust producer: {:?}", producer.stats());
    }
    if probe {
        let sent: Vec<u64> = sent_at
            .iter()
            .map(|a| a.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        let woken: Vec<u64> = woken_at
            .iter()
            .map(|a| a.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        probe_report(start, interval, &sent, &woken);
    }
    rt.block_on(producer.close());
    line
}

struct Reports {
    tx: std::sync::Mutex<mpsc::Sender<Ack>>,
    start: std::sync::OnceLock<Instant>,
    interval: Duration,
    /// Produce requests sent, from the last statistics report (KRUST_PEER_STATS).
    produce_requests: std::sync::atomic::AtomicI64,
    /// Per-broker statistics lines (KRUST_PEER_STATS).
    windows: std::sync::Mutex<Vec<String>>,
}

impl rdkafka::ClientContext for Reports {
    fn stats(&self, s: rdkafka::Statistics) {
        let n: i64 = s
            .brokers
            .values()
            .filter_map(|b| b.req.get("Produce"))
            .sum();
        self.produce_requests
            .store(n, std::sync::atomic::Ordering::Relaxed);
        // Per-broker windows of the last interval (µs): request round trip, time in the
        // internal queue, time in the output buffer; and requests awaiting a response now.
        for b in s.brokers.values().filter(|b| b.nodeid >= 0) {
            let w = |x: &Option<rdkafka::statistics::Window>| {
                x.as_ref()
                    .map(|w| format!("{}/{}/{}", w.p50, w.p99, w.cnt))
                    .unwrap_or_default()
            };
            self.windows.lock().unwrap_or_else(|e| e.into_inner()).push(format!(
                "rtt p50/p99/n {} int_latency {} outbuf_latency {} waitresp {} outbuf {} waitresp_msgs {}",
                w(&b.rtt),
                w(&b.int_latency),
                w(&b.outbuf_latency),
                b.waitresp_cnt,
                b.outbuf_cnt,
                b.waitresp_msg_cnt
            ));
        }
    }
}

impl rdkafka::producer::ProducerContext for Reports {
    type DeliveryOpaque = usize;
    fn delivery(&self, r: &rdkafka::producer::DeliveryResult<'_>, i: usize) {
        // The warm-up record (index usize::MAX) arrives before the clock starts.
        let Some(start) = self.start.get() else {
            return;
        };
        let ns = start
            .elapsed()
            .saturating_sub(self.interval * i as u32)
            .as_nanos() as u64;
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner());
        let _ = tx.send((i as u64, ns, r.is_ok()));
    }
}

fn rdkafka_run(
    bootstrap: &str,
    topic: &str,
    records: u64,
    interval: Duration,
) -> Result<String, String> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    let (tx, rx) = mpsc::channel::<Ack>();
    let ctx = Reports {
        tx: std::sync::Mutex::new(tx),
        start: std::sync::OnceLock::new(),
        interval,
        produce_requests: std::sync::atomic::AtomicI64::new(0),
        windows: std::sync::Mutex::new(Vec::new()),
    };
    let stats = std::env::var_os("KRUST_PEER_STATS").is_some();
    let mut config = crate::rdk_config(bootstrap);
    if stats {
        config.set("statistics.interval.ms", "500");
    }
    let producer: ThreadedProducer<Reports> = config
        .set("acks", "all")
        .set("linger.ms", "0")
        // librdkafka's default is off; on here to match krust.
        .set("enable.idempotence", "true")
        .create_with_context(ctx)
        .map_err(|e| e.to_string())?;
    let value = [b'x'; SIZE];
    let warm = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, usize::MAX)
        .partition(0)
        .payload(&value[..]);
    producer.send(warm).map_err(|(e, _)| e.to_string())?;
    producer
        .flush(Duration::from_secs(30))
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let _ = producer.context().start.set(start);
    let mut send_error = None;
    pace(start, interval, records, |i| {
        let mut rec = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, i as usize)
            .partition(0)
            .payload(&value[..]);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_micros(100));
                }
                Err((e, _)) => {
                    send_error.get_or_insert(e.to_string());
                    break;
                }
            }
        }
    });
    if let Some(e) = send_error {
        return Err(format!("librdkafka send failed: {e}"));
    }
    let line = collect(rx, records, interval);
    let _ = producer.flush(Duration::from_secs(30));
    if stats {
        // Let one more statistics report arrive after the last acknowledgement.
        std::thread::sleep(Duration::from_millis(700));
        eprintln!(
            "librdkafka producer: {} produce requests (warm-up included)",
            producer
                .context()
                .produce_requests
                .load(std::sync::atomic::Ordering::Relaxed)
        );
        for l in producer
            .context()
            .windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            eprintln!("  {l}");
        }
    }
    line
}

/// Parses a child's `LATENCY` line.
pub fn parse(out: &str, cpu_secs: f64) -> Result<LatencyRun, String> {
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("LATENCY "))
        .ok_or_else(|| format!("no LATENCY line in {out:?}"))?;
    let f: Vec<f64> = line
        .split_whitespace()
        .map(|s| {
            s.parse::<f64>()
                .map_err(|_| format!("bad LATENCY line {line:?}"))
        })
        .collect::<Result<_, _>>()?;
    let [delivered, failed, rate, p50, p99, p999, max] = f[..] else {
        return Err(format!("bad LATENCY line {line:?}"));
    };
    Ok(LatencyRun {
        delivered: delivered as u64,
        failed: failed as u64,
        rate,
        p50_us: p50,
        p99_us: p99,
        p999_us: p999,
        max_us: max,
        cpu_us: cpu_secs * 1e6 / (delivered + failed).max(1.0),
    })
}

/// Median of each field over the runs (`None` if none succeeded).
pub fn summarize(runs: &[LatencyRun]) -> Option<LatencyRun> {
    if runs.is_empty() {
        return None;
    }
    let m = |f: &dyn Fn(&LatencyRun) -> f64| crate::median(runs.iter().map(f).collect());
    Some(LatencyRun {
        delivered: runs.iter().map(|r| r.delivered).sum(),
        failed: runs.iter().map(|r| r.failed).sum(),
        rate: m(&|r| r.rate),
        p50_us: m(&|r| r.p50_us),
        p99_us: m(&|r| r.p99_us),
        p999_us: m(&|r| r.p999_us),
        max_us: m(&|r| r.max_us),
        cpu_us: m(&|r| r.cpu_us),
    })
}

/// Runs one latency child against `bootstrap`.
fn run(
    client: &str,
    bootstrap: &str,
    topic: &str,
    rate: u64,
    secs: f64,
) -> Result<LatencyRun, String> {
    let (out, usage) = crate::spawn_child(&[
        "--latency-child",
        client,
        bootstrap,
        topic,
        &rate.to_string(),
        &secs.to_string(),
    ])?;
    parse(&out, crate::cpu_secs(&usage))
}

/// The parent side of `--latency`: every rate against the selected brokers, `runs` runs of
/// `secs` seconds per client; prints a markdown table of medians.
pub fn parent(
    rt: &tokio::runtime::Runtime,
    brokers: &[&str],
    tansu_addr: &str,
    runs: usize,
    secs: f64,
) {
    // KRUST_PEER_LAT_CLIENTS: comma-separated clients (krust, krust-pipelined, librdkafka).
    let clients: Vec<String> = std::env::var("KRUST_PEER_LAT_CLIENTS")
        .unwrap_or_else(|_| "krust,librdkafka".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mut rows = Vec::new();
    for &broker in brokers {
        for rate in RATES {
            // Runs interleaved (run 1 of every client, then run 2, ...), so load that comes
            // and goes on a shared machine falls on every client alike.
            let mut ok: Vec<Vec<LatencyRun>> = vec![Vec::new(); clients.len()];
            for n in 0..runs {
                for (ci, client) in clients.iter().enumerate() {
                    let client = client.as_str();
                    let r = if broker == "null" {
                        rt.block_on(async {
                            use krust_testkit::{NullBroker, NullBrokerConfig};
                            let nb = NullBroker::start(NullBrokerConfig::new().with_partitions(1))
                                .await
                                .map_err(|e| e.to_string())?;
                            let bootstrap = nb.bootstrap();
                            let topic = crate::unique("lat");
                            let c2 = client.to_string();
                            tokio::task::spawn_blocking(move || {
                                run(&c2, &bootstrap, &topic, rate, secs)
                            })
                            .await
                            .map_err(|e| e.to_string())?
                        })
                    } else {
                        rt.block_on(async {
                            let admin = crate::tansu_admin(tansu_addr).await?;
                            let topic = crate::tansu_topic(&admin, 1).await?;
                            let (addr, t2) = (tansu_addr.to_string(), topic.clone());
                            let c2 = client.to_string();
                            let r = tokio::task::spawn_blocking(move || {
                                run(&c2, &addr, &t2, rate, secs)
                            })
                            .await
                            .map_err(|e| e.to_string())?;
                            let _ = admin.delete_topics(&[topic.as_str()]).await;
                            r
                        })
                    };
                    match r {
                        Ok(r) => {
                            eprintln!(
                                "{broker:5} latency {rate:>6}/s {client:10} run {}: {:.0} rec/s, p50 {:.0} p99 {:.0} p99.9 {:.0} max {:.0} us, {:.2} us CPU/rec, {} failed",
                                n + 1,
                                r.rate,
                                r.p50_us,
                                r.p99_us,
                                r.p999_us,
                                r.max_us,
                                r.cpu_us,
                                r.failed
                            );
                            ok[ci].push(r);
                        }
                        Err(e) => eprintln!("{broker} latency {rate}/s {client}: {e}"),
                    }
                }
            }
            let results: Vec<Option<LatencyRun>> = ok.iter().map(|o| summarize(o)).collect();
            for (client, s) in clients.iter().zip(&results) {
                rows.push(match s {
                    Some(s) => format!(
                        "| {broker} | {rate} | {client} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} |",
                        s.rate, s.p50_us, s.p99_us, s.p999_us, s.max_us, s.cpu_us
                    ),
                    None => format!("| {broker} | {rate} | {client} | failed | | | | | |"),
                });
            }
        }
    }
    println!(
        "produce-to-acknowledge latency: linger.ms=0, acks=all, idempotent, {SIZE} B records, 1 partition, open loop (from each record's scheduled send time), {secs} s per run, medians of {runs} run(s)\n"
    );
    println!("| broker | target rec/s | client | achieved rec/s | p50 µs | p99 µs | p99.9 µs | max µs | CPU µs/rec |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
}

/// Prints the stage percentiles of a probed krust run (KRUST_LAT_PROBE) on stderr.
fn probe_report(start: Instant, interval: Duration, sent: &[u64], woken: &[u64]) {
    let rows = krust_client::producer::probe::take();
    // Row 0 is the warm-up record; rows are in record order (one partition).
    let rows = &rows[1.min(rows.len())..];
    let n = rows.len().min(sent.len());
    let t0 = krust_client::producer::probe::ns(start);
    let mut stages: Vec<(&str, Vec<u64>)> = [
        "pace (send call - scheduled)",
        "command queue (driver - send call)",
        "accumulator (drained - driver)",
        "to request task (polled - drained)",
        "request (driver answered - polled)",
        "completion (resolved - answered)",
        "wake-up (woken - resolved)",
        "total (woken - scheduled)",
    ]
    .iter()
    .map(|s| (*s, Vec::with_capacity(n)))
    .collect();
    let mut depth = std::collections::BTreeMap::<u32, usize>::new();
    let mut recs = Vec::with_capacity(n);
    // Every record's stages, to break the tail down below.
    let mut per_record: Vec<[u64; 8]> = Vec::with_capacity(n);
    for (i, r) in rows.iter().take(n).enumerate() {
        let sched = t0 + (interval * i as u32).as_nanos() as u64;
        let v = [
            sent[i].saturating_sub(sched),
            r.driver.saturating_sub(sent[i]),
            r.drained.saturating_sub(r.driver),
            r.polled.saturating_sub(r.drained),
            r.answered.saturating_sub(r.polled),
            r.resolved.saturating_sub(r.answered),
            woken[i].saturating_sub(r.resolved),
            woken[i].saturating_sub(sched),
        ];
        for (s, x) in stages.iter_mut().zip(v) {
            s.1.push(x);
        }
        per_record.push(v);
        *depth.entry(r.depth).or_default() += 1;
        recs.push(r.request_records as u64);
    }
    let pct = |v: &mut Vec<u64>, p: f64| -> f64 {
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_unstable();
        v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1] as f64 / 1e3
    };
    eprintln!("probe: {n} records (per record, us)");
    for (name, v) in stages.iter_mut() {
        let mean = v.iter().sum::<u64>() as f64 / v.len().max(1) as f64 / 1e3;
        eprintln!(
            "  {name:38} p50 {:>8.0} p90 {:>8.0} p99 {:>8.0} mean {:>8.0}",
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 0.99),
            mean
        );
    }
    // Where the tail's time went: the mean of each stage over the records whose total is at or
    // above the p99 and the p99.9.
    per_record.sort_unstable_by_key(|v| v[7]);
    for (label, p) in [("p99", 0.99), ("p99.9", 0.999)] {
        let from = ((per_record.len() as f64 * p) as usize).min(per_record.len());
        let tail = &per_record[from..];
        if tail.is_empty() {
            continue;
        }
        let means: Vec<String> = stages
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let mean = tail.iter().map(|v| v[i]).sum::<u64>() as f64 / tail.len() as f64;
                format!(
                    "{} {:.0}",
                    name.split(' ').next().unwrap_or(name),
                    mean / 1e3
                )
            })
            .collect();
        eprintln!(
            "  tail at or above {label} ({} records), mean us: {}",
            tail.len(),
            means.join(", ")
        );
    }
    eprintln!(
        "  records in the record's request: p50 {:.0} p99 {:.0}",
        pct(&mut recs, 0.5) * 1e3,
        pct(&mut recs, 0.99) * 1e3
    );
    let total: usize = depth.values().sum();
    eprintln!(
        "  requests already in flight when the record's request started: {}",
        depth
            .iter()
            .map(|(d, c)| format!("{d}:{:.0}%", *c as f64 * 100.0 / total.max(1) as f64))
            .collect::<Vec<_>>()
            .join(" ")
    );
}
