#!/usr/bin/env python3
"""Transactions between krust and librdkafka (confluent-kafka), both directions.

usage: test_txn_interop.py BROKER_ADDR      (KRUST_BIN: the built `krust` CLI)

1. krust -> librdkafka: `krust produce --transactional-id ... --abort-every 3` writes
   transactions, every third aborted (its records written first); a librdkafka consumer with
   isolation.level=read_committed must read exactly the committed records, and a
   read_uncommitted one every record (so there were aborted records to skip).
2. librdkafka -> krust: a librdkafka transactional producer commits and aborts (every third,
   flushed before the abort); `krust consume --isolation read_committed` must print exactly the
   committed records, and read_uncommitted every record.

Where: tansu (the test broker) sends no aborted-transactions list in Fetch, so no client can
skip aborted records there. Both directions therefore run against `krust fake-cluster` (the
in-process fake broker, which librdkafka talks to and which filters exactly). On BROKER_ADDR
(tansu) the script checks what holds there: every committed record is read in both directions,
nothing outside what was produced, and it reports how many aborted records tansu let through.

Exit 0 passed, 1 failed, 77 skipped (no KRUST_BIN).
"""
import os
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition, libversion

TXNS = 12
PER_TXN = 50
ABORT_EVERY = 3
PARTITIONS = 3


