//! Command implementations: each takes its parsed flags, talks to the cluster through
//! krust-client, and returns the process exit status or a [`CliError`].

mod bench;
mod consume;
mod fake_cluster;
mod group_consume;
mod groups;
mod offsets;
mod pipe;
mod produce;
mod topics;
mod txn;
mod txn_copy;

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use kafka_protocol::messages::MetadataRequest;
use krust_client::{ClientConfig, Cluster, Consumer, ConsumerConfig, Properties, TopicMetadata};

use crate::cli::{Cli, Command, Connection};
use crate::error::CliError;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Topics(cmd) => block_on(topics::run(cmd)),
        Command::Consume(args) => block_on(consume::run(args)),
        Command::Produce(args) => block_on(produce::run(args)),
        Command::Bench(cmd) => block_on(bench::run(cmd)),
        Command::Offsets(args) => block_on(offsets::run(args)),
        Command::Groups(cmd) => block_on(groups::run(cmd)),
        Command::FakeCluster(args) => block_on(fake_cluster::run(args)),
        Command::Txn(cmd) => block_on(txn::run(cmd)),
        Command::Pipe(args) => block_on(pipe::run(args)),
    }
}

/// Runs `fut` on a fresh tokio runtime.
fn block_on<F: Future<Output = Result<ExitCode, CliError>>>(fut: F) -> Result<ExitCode, CliError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(fut)
}

/// The client properties for a command: `bootstrap.servers` from `-b`, then `defaults`, then
/// the user's `-X` properties (which override the defaults).
pub(crate) fn properties(conn: &Connection, defaults: &[(&str, String)]) -> Properties {
    let mut p = Properties::new();
    p.set("bootstrap.servers", conn.brokers.0.clone());
    for (k, v) in defaults {
        p.set(*k, v.clone());
    }
    for prop in &conn.properties {
        p.set(prop.name.clone(), prop.value.clone());
    }
    p
}

/// The names of every topic in the cluster, sorted (internal ones only if `internal`).
///
/// Asking for all topics (a null topic list) never auto-creates one, unlike asking for a
/// topic by name, which some brokers (tansu among them) answer by creating it. Commands that
/// read a topic check it exists this way first, so a typo gives "unknown topic".
pub(crate) async fn topic_names(
    cluster: &Cluster,
    internal: bool,
) -> Result<Vec<String>, CliError> {
    let (_, _, resp) = cluster
        .send_any(|_v| {
            let mut req = MetadataRequest::default();
            req.topics = None;
            req.allow_auto_topic_creation = false;
            req
        })
        .await
        .map_err(|e| client_error(e, None))?;
    let mut names: Vec<String> = resp
        .topics
        .iter()
        .filter(|t| internal || !t.is_internal)
        .filter_map(|t| t.name.as_ref().map(|n| n.0.to_string()))
        .collect();
    names.sort();
    Ok(names)
}

/// Fails with "unknown topic" unless `topic` exists (checked without creating it).
pub(crate) async fn ensure_topic(cluster: &Cluster, topic: &str) -> Result<(), CliError> {
    if topic_names(cluster, true).await?.iter().any(|t| t == topic) {
        Ok(())
    } else {
        Err(CliError::UnknownTopic(topic.to_string()))
    }
}

/// Translates a client error into a one-line CLI error; `topic` names the topic the command
/// was about, so that "unknown topic" can say which.
pub(crate) fn client_error(e: krust_client::Error, topic: Option<&str>) -> CliError {
    use krust_client::Error as E;
    use krust_wire::ErrorCode;
    match e {
        E::Bootstrap {
            servers,
            last_error,
        } => CliError::Unreachable {
            brokers: servers,
            detail: last_error,
        },
        E::UnknownTopic(t) => CliError::UnknownTopic(t),
        E::UnknownPartition { topic, partition } => {
            CliError::failed(format!("topic '{topic}' has no partition {partition}"))
        }
        E::Config { property, message } => {
            CliError::Usage(format!("invalid property '{property}': {message}"))
        }
        ref b @ E::Broker { code, .. } if code == ErrorCode::UNKNOWN_TOPIC_OR_PARTITION => {
            match topic {
                Some(t) => CliError::UnknownTopic(t.to_string()),
                None => CliError::failed(b.to_string()),
            }
        }
        other => CliError::failed(other.to_string()),
    }
}

/// A consumer for `topic` built from the user's connection flags over `defaults`, with the
/// topic's metadata. An unknown topic is a one-line error (the topic is never auto-created).
pub(crate) async fn topic_consumer(
    conn: &Connection,
    topic: &str,
    defaults: &[(&str, String)],
) -> Result<(Consumer, TopicMetadata), CliError> {
    let config = ConsumerConfig::from_properties(properties(conn, defaults))
        .map_err(|e| client_error(e, Some(topic)))?;
    let consumer = Consumer::connect(config)
        .await
        .map_err(|e| client_error(e, Some(topic)))?;
    ensure_topic(consumer.cluster(), topic).await?;
    let meta = consumer
        .cluster()
        .topic(topic)
        .await
        .map_err(|e| client_error(e, Some(topic)))?;
    Ok((consumer, meta))
}

/// Resolves on SIGINT or SIGTERM; the handlers are installed when this is called (never
/// resolves if they cannot be).
pub(crate) fn stop_signals() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => Box::pin(async move {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }),
            _ => Box::pin(std::future::pending()),
        }
    }
    #[cfg(not(unix))]
    {
        Box::pin(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// A cluster connection for an administrative command: `-b`/`-X` properties, and no topic is
/// ever created by looking it up.
pub(crate) async fn connect_cluster(conn: &Connection) -> Result<Cluster, CliError> {
    let defaults = [("allow.auto.create.topics", "false".to_string())];
    let config = ClientConfig::from_properties(properties(conn, &defaults))
        .map_err(|e| client_error(e, None))?;
    Cluster::connect(config)
        .await
        .map_err(|e| client_error(e, None))
}
