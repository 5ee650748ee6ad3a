//! `krust produce --transactional-id --txn-size --abort-every` and `krust consume --isolation`,
//! end to end on the in-process fake cluster (which filters aborted records exactly), and the
//! one-line errors of the transaction flags and `krust txn copy`.

mod common;

use common::{assert_one_line_failure, consume_sorted, ok, run, run_with_stdin, stderr};
use krust_testkit::{ClusterConfig, FakeCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_with_aborts_and_read_committed() {
    let f = FakeCluster::with_config(ClusterConfig::new().with_brokers(2).with_topic("tx", 3, 1))
        .await
        .unwrap();
    let b = f.bootstrap();
    let (produced, committed, uncommitted, again) = tokio::task::spawn_blocking(move || {
        // 23 transactions of 10 (the last of 3), every 4th aborted.
        let input: String = (0..223).map(|i| format!("line-{i}\n")).collect();
        let produced = run_with_stdin(
            &[
                "produce",
                "-b",
                &b,
                "-t",
                "tx",
                "--transactional-id",
                "cli-producer",
                "--txn-size",
                "10",
                "--abort-every",
                "4",
            ],
            input.as_bytes(),
        );
        let committed = consume_sorted(&b, "tx", "read_committed");
        let uncommitted = consume_sorted(&b, "tx", "read_uncommitted");
        // The same transactional id again: the previous run left nothing open.
        let again = run_with_stdin(
            &[
                "produce",
                "-b",
                &b,
                "-t",
                "tx",
                "--transactional-id",
                "cli-producer",
            ],
            b"one more\n",
        );
        (produced, committed, uncommitted, again)
    })
    .await
    .unwrap();
    ok(&produced, "produce --transactional-id");
    let summary = stderr(&produced);
    assert!(
        summary.contains("223 record(s) to 'tx' in 23 transaction(s): 18 committed (173 record(s)), 5 aborted (50 record(s))"),
        "{summary}"
    );
    // Transaction k (from 1) holds lines 10(k-1) .. 10k; k = 4, 8, 12, 16, 20 are aborted.
    let mut want: Vec<String> = (0..223)
        .filter(|i| (i / 10 + 1) % 4 != 0)
        .map(|i| format!("line-{i}"))
        .collect();
    want.sort();
    assert_eq!(committed, want);
    assert_eq!(uncommitted.len(), 223, "aborted records are in the log");
    ok(&again, "produce with the same transactional id");
    assert!(
        stderr(&again).contains("1 committed (1 record(s))"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn transaction_flag_errors_are_one_line() {
    // A bad flag combination is refused before any connection.
    let o = run(&[
        "produce",
        "-b",
        "127.0.0.1:1",
        "-t",
        "t",
        "--abort-every",
        "2",
    ]);
    assert_one_line_failure(&o, 2);
    let o = run(&[
        "produce",
        "-b",
        "127.0.0.1:1",
        "-t",
        "t",
        "--transactional-id",
        "",
    ]);
    let e = assert_one_line_failure(&o, 2);
    assert!(e.contains("transactional-id"), "{e}");
    let o = run(&[
        "consume",
        "-b",
        "127.0.0.1:1",
        "-t",
        "t",
        "--isolation",
        "dirty",
    ]);
    assert_one_line_failure(&o, 2);
    let o = run(&[
        "txn",
        "copy",
        "-b",
        "127.0.0.1:1",
        "--from",
        "a",
        "--to",
        "a",
        "-G",
        "g",
        "--transactional-id",
        "c",
    ]);
    let e = assert_one_line_failure(&o, 2);
    assert!(e.contains("different topics"), "{e}");
    let o = run(&[
        "txn",
        "complete",
        "-b",
        "127.0.0.1:1",
        "x",
        "--producer-id",
        "1",
        "--epoch",
        "0",
    ]);
    assert_one_line_failure(&o, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_errors_against_a_cluster_are_one_line() {
    let f = FakeCluster::with_config(ClusterConfig::new().with_topic("have", 1, 1))
        .await
        .unwrap();
    let b = f.bootstrap();
    let (copy, acks) = tokio::task::spawn_blocking(move || {
        let copy = run(&[
            "txn",
            "copy",
            "-b",
            &b,
            "--from",
            "have",
            "--to",
            "missing",
            "-G",
            "g",
            "--transactional-id",
            "c",
        ]);
        // A transactional producer needs acks=all.
        let acks = run_with_stdin(
            &[
                "produce",
                "-b",
                &b,
                "-t",
                "have",
                "--transactional-id",
                "x",
                "--acks",
                "1",
            ],
            b"a\n",
        );
        (copy, acks)
    })
    .await
    .unwrap();
    let e = assert_one_line_failure(&copy, 1);
    assert!(e.contains("unknown topic 'missing'"), "{e}");
    let e = assert_one_line_failure(&acks, 2);
    assert!(e.contains("acks") || e.contains("idempotence"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_until_idle() {
    let f = FakeCluster::with_config(
        ClusterConfig::new()
            .with_topic("src", 2, 1)
            .with_topic("dst", 3, 1),
    )
    .await
    .unwrap();
    let b = f.bootstrap();
    let (produced, copied, out) = tokio::task::spawn_blocking(move || {
        let input: String = (0..300).map(|i| format!("k{i}:v{i}\n")).collect();
        let produced = run_with_stdin(
            &["produce", "-b", &b, "-t", "src", "-K", ":"],
            input.as_bytes(),
        );
        let copied = run(&[
            "txn",
            "copy",
            "-b",
            &b,
            "--from",
            "src",
            "--to",
            "dst",
            "-G",
            "cp",
            "--transactional-id",
            "cp-1",
            "--batch",
            "40",
            "--idle-exit-secs",
            "1",
        ]);
        let out = ok(
            &run(&[
                "consume",
                "-b",
                &b,
                "-t",
                "dst",
                "-e",
                "--isolation",
                "read_committed",
                "-f",
                "%k=%s\\n",
            ]),
            "consume dst",
        );
        (produced, copied, out)
    })
    .await
    .unwrap();
    ok(&produced, "produce");
    ok(&copied, "txn copy");
    let summary = stderr(&copied);
    assert!(
        summary.contains("copied 300 record(s) from 'src' to 'dst'"),
        "{summary}"
    );
    assert!(summary.contains("0 aborted"), "{summary}");
    // At most 40 records a transaction: at least 8 transactions.
    let txns: u64 = summary
        .split(" in ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(txns >= 8, "{summary}");
    let mut got: Vec<String> = out.lines().map(str::to_string).collect();
    got.sort();
    let mut want: Vec<String> = (0..300).map(|i| format!("k{i}=v{i}")).collect();
    want.sort();
    assert_eq!(got, want, "keys and values copied once each");
    // The group's committed offsets are the input's ends.
    let total: i64 = (0..2)
        .map(|p| f.committed("cp", "src", p).unwrap_or(0))
        .sum();
    assert_eq!(total, 300);
}
