//! End-to-end tests of `krust consume -G` and `krust groups ...`: against `krust fake-cluster`
//! (always) and against the broker named by `KRUST_BROKER` (skipped without it, except under
//! `CI=true`).

use std::collections::BTreeSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::*;

/// Fast group timeouts (joins on tansu take about 3 s with these).
const GROUP_PROPS: [&str; 6] = [
    "-X",
    "session.timeout.ms=6000",
    "-X",
    "heartbeat.interval.ms=500",
    "-X",
    "max.poll.interval.ms=6000",
];

/// `krust consume -G` with the fast group timeouts and `extra` flags; the printed lines.
fn group_consume(b: &str, group: &str, topics: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args = vec!["consume", "-b", b, "-G", group, "-f", "%t/%p/%o %k=%s\\n"];
    for t in topics {
        args.extend(["-t", t]);
    }
    args.extend(GROUP_PROPS);
    args.extend(extra);
    let out = ok(&run(&args), "consume -G");
    out.lines().map(str::to_string).collect()
}

/// The "total lag N" of `groups describe`, and the whole text.
fn describe(b: &str, group: &str) -> (i64, String) {
    let out = ok(&run(&["groups", "describe", "-b", b, group]), "describe");
    let total = out
        .lines()
        .find_map(|l| l.strip_prefix("total lag "))
        .unwrap_or_else(|| panic!("no total lag in: {out}"))
        .trim()
        .parse()
        .unwrap();
    (total, out)
}

/// Waits (up to 10 s) for `describe` to show a total lag of `want` (some brokers' end offsets
/// trail a just-written batch for a moment).
fn wait_lag(b: &str, group: &str, want: i64) {
    let started = Instant::now();
    loop {
        let (lag, text) = describe(b, group);
        if lag == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "lag {lag}, want {want}: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn produce(b: &str, topic: &str, from: usize, n: usize) -> BTreeSet<String> {
    let input: String = (from..from + n).map(|i| format!("k{i}:v{i}\n")).collect();
    ok(
        &run_with_stdin(
            &["produce", "-b", b, "-t", topic, "-K", ":"],
            input.as_bytes(),
        ),
        "produce",
    );
    (from..from + n).map(|i| format!("k{i}=v{i}")).collect()
}

/// The `k=v` parts of the printed lines; asserts none is printed twice.
fn values(lines: &[String]) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for l in lines {
        let kv = l.split_once(' ').map_or(l.as_str(), |(_, kv)| kv);
        assert!(set.insert(kv.to_string()), "{kv} read twice: {lines:?}");
    }
    set
}

