//! `krust txn list|describe|abort|complete|copy`, over `krust_client::admin` (transactions) and
//! the transactional producer (copy, in `txn_copy`).

use std::process::ExitCode;

use krust_client::admin::{
    abort_lingering, abort_transactions, complete_transaction, describe_transactions,
    list_transactions, TransactionDescription, TransactionFilter,
};
use krust_wire::ErrorCode;

use super::client_error;
use crate::cli::TxnCommand;
use crate::error::CliError;

/// A transaction error in one line: an unknown id is named plainly.
fn txn_error(e: krust_client::Error) -> CliError {
    if e.code() == Some(ErrorCode::TRANSACTIONAL_ID_NOT_FOUND) {
        if let krust_client::Error::Broker {
            context: Some(c), ..
        } = &e
        {
            let id = c.trim_start_matches("transactional id ");
            return CliError::failed(format!("unknown transactional id {id}"));
        }
    }
    client_error(e, None)
}

/// Runs a `txn` subcommand.
pub(crate) async fn run(cmd: TxnCommand) -> Result<ExitCode, CliError> {
    match cmd {
        TxnCommand::List(args) => {
            let cluster = super::connect_cluster(&args.conn).await?;
            let filter = TransactionFilter {
                states: args.states.clone(),
                producer_ids: Vec::new(),
                prefix: args.prefix.clone(),
            };
            let listed = list_transactions(&cluster, &filter)
                .await
                .map_err(txn_error)?;
            for t in &listed {
                println!(
                    "{}\t{}\t{}\t{}",
                    t.transactional_id, t.state, t.producer_id, t.coordinator
                );
            }
            cluster.close();
            Ok(ExitCode::SUCCESS)
        }
        TxnCommand::Describe(args) => {
            let cluster = super::connect_cluster(&args.conn).await?;
            let ids: Vec<&str> = args.ids.iter().map(String::as_str).collect();
            let described = describe_transactions(&cluster, &ids)
                .await
                .map_err(txn_error)?;
            for (i, d) in described.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print!("{}", render_description(d));
            }
            cluster.close();
            Ok(ExitCode::SUCCESS)
        }
        TxnCommand::Abort(args) => {
            let cluster = super::connect_cluster(&args.conn).await?;
            let aborted = match &args.prefix {
                Some(prefix) => abort_lingering(&cluster, prefix).await,
                None => {
                    let ids: Vec<&str> = args.ids.iter().map(String::as_str).collect();
                    abort_transactions(&cluster, &ids).await
                }
            }
            .map_err(txn_error)?;
            for a in &aborted {
                println!(
                    "{}\t{}\t{}\t{}",
                    a.transactional_id,
                    a.previous_state.as_deref().unwrap_or("-"),
                    a.producer_id,
                    a.producer_epoch
                );
            }
            eprintln!(
                "krust: {} transactional id(s) re-initialised; any open transaction of theirs is \
                 aborted and their producers are fenced",
                aborted.len()
            );
            cluster.close();
            Ok(ExitCode::SUCCESS)
        }
        TxnCommand::Complete(args) => {
            let cluster = super::connect_cluster(&args.conn).await?;
            let commit = args.commit;
            complete_transaction(&cluster, &args.id, args.producer_id, args.epoch, commit)
                .await
                .map_err(txn_error)?;
            eprintln!(
                "krust: transaction of '{}' (producer id {}, epoch {}) {}",
                args.id,
                args.producer_id,
                args.epoch,
                if commit { "committed" } else { "aborted" }
            );
            cluster.close();
            Ok(ExitCode::SUCCESS)
        }
        TxnCommand::Copy(args) => super::txn_copy::run(args).await,
    }
}

/// A description as `name: value` lines.
fn render_description(d: &TransactionDescription) -> String {
    let partitions = if d.partitions.is_empty() {
        "-".to_string()
    } else {
        d.partitions
            .iter()
            .map(|tp| format!("{}-{}", tp.topic, tp.partition))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let started = if d.start_time_ms < 0 {
        "-".to_string()
    } else {
        d.start_time_ms.to_string()
    };
    format!(
        "transactional id: {}\nstate: {}\nproducer id: {}\nproducer epoch: {}\n\
         timeout ms: {}\nstarted ms: {}\ncoordinator: {}\npartitions: {}\n",
        d.transactional_id,
        d.state,
        d.producer_id,
        d.producer_epoch,
        d.timeout_ms,
        started,
        d.coordinator,
        partitions
    )
}
