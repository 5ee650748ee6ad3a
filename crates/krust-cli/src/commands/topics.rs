//! `krust topics create|list|describe|delete`.

use std::process::ExitCode;

use krust_client::{Admin, ClientConfig, NewTopic};
use krust_wire::ErrorCode;

use super::{client_error, properties, topic_names};
use crate::cli::{Connection, TopicsCommand};
use crate::error::CliError;

async fn admin(conn: &Connection) -> Result<Admin, CliError> {
    let defaults = [("allow.auto.create.topics", "false".to_string())];
    let config = ClientConfig::from_properties(properties(conn, &defaults))
        .map_err(|e| client_error(e, None))?;
    Admin::connect(config)
        .await
        .map_err(|e| client_error(e, None))
}

/// Runs a `topics` subcommand.
pub(crate) async fn run(cmd: TopicsCommand) -> Result<ExitCode, CliError> {
    match cmd {
        TopicsCommand::Create(args) => {
            if args.partitions < 1 {
                return Err(CliError::Usage("--partitions must be at least 1".into()));
            }
            let admin = admin(&args.conn).await?;
            let mut topic = NewTopic::new(&args.topic, args.partitions, args.replication);
            for c in &args.configs {
                topic = topic.with_config(&c.name, &c.value);
            }
            admin.create_topics(&[topic]).await.map_err(|e| {
                if e.code() == Some(ErrorCode::TOPIC_ALREADY_EXISTS) {
                    CliError::failed(format!("topic '{}' already exists", args.topic))
                } else {
                    client_error(e, None)
                }
            })?;
            eprintln!(
                "krust: created topic '{}' ({} partition(s), replication factor {})",
                args.topic, args.partitions, args.replication
            );
            admin.cluster().close();
            Ok(ExitCode::SUCCESS)
        }
        TopicsCommand::List(args) => {
            let admin = admin(&args.conn).await?;
            for n in topic_names(admin.cluster(), args.internal).await? {
                println!("{n}");
            }
            admin.cluster().close();
            Ok(ExitCode::SUCCESS)
        }
        TopicsCommand::Describe(args) => {
            let admin = admin(&args.conn).await?;
            // Checked against the full list first: some brokers create a topic that is merely
            // asked about by name.
            let known = topic_names(admin.cluster(), true).await?;
            if let Some(missing) = args.topics.iter().find(|t| !known.contains(t)) {
                return Err(CliError::UnknownTopic(missing.clone()));
            }
            let names: Vec<&str> = args.topics.iter().map(String::as_str).collect();
            let topics = admin
                .describe_topics(&names)
                .await
                .map_err(|e| client_error(e, None))?;
            for md in topics {
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
            admin.cluster().close();
            Ok(ExitCode::SUCCESS)
        }
        TopicsCommand::Delete(args) => {
            let admin = admin(&args.conn).await?;
            let known = topic_names(admin.cluster(), true).await?;
            if let Some(missing) = args.topics.iter().find(|t| !known.contains(t)) {
                return Err(CliError::UnknownTopic(missing.clone()));
            }
            let names: Vec<&str> = args.topics.iter().map(String::as_str).collect();
            admin
                .delete_topics(&names)
                .await
                .map_err(|e| client_error(e, None))?;
            eprintln!("krust: deleted {}", args.topics.join(", "));
            admin.cluster().close();
            Ok(ExitCode::SUCCESS)
        }
    }
}