/// The whole story on one cluster: a group reads every record once and commits; a second run
/// reads nothing; describe shows new records as lag; `-c` commits only what was printed;
/// reset-offsets to earliest makes the next run read everything again; a regex subscription
/// reads the same; delete removes the group.
fn group_lifecycle(b: &str, topic: &str, group: &str) {
    let mut all = produce(b, topic, 0, 30);

    let first = group_consume(b, group, &[topic], &["-e"]);
    assert_eq!(values(&first), all, "first run reads every record once");
    assert!(first.iter().all(|l| l.starts_with(&format!("{topic}/"))));
    let second = group_consume(b, group, &[topic], &["-e"]);
    assert!(second.is_empty(), "second run read again: {second:?}");

    let (lag, text) = describe(b, group);
    assert_eq!(lag, 0, "{text}");
    assert!(text.contains(&format!("group {group}")), "{text}");
    assert!(text.contains("COMMITTED") && text.contains("LAG"), "{text}");
    let added = produce(b, topic, 30, 7);
    all.extend(added.clone());
    wait_lag(b, group, 7);

    // -c: only what was printed counts as consumed.
    let some = group_consume(b, group, &[topic], &["-c", "3"]);
    assert_eq!(some.len(), 3, "{some:?}");
    let rest = group_consume(b, group, &[topic], &["-e"]);
    let mut got = values(&some);
    got.extend(values(&rest));
    assert_eq!(got, added, "-c then -e read the new records once");
    wait_lag(b, group, 0);

    // Back to the start: everything again, through a regex subscription.
    let out = ok(
        &run(&[
            "groups",
            "reset-offsets",
            "-b",
            b,
            group,
            "-t",
            topic,
            "--to-earliest",
        ]),
        "reset-offsets",
    );
    assert!(out.starts_with("topic\tpartition\toffset\n"), "{out}");
    assert!(out.contains(&format!("{topic}\t0\t0")), "{out}");
    wait_lag(b, group, 37);
    let pattern = format!("^{}", topic);
    let third = group_consume(b, group, &[&pattern], &["-e"]);
    assert_eq!(values(&third), all, "after the reset");

    // An offset for one partition.
    ok(
        &run(&[
            "groups",
            "reset-offsets",
            "-b",
            b,
            group,
            "-t",
            topic,
            "-p",
            "0",
            "--to-offset",
            "0",
        ]),
        "reset-offsets --to-offset",
    );
    let (lag, text) = describe(b, group);
    assert!(lag > 0, "{text}");

    let list = ok(&run(&["groups", "list", "-b", b]), "list");
    assert!(
        list.lines().any(|l| l.split('\t').next() == Some(group)),
        "{list}"
    );
    let o = run(&["groups", "delete", "-b", b, group]);
    ok(&o, "delete");
    assert!(stderr(&o).contains("deleted group"), "{}", stderr(&o));
    let list = ok(&run(&["groups", "list", "-b", b]), "list");
    assert!(
        !list.lines().any(|l| l.split('\t').next() == Some(group)),
        "{list}"
    );
    let err = assert_one_line_failure(&run(&["groups", "describe", "-b", b, group]), 1);
    assert!(err.contains("unknown group"), "{err}");
}

#[test]
fn group_lifecycle_on_fake_cluster() {
    let fc = FakeCluster::start(&["--topic", "orders:3"]);
    group_lifecycle(&fc.bootstrap, "orders", "g-orders");
}

