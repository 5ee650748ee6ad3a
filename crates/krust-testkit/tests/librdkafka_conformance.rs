//! Runs `conformance/librdkafka_conformance.py` (librdkafka through confluent-kafka) against the
//! `krust-fake-cluster` binary when `KRUST_PYTHON` names a python that has `confluent_kafka`.
//! Skipped otherwise, except under `CI=true`, where a missing `KRUST_PYTHON` is a failure.

use std::process::Command;

#[test]
fn librdkafka_conformance() {
    let Ok(python) = std::env::var("KRUST_PYTHON") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but KRUST_PYTHON is not set: the librdkafka conformance run is required"
        );
        eprintln!("KRUST_PYTHON not set; skipping the librdkafka conformance run");
        return;
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/conformance/librdkafka_conformance.py"
    );
    // Once as Kafka behaves by default, once with lagging transaction markers
    // (CONCURRENT_TRANSACTIONS) and partial trailing batches in fetch answers.
    let variants: [&[&str]; 2] = [&[], &["--txn-marker-delay-ms", "200", "--partial-batches"]];
    for extra in variants {
        let mut cmd = Command::new(&python);
        cmd.arg(script)
            .arg("--binary")
            .arg(env!("CARGO_BIN_EXE_krust-fake-cluster"));
        for a in extra {
            cmd.arg(format!("--fake-arg={a}"));
        }
        let status = cmd.status().expect("running the conformance script");
        assert!(
            status.success(),
            "librdkafka conformance {extra:?} failed: {status}"
        );
    }
}
