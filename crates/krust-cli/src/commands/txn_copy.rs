//! `krust txn copy` (placeholder until the transactional producer lands).

use std::process::ExitCode;

use crate::cli::TxnCopyArgs;
use crate::error::CliError;

/// Runs `krust txn copy`.
pub(crate) async fn run(_args: TxnCopyArgs) -> Result<ExitCode, CliError> {
    Err(CliError::failed("not yet"))
}
