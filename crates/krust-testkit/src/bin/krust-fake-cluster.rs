//! `krust-fake-cluster`: the in-process fake Kafka cluster as a process. Prints the bootstrap
//! address on the first line of stdout and runs until SIGTERM/SIGINT.

fn main() {
    let cfg = match krust_testkit::cli::parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("krust-fake-cluster: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(krust_testkit::cli::run_with_config(cfg)) {
        eprintln!("krust-fake-cluster: {e}");
        std::process::exit(1);
    }
}
