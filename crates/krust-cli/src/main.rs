//! `krust`: a kcat-like command-line tool on the krust client (produce, consume, topics,
//! offsets, groups, txn, bench, fake-cluster). See `krust --help` and the library crate `krust_cli`.

fn main() -> std::process::ExitCode {
    krust_cli::main()
}
