//! The fake cluster as a process (behind `krust fake-cluster` and the `krust-fake-cluster`
//! binary): start the brokers, print the bootstrap address as the first line of stdout, run
//! until SIGTERM or SIGINT.

use std::io::Write;

use crate::{ClusterConfig, FakeCluster, TxnProtocol};

/// Starts `brokers` brokers on loopback (ports `port`, `port + 1`, ... or ephemeral ports when
/// `port` is `None`), prints the bootstrap address (`host:port,host:port,...`) as the first line
/// of stdout, and runs until SIGTERM or SIGINT. Cancel safe: dropping the future stops the
/// cluster.
pub async fn run(brokers: usize, port: Option<u16>) -> std::io::Result<()> {
    let mut cfg = ClusterConfig::new().with_brokers(brokers);
    if let Some(p) = port {
        cfg = cfg.with_base_port(p);
    }
    run_with_config(cfg).await
}

/// Like [`run`] with a full configuration. Cancel safe.
pub async fn run_with_config(cfg: ClusterConfig) -> std::io::Result<()> {
    let cluster = FakeCluster::with_config(cfg).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", cluster.bootstrap())?;
        out.flush()?;
    }
    wait_for_signal().await?;
    tracing::info!("fake cluster stopping");
    drop(cluster);
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> std::io::Result<()> {
    tokio::signal::ctrl_c().await
}

/// Parses the `krust-fake-cluster` / `krust fake-cluster` arguments into a configuration:
/// `--brokers N`, `--port P`, `--topic NAME[:PARTITIONS[:RF]]` (repeatable), `--auto-create`,
/// `--kip890`, `--first-sequence S`, `--txn-marker-delay-ms MS`, `--no-fetch-sessions`,
/// `--partial-batches`, `--leader-failover`.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<ClusterConfig, String> {
    let mut cfg = ClusterConfig::new();
    let mut it = args.into_iter();
    let num = |v: Option<String>, what: &str| -> Result<i64, String> {
        v.ok_or_else(|| format!("{what} needs a value"))?
            .parse::<i64>()
            .map_err(|e| format!("{what}: {e}"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--brokers" => cfg = cfg.with_brokers(num(it.next(), "--brokers")?.max(1) as usize),
            "--port" => {
                let p = num(it.next(), "--port")?;
                let p = u16::try_from(p).map_err(|_| format!("--port {p} out of range"))?;
                cfg = cfg.with_base_port(p);
            }
            "--topic" => {
                let spec = it.next().ok_or("--topic needs a value")?;
                let mut parts = spec.split(':');
                let name = parts.next().unwrap_or_default().to_string();
                let n = parts
                    .next()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e| format!("--topic: {e}"))?;
                let rf = parts
                    .next()
                    .map(str::parse)
                    .transpose()
                    .map_err(|e| format!("--topic: {e}"))?;
                cfg = cfg.with_topic(name, n.unwrap_or(1), rf.unwrap_or(1));
            }
            "--auto-create" => cfg = cfg.with_auto_create_topics(true),
            "--kip890" => cfg = cfg.with_txn_protocol(TxnProtocol::Kip890),
            "--txn-marker-delay-ms" => {
                let ms = num(it.next(), "--txn-marker-delay-ms")?.max(0) as u64;
                cfg = cfg.with_txn_marker_delay(std::time::Duration::from_millis(ms));
            }
            "--no-fetch-sessions" => cfg = cfg.with_fetch_sessions(false),
            "--leader-failover" => cfg = cfg.with_leader_failover(true),
            "--partial-batches" => cfg = cfg.with_partial_trailing_batches(true),
            "--first-sequence" => {
                cfg = cfg.with_first_sequence(num(it.next(), "--first-sequence")? as i32)
            }
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    Ok(cfg)
}

/// Usage text of the process.
pub const USAGE: &str = "usage: krust-fake-cluster [--brokers N] [--port P] [--topic NAME[:PARTITIONS[:RF]]]... [--auto-create] [--kip890] [--first-sequence S] [--txn-marker-delay-ms MS] [--no-fetch-sessions] [--partial-batches] [--leader-failover]";
