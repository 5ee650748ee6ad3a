//! Helpers shared by the CLI's end-to-end tests: running the built `krust` with a time limit,
//! checking one-line failures, finding the broker, and `krust fake-cluster` as a child process.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

pub mod txn_log;

pub fn krust() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_krust"));
    // Tests say which broker they mean; an inherited KRUST_BROKER must not leak into them.
    cmd.env_remove("KRUST_BROKER");
    cmd.env("RUST_BACKTRACE", "1");
    cmd
}

/// Longest any single `krust` run may take in these tests; a hung command fails its test
/// instead of hanging the suite.
pub const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(90);

pub fn run(args: &[&str]) -> Output {
    run_with_stdin(args, b"")
}

pub fn run_with_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Read;
    let mut child = krust()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn krust");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for krust") {
            break st;
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            let err = err_reader.join().unwrap_or_default();
            panic!(
                "krust {args:?} did not finish within {RUN_LIMIT:?}; stderr: {}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failure with exactly one line on stderr, starting with "krust: ".
pub fn assert_one_line_failure(o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "status; stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected, got: {err:?}");
    assert!(err.starts_with("krust: "), "{err:?}");
    assert!(!err.contains("backtrace"), "{err:?}");
    err
}

pub fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed ({:?}): {}",
        o.status,
        stderr(o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A suffix unique to this process and moment, for topic, group and transactional-id names on
/// a shared broker.
pub fn suffix() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{n}", std::process::id())
}

/// The values of `topic` read to its end by `krust consume` with `isolation`
/// (`read_committed` or `read_uncommitted`), one per line, sorted.
pub fn consume_sorted(b: &str, topic: &str, isolation: &str) -> Vec<String> {
    let out = ok(
        &run(&[
            "consume",
            "-b",
            b,
            "-t",
            topic,
            "-e",
            "--isolation",
            isolation,
            "-f",
            "%s\\n",
        ]),
        &format!("consume --isolation {isolation}"),
    );
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// The broker for tests that need one (the project-wide rule in krust-testkit).
#[allow(unused_imports)] // not every test binary sharing this module needs a broker
pub use krust_testkit::real_broker as broker;

/// `krust fake-cluster` as a child process, killed on drop.
pub struct FakeCluster {
    child: std::process::Child,
    pub bootstrap: String,
}

impl FakeCluster {
    pub fn start(args: &[&str]) -> FakeCluster {
        use std::io::BufRead;
        let mut child = krust()
            .arg("fake-cluster")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn krust fake-cluster");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the bootstrap line");
        let bootstrap = line.trim().to_string();
        assert!(bootstrap.contains(':'), "bootstrap line: {line:?}");
        FakeCluster { child, bootstrap }
    }
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