/// SIGINT (and SIGTERM) end `consume -G` with a clean leave: the group is empty at once, with
/// what was printed committed.
#[test]
fn interrupt_leaves_the_group_on_fake_cluster() {
    let fc = FakeCluster::start(&["--topic", "a:2", "--topic", "b:1"]);
    let b = fc.bootstrap.as_str();
    let mut all = produce(b, "a", 0, 10);
    all.extend(produce(b, "b", 10, 5));
    for signal in ["INT", "TERM"] {
        let group = format!("g-{signal}");
        let mut child = krust()
            .args(["consume", "-b", b, "-G", &group, "-t", "a", "-t", "b"])
            .args(["-f", "%k=%s\\n", "-X", "auto.commit.interval.ms=200"])
            .args(GROUP_PROPS)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn consume -G");
        let mut out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        // Joined and printed everything once the group shows the member, a commit on each of
        // the three partitions and no lag.
        let started = Instant::now();
        loop {
            // Fails with "unknown group" until the member has joined.
            let text = describe_text(b, &group);
            let committed = text
                .lines()
                .map(|l| l.split_whitespace().collect::<Vec<_>>())
                .filter(|r| r.len() == 6 && (r[0] == "a" || r[0] == "b"))
                .filter(|r| r[2].parse::<i64>().is_ok())
                .count();
            if text.contains("members 1") && committed == 3 && text.contains("total lag 0\n") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never caught up: {text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let killed = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "SIG{signal}: {status:?}");
        let printed: Vec<String> = reader.join().unwrap().lines().map(Into::into).collect();
        assert_eq!(values(&printed), all, "SIG{signal}");
        let (lag, text) = describe(b, &group);
        assert!(text.contains("members 0"), "left at once: {text}");
        assert_eq!(lag, 0, "committed on the way out: {text}");
    }
}

#[test]
fn help_names_the_group_commands() {
    let out = ok(&run(&["--help"]), "--help");
    assert!(out.contains("groups"), "{out}");
    let out = ok(&run(&["consume", "--help"]), "consume --help");
    assert!(out.contains("-G, --group <GROUP>"), "{out}");
    let out = ok(&run(&["groups", "--help"]), "groups --help");
    for sub in ["list", "describe", "reset-offsets", "delete"] {
        assert!(out.contains(sub), "{sub}: {out}");
    }
}

#[test]
fn group_errors_are_one_line() {
    let fc = FakeCluster::start(&["--topic", "t:2"]);
    let b = fc.bootstrap.as_str();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["consume", "-b", b, "-t", "t", "-t", "u"], 2, "-G"),
        (
            &["consume", "-b", b, "-G", "g", "-t", "t", "-p", "0"],
            2,
            "-p",
        ),
        (
            &["consume", "-b", b, "-G", "g", "-t", "t", "-o", "5"],
            2,
            "-o",
        ),
        (
            &["consume", "-b", b, "-G", "g", "-t", "nope", "-e"],
            1,
            "unknown topic 'nope'",
        ),
        (
            &["consume", "-b", b, "-G", "g", "-t", "^(", "-e"],
            2,
            "bad topic regex '^(': unclosed group",
        ),
        (
            &[
                "consume",
                "-b",
                b,
                "-G",
                "g",
                "-t",
                "t",
                "-X",
                "partition.assignment.strategy=fair",
            ],
            2,
            "partition.assignment.strategy",
        ),
        (
            &["groups", "describe", "-b", b, "never-seen"],
            1,
            "unknown group 'never-seen'",
        ),
        (
            &["groups", "delete", "-b", b, "never-seen"],
            1,
            "unknown group 'never-seen'",
        ),
        (
            &["groups", "reset-offsets", "-b", b, "g", "-t", "t"],
            2,
            "--to-earliest",
        ),
        (
            &[
                "groups",
                "reset-offsets",
                "-b",
                b,
                "g",
                "-t",
                "nope",
                "--to-latest",
            ],
            1,
            "unknown topic 'nope'",
        ),
        (
            &[
                "groups",
                "reset-offsets",
                "-b",
                b,
                "g",
                "-t",
                "t",
                "-p",
                "5",
                "--to-latest",
            ],
            1,
            "no partition 5",
        ),
    ];
    for (args, code, needle) in cases {
        let err = assert_one_line_failure(&run(args), *code);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// A reset or delete while a member is in the group is refused, in one line.
#[test]
fn busy_group_is_refused_on_fake_cluster() {
    let fc = FakeCluster::start(&["--topic", "busy:1"]);
    let b = fc.bootstrap.as_str();
    produce(b, "busy", 0, 3);
    let mut child = krust()
        .args(["consume", "-b", b, "-G", "gb", "-t", "busy"])
        .args(GROUP_PROPS)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn consume -G");
    let started = Instant::now();
    while !describe_text(b, "gb").contains("members 1") {
        assert!(started.elapsed() < Duration::from_secs(30), "never joined");
        std::thread::sleep(Duration::from_millis(200));
    }
    let err = assert_one_line_failure(&run(&["groups", "delete", "-b", b, "gb"]), 1);
    assert!(err.contains("active members"), "{err}");
    let err = assert_one_line_failure(
        &run(&[
            "groups",
            "reset-offsets",
            "-b",
            b,
            "gb",
            "-t",
            "busy",
            "--to-earliest",
        ]),
        1,
    );
    assert!(err.contains("gb"), "{err}");
    let _ = child.kill();
    let _ = child.wait();
}

fn describe_text(b: &str, group: &str) -> String {
    String::from_utf8_lossy(&run(&["groups", "describe", "-b", b, group]).stdout).into_owned()
}

#[test]
fn group_lifecycle_on_broker() {
    let Some(b) = broker() else { return };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topic = format!("krust-cli-grp-{}-{nanos}", std::process::id());
    ok(
        &run(&["topics", "create", "-b", &b, &topic, "-p", "3"]),
        "topics create",
    );
    group_lifecycle(&b, &topic, &format!("{topic}-g"));
}
