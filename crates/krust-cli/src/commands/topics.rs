//! `krust topics create|list|describe|delete`.

use std::process::ExitCode;

use super::{client_error, connect, topic_names};
use crate::cli::TopicsCommand;
use crate::error::CliError;

/// Runs a `topics` subcommand.
pub(crate) async fn run(cmd: TopicsCommand) -> Result<ExitCode, CliError> {
    match cmd {
        TopicsCommand::List(args) => {
            let cluster = connect(&args.conn).await?;
            let names = topic_names(&cluster, args.internal).await?;
            for n in names {
                println!("{n}");
            }
            cluster.close();
            Ok(ExitCode::SUCCESS)
        }
        TopicsCommand::Describe(args) => {
            let cluster = connect(&args.conn).await?;
            let known = topic_names(&cluster, true).await?;
            for topic in &args.topics {
                if !known.contains(topic) {
                    return Err(CliError::UnknownTopic(topic.clone()));
                }
                let md = cluster
                    .topic(topic)
                    .await
                    .map_err(|e| client_error(e, Some(topic)))?;
                println!(
                    "topic {} partitions {}{}",
                    md.name,
                    md.partitions.len(),
                    if md.is_internal { " internal" } else { "" }
                );
                for p in &md.partitions {
                    let list = |v: &[i32]| {
                        v.iter()
                            .map(|n| n.to_string())
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    println!(
                        "  partition {} leader {} replicas [{}] isr [{}]{}",
                        p.partition,
                        p.leader.map_or("none".to_string(), |l| l.to_string()),
                        list(&p.replicas),
                        list(&p.isr),
                        p.error.map(|e| format!(" error {e}")).unwrap_or_default()
                    );
                }
            }
            cluster.close();
            Ok(ExitCode::SUCCESS)
        }
        TopicsCommand::Create(_) | TopicsCommand::Delete(_) => Err(CliError::failed(
            "'topics create' and 'topics delete' are not available yet: the admin client is still being written",
        )),
    }
}