def fail(msg):
    print(f"test_txn_interop: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def committed_index(t):
    """Transactions are numbered from 1; every ABORT_EVERY-th is aborted."""
    return t % ABORT_EVERY != 0


def expected(prefix):
    committed, everything = [], []
    for t in range(1, TXNS + 1):
        vals = [f"{prefix}-{t}-{i}" for i in range(PER_TXN)]
        everything += vals
        if committed_index(t):
            committed += vals
    return committed, everything


def krust(bin_, *args, stdin=None, timeout=60):
    r = subprocess.run(
        [bin_, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={k: v for k, v in os.environ.items() if k != "KRUST_BROKER"},
    )
    if r.returncode != 0:
        fail(f"krust {' '.join(args)}: status {r.returncode}: {r.stderr.decode(errors='replace')}")
    return r.stdout.decode()


def rdkafka_read(broker, topic, isolation):
    """Every value of every partition of topic from the beginning, with librdkafka."""
    c = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": f"txn-interop-{uuid.uuid4().hex}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    values, eof = [], set()
    deadline = time.time() + 60
    while len(eof) < PARTITIONS:
        if time.time() > deadline:
            fail(f"librdkafka ({isolation}) did not reach the end of {topic}: {len(values)} read")
        m = c.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                eof.add(m.partition())
                continue
            fail(f"librdkafka consumer: {m.error()}")
        values.append(m.value().decode())
    c.close()
    return values


def rdkafka_produce(broker, topic, prefix):
    p = Producer(
        {
            "bootstrap.servers": broker,
            "transactional.id": f"rdk-{prefix}",
            "linger.ms": 5,
        }
    )
    p.init_transactions(30)
    for t in range(1, TXNS + 1):
        p.begin_transaction()
        for i in range(PER_TXN):
            p.produce(topic, key=f"k{i}".encode(), value=f"{prefix}-{t}-{i}".encode())
        if committed_index(t):
            p.commit_transaction(30)
        else:
            # Written first, so that readers have aborted records to skip.
            if p.flush(30) != 0:
                fail("librdkafka flush left records undelivered")
            p.abort_transaction(30)


def krust_produce(bin_, broker, topic, prefix):
    lines = "".join(
        f"{prefix}-{t}-{i}\n" for t in range(1, TXNS + 1) for i in range(PER_TXN)
    ).encode()
    krust(
        bin_, "produce", "-b", broker, "-t", topic,
        "--transactional-id", f"krust-{prefix}",
        "--txn-size", str(PER_TXN), "--abort-every", str(ABORT_EVERY),
        stdin=lines,
    )


def krust_read(bin_, broker, topic, isolation):
    out = krust(
        bin_, "consume", "-b", broker, "-t", topic, "-e",
        "--isolation", isolation, "-f", "%s\\n",
    )
    return [l for l in out.splitlines() if l]


def check_exact(what, got, want):
    if sorted(got) != sorted(want):
        missing = set(want) - set(got)
        extra = [v for v in got if v not in set(want)]
        dups = len(got) - len(set(got))
        fail(
            f"{what}: {len(got)} records, want {len(want)} "
            f"(missing {len(missing)}, not expected {len(extra)}, duplicates {dups}); "
            f"e.g. missing {sorted(missing)[:3]} extra {extra[:3]}"
        )


def create_topic(bin_, broker, topic):
    krust(bin_, "topics", "create", "-b", broker, topic, "-p", str(PARTITIONS))


def start_fake(bin_):
    proc = subprocess.Popen(
        [bin_, "fake-cluster"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    line = proc.stdout.readline().decode().strip()
    if ":" not in line:
        proc.kill()
        fail(f"krust fake-cluster printed {line!r}")
    return proc, line


def both_directions(bin_, broker, exact):
    run = uuid.uuid4().hex[:8]
    k_topic, r_topic = f"txn-krust-{run}", f"txn-rdk-{run}"
    create_topic(bin_, broker, k_topic)
    create_topic(bin_, broker, r_topic)

    krust_produce(bin_, broker, k_topic, "k")
    k_committed, k_all = expected("k")
    rc = rdkafka_read(broker, k_topic, "read_committed")
    ru = rdkafka_read(broker, k_topic, "read_uncommitted")
    check_exact("krust -> librdkafka read_uncommitted", ru, k_all)

    rdkafka_produce(broker, r_topic, "r")
    r_committed, r_all = expected("r")
    kc = krust_read(bin_, broker, r_topic, "read_committed")
    ku = krust_read(bin_, broker, r_topic, "read_uncommitted")
    check_exact("librdkafka -> krust read_uncommitted", ku, r_all)

    subprocess.run(
        [bin_, "topics", "delete", "-b", broker, k_topic, r_topic],
        capture_output=True,
        timeout=60,
    )
    if exact:
        check_exact("krust -> librdkafka read_committed", rc, k_committed)
        check_exact("librdkafka -> krust read_committed", kc, r_committed)
        return None
    # tansu: committed records all there, nothing foreign, aborted ones not filtered.
    for what, got, committed, everything in (
        ("krust -> librdkafka", rc, k_committed, k_all),
        ("librdkafka -> krust", kc, r_committed, r_all),
    ):
        if not set(committed) <= set(got):
            fail(f"{what} read_committed on the broker misses committed records")
        if not set(got) <= set(everything) or len(got) != len(set(got)):
            fail(f"{what} read_committed on the broker: foreign or duplicate records")
    return (len(rc) - len(k_committed), len(kc) - len(r_committed))


def main():
    broker = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("KRUST_BROKER")
    bin_ = os.environ.get("KRUST_BIN")
    if not bin_ or not os.path.exists(bin_):
        print("test_txn_interop: skipped: KRUST_BIN is not set to the built krust", file=sys.stderr)
        sys.exit(77)
    print(f"librdkafka {libversion()[0]}", file=sys.stderr)

    fake, bootstrap = start_fake(bin_)
    try:
        both_directions(bin_, bootstrap, exact=True)
    finally:
        fake.kill()
        fake.wait()
    print("test_txn_interop: fake cluster: exact read_committed both ways", file=sys.stderr)

    if broker:
        leaked = both_directions(bin_, broker, exact=False)
        print(
            f"test_txn_interop: {broker}: every committed record read both ways; aborted "
            f"records returned to read_committed (the broker sends no aborted list): "
            f"krust->librdkafka {leaked[0]}, librdkafka->krust {leaked[1]}",
            file=sys.stderr,
        )
    print("test_txn_interop: passed", file=sys.stderr)


if __name__ == "__main__":
    main()
