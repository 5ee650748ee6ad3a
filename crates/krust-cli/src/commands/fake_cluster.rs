//! `krust fake-cluster`: krust-testkit's in-process fake Kafka cluster, run until SIGINT or
//! SIGTERM. The first line of stdout is the bootstrap address (`host:port,host:port,...`).

use std::process::ExitCode;

use krust_testkit::ClusterConfig;

use crate::cli::FakeClusterArgs;
use crate::error::CliError;

/// Runs `krust fake-cluster`.
pub(crate) async fn run(args: FakeClusterArgs) -> Result<ExitCode, CliError> {
    if args.brokers == 0 {
        return Err(CliError::Usage("--brokers must be at least 1".into()));
    }
    let mut cfg = ClusterConfig::new().with_brokers(usize::from(args.brokers));
    if args.port != 0 {
        if u32::from(args.port) + u32::from(args.brokers) - 1 > u32::from(u16::MAX) {
            return Err(CliError::Usage(format!(
                "--port {} leaves no room for {} brokers",
                args.port, args.brokers
            )));
        }
        cfg = cfg.with_base_port(args.port);
    }
    for t in &args.topics {
        cfg = cfg.with_topic(t.name.clone(), t.partitions, 1);
    }
    eprintln!(
        "krust: starting a fake cluster of {} broker(s); SIGINT or SIGTERM stops it",
        args.brokers
    );
    krust_testkit::cli::run_with_config(cfg)
        .await
        .map_err(|e| CliError::failed(format!("fake cluster: {e}")))?;
    Ok(ExitCode::SUCCESS)
}
