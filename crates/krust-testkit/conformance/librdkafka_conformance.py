#!/usr/bin/env python3
"""librdkafka (confluent-kafka) against the krust fake cluster.

Runs plain and idempotent produce, transactional produce with commit and abort, a
read_committed consume, consumer groups of 3 with cooperative-sticky and range assignors, and
offset commits. Everything must succeed and read back exactly what was written; any mismatch
exits non-zero.

Usage:
  librdkafka_conformance.py --bootstrap HOST:PORT[,...]
  librdkafka_conformance.py --binary PATH/TO/krust-fake-cluster [--brokers 3] [--fake-arg ARG]...

--fake-arg passes an argument to the fake cluster process (e.g. --fake-arg=--txn-marker-delay-ms
--fake-arg=200 to make transaction markers lag, so librdkafka meets CONCURRENT_TRANSACTIONS).
"""

import argparse
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

FAILURES = []
COMMON = {"socket.timeout.ms": 10000, "broker.address.family": "v4"}


def check(cond, what):
    if cond:
        print(f"ok   {what}", flush=True)
    else:
        print(f"FAIL {what}", flush=True)
        FAILURES.append(what)


def create_topics(bootstrap, specs):
    admin = AdminClient({"bootstrap.servers": bootstrap, **COMMON})
    futures = admin.create_topics([NewTopic(t, n, rf) for (t, n, rf) in specs], operation_timeout=10)
    for t, f in futures.items():
        f.result(timeout=15)
    # Wait until metadata shows them.
    deadline = time.time() + 10
    while time.time() < deadline:
        md = admin.list_topics(timeout=5)
        if all(t in md.topics and len(md.topics[t].partitions) == n for (t, n, _) in specs):
            return
        time.sleep(0.05)
    raise RuntimeError("topics did not appear")


def produce_all(conf, topic, values, partitions):
    p = Producer(conf)
    errors = []
    acked = []

    def cb(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked.append(msg.value())

    for i, v in enumerate(values):
        p.produce(topic, value=v, partition=i % partitions, on_delivery=cb)
        if i % 1000 == 0:
            p.poll(0)
    remaining = p.flush(30)
    return errors, acked, remaining


def consume_assigned(bootstrap, topic, partitions, expected_count, isolation="read_uncommitted", timeout=30):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "reader-" + uuid.uuid4().hex,
        "enable.auto.commit": False,
        "isolation.level": isolation,
        "auto.offset.reset": "earliest",
        **COMMON,
    })
    c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got = []
    deadline = time.time() + timeout
    while len(got) < expected_count and time.time() < deadline:
        for m in c.consume(num_messages=1000, timeout=0.5):
            if m.error():
                raise KafkaException(m.error())
            got.append((m.partition(), m.offset(), m.value()))
    # Poll a little longer to catch extras (duplicates or aborted records).
    extra_deadline = time.time() + 1.0
    while time.time() < extra_deadline:
        for m in c.consume(num_messages=1000, timeout=0.2):
            if m.error():
                raise KafkaException(m.error())
            got.append((m.partition(), m.offset(), m.value()))
    c.close()
    return got


def test_plain_and_idempotent(bootstrap):
    for idem in (False, True):
        topic = f"plain-{idem}-{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, [(topic, 3, 1)])
        values = [f"{topic}-{i}".encode() for i in range(3000)]
        conf = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, **COMMON}
        if idem:
            conf["enable.idempotence"] = True
        errors, acked, remaining = produce_all(conf, topic, values, 3)
        check(not errors and remaining == 0 and len(acked) == len(values),
              f"{'idempotent' if idem else 'plain'} produce: {len(acked)} acked, errors {errors[:3]}")
        got = consume_assigned(bootstrap, topic, 3, len(values))
        check(sorted(v for (_, _, v) in got) == sorted(values),
              f"{'idempotent' if idem else 'plain'} read back exactly ({len(got)} records)")
        per_part = {}
        for (p, o, v) in got:
            per_part.setdefault(p, []).append((o, v))
        in_order = all(
            [v for (_, v) in sorted(rows)] == [x for i, x in enumerate(values) if i % 3 == p]
            for p, rows in per_part.items()
        )
        check(in_order, f"{'idempotent' if idem else 'plain'} per-partition order kept")


def test_transactions(bootstrap):
    topic = "txn-" + uuid.uuid4().hex[:6]
    create_topics(bootstrap, [(topic, 2, 1)])
    p = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": "txn-" + uuid.uuid4().hex,
        "transaction.timeout.ms": 30000,
        **COMMON,
    })
    p.init_transactions(15)
    committed, aborted = [], []
    for round_ in range(6):
        commit = round_ % 3 != 1
        p.begin_transaction()
        vals = [f"r{round_}-{i}".encode() for i in range(50)]
        for i, v in enumerate(vals):
            p.produce(topic, value=v, partition=i % 2)
        if commit:
            p.commit_transaction(15)
            committed += vals
        else:
            p.flush(15)
            p.abort_transaction(15)
            aborted += vals
    check(True, f"transactional produce: {len(committed)} committed, {len(aborted)} aborted")
    got = consume_assigned(bootstrap, topic, 2, len(committed), isolation="read_committed")
    check(sorted(v for (_, _, v) in got) == sorted(committed),
          f"read_committed sees exactly the committed records ({len(got)} of {len(committed)})")
    got = consume_assigned(bootstrap, topic, 2, len(committed) + len(aborted))
    check(sorted(v for (_, _, v) in got) == sorted(committed + aborted),
          f"read_uncommitted sees committed and aborted records ({len(got)})")

    # Fencing: a second producer with the same transactional.id fences the first.
    tid = "fence-" + uuid.uuid4().hex
    a = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, **COMMON})
    a.init_transactions(15)
    a.begin_transaction()
    a.produce(topic, value=b"zombie", partition=0)
    a.flush(15)
    b = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid, **COMMON})
    b.init_transactions(15)
    fenced = False
    try:
        a.commit_transaction(15)
    except KafkaException as e:
        fenced = e.args[0].fatal() or "fenced" in str(e).lower()
    check(fenced, "second init_transactions fences the first producer")
    b.begin_transaction()
    b.produce(topic, value=b"successor", partition=0)
    b.commit_transaction(15)
    got = consume_assigned(bootstrap, topic, 2, len(committed) + 1, isolation="read_committed")
    vals = [v for (_, _, v) in got]
    check(b"zombie" not in vals and b"successor" in vals, "fenced producer's records are aborted")


def test_compression(bootstrap):
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        topic = f"codec-{codec}-{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, [(topic, 2, 1)])
        values = [f"{codec}-{i}".encode() * 5 for i in range(2000)]
        conf = {"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 20,
                "enable.idempotence": True, **COMMON}
        errors, acked, remaining = produce_all(conf, topic, values, 2)
        check(not errors and remaining == 0 and len(acked) == len(values),
              f"{codec}: idempotent compressed produce ({len(acked)} acked)")
        got = consume_assigned(bootstrap, topic, 2, len(values))
        check(sorted(v for (_, _, v) in got) == sorted(values), f"{codec}: read back exactly")


def test_exactly_once_copy(bootstrap):
    """Consume-transform-produce: read `src` in a group, write `dst` transactionally with the
    consumed offsets committed in the same transaction (send_offsets_to_transaction); every
    second transaction is aborted and its input re-read."""
    src = "eos-src-" + uuid.uuid4().hex[:6]
    dst = "eos-dst-" + uuid.uuid4().hex[:6]
    create_topics(bootstrap, [(src, 2, 1), (dst, 2, 1)])
    values = [f"in-{i}".encode() for i in range(400)]
    produce_all({"bootstrap.servers": bootstrap, **COMMON}, src, values, 2)
    group = "eos-" + uuid.uuid4().hex[:6]
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "isolation.level": "read_committed", **COMMON,
    })
    consumer.subscribe([src])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "eos-" + uuid.uuid4().hex, **COMMON})
    producer.init_transactions(15)
    copied = 0
    aborts = 0
    rounds = 0
    deadline = time.time() + 60
    while copied < len(values) and time.time() < deadline:
        msgs = [m for m in consumer.consume(num_messages=50, timeout=0.5) if not m.error()]
        if not msgs:
            continue
        rounds += 1
        producer.begin_transaction()
        for m in msgs:
            producer.produce(dst, value=b"out-" + m.value(), partition=m.partition())
        positions = consumer.position(consumer.assignment())
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), 15)
        if rounds % 2 == 0:
            producer.abort_transaction(15)
            aborts += 1
            # Rewind to the committed offsets (the abort discarded the offset commit too).
            committed = consumer.committed(consumer.assignment(), timeout=10)
            for tp in committed:
                consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
        else:
            producer.commit_transaction(15)
            copied += len(msgs)
    consumer.close()
    check(aborts > 0, f"eos copy: {rounds} transactions, {aborts} aborted")
    got = consume_assigned(bootstrap, dst, 2, len(values), isolation="read_committed")
    out = sorted(v for (_, _, v) in got)
    check(out == sorted(b"out-" + v for v in values),
          f"eos copy: output is exactly the input ({len(out)} records, {len(set(out))} distinct)")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **COMMON})
    committed = c.committed([TopicPartition(src, p) for p in range(2)], timeout=10)
    c.close()
    check(sum(tp.offset for tp in committed) == len(values),
          f"eos copy: committed offsets cover the input {[tp.offset for tp in committed]}")


def test_static_membership(bootstrap):
    topic = "static-" + uuid.uuid4().hex[:6]
    create_topics(bootstrap, [(topic, 4, 1)])
    group = "static-" + uuid.uuid4().hex[:6]

    def member(i):
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "group.instance.id": f"instance-{i}", "session.timeout.ms": 6000,
                      "heartbeat.interval.ms": 200, "auto.offset.reset": "earliest", **COMMON})
        c.subscribe([topic])
        return c

    members = [member(0), member(1)]
    deadline = time.time() + 20
    while time.time() < deadline:
        for c in members:
            c.consume(num_messages=10, timeout=0.1)
        a = [sorted(tp.partition for tp in c.assignment()) for c in members]
        if all(a) and sorted(sum(a, [])) == [0, 1, 2, 3]:
            break
    before = [sorted(tp.partition for tp in c.assignment()) for c in members]
    check(sorted(sum(before, [])) == [0, 1, 2, 3], f"static: 2 members share 4 partitions {before}")
    # Restart member 1 without leaving (static members keep their assignment).
    members[1].close()
    members[1] = member(1)
    deadline = time.time() + 20
    while time.time() < deadline:
        for c in members:
            c.consume(num_messages=10, timeout=0.1)
        if members[1].assignment():
            break
    after = [sorted(tp.partition for tp in c.assignment()) for c in members]
    check(after == before, f"static: a restarted static member gets its partitions back {after}")
    for c in members:
        c.close()


def test_group_churn(bootstrap, strategy):
    """A member leaves half-way: the others take its partitions over from the committed
    offsets; every record is seen (duplicates only for uncommitted work)."""
    topic = f"churn-{strategy}-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, [(topic, 6, 1)])
    values = [f"{topic}-{i}".encode() for i in range(1200)]
    produce_all({"bootstrap.servers": bootstrap, "linger.ms": 5, **COMMON}, topic, values, 6)
    group = f"churn-{uuid.uuid4().hex[:6]}"
    conf = {"bootstrap.servers": bootstrap, "group.id": group, "partition.assignment.strategy": strategy,
            "enable.auto.commit": False, "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 200, **COMMON}
    consumers = [Consumer(conf) for _ in range(3)]
    for c in consumers:
        c.subscribe([topic])
    seen = []
    left = False
    deadline = time.time() + 60
    while len(set(seen)) < len(values) and time.time() < deadline:
        for c in list(consumers):
            msgs = [m for m in c.consume(num_messages=20, timeout=0.05) if not m.error()]
            if msgs:
                seen += [m.value() for m in msgs]
                try:
                    c.commit(asynchronous=False)
                except KafkaException as e:
                    # A commit racing a rebalance may be refused; its records are re-read.
                    if e.args[0].code() not in (KafkaError.REBALANCE_IN_PROGRESS,
                                                KafkaError.ILLEGAL_GENERATION,
                                                KafkaError.UNKNOWN_MEMBER_ID,
                                                KafkaError._NO_OFFSET):
                        raise
        if not left and len(seen) >= len(values) // 3:
            consumers[0].close()
            consumers = consumers[1:]
            left = True
    for c in consumers:
        c.close()
    check(left and set(seen) == set(values),
          f"{strategy}: a member leaving mid-way loses nothing ({len(set(seen))} distinct, {len(seen) - len(set(seen))} re-read)")


def test_group(bootstrap, strategy):
    topic = f"group-{strategy}-{uuid.uuid4().hex[:6]}"
    create_topics(bootstrap, [(topic, 6, 1)])
    values = [f"{topic}-{i}".encode() for i in range(1200)]
    errors, acked, remaining = produce_all(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, **COMMON}, topic, values, 6)
    check(not errors and remaining == 0, f"{strategy}: produced {len(acked)}")
    group = f"g-{strategy}-{uuid.uuid4().hex[:6]}"
    consumers = [Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "partition.assignment.strategy": strategy,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 200,
        **COMMON,
    }) for _ in range(3)]
    for c in consumers:
        c.subscribe([topic])
    got = {}
    deadline = time.time() + 60
    while len(got) < len(values) and time.time() < deadline:
        for c in consumers:
            for m in c.consume(num_messages=500, timeout=0.1):
                if m.error():
                    raise KafkaException(m.error())
                got.setdefault(m.value(), 0)
                got[m.value()] += 1
    # Let the group settle with all three members, then check the assignment.
    settle = time.time() + 20
    assignments = []
    while time.time() < settle:
        for c in consumers:
            c.consume(num_messages=10, timeout=0.05)
        assignments = [sorted(tp.partition for tp in c.assignment()) for c in consumers]
        if all(assignments) and sorted(sum(assignments, [])) == list(range(6)):
            break
    check(sorted(got) == sorted(values), f"{strategy}: group of 3 consumed every record ({len(got)})")
    check(all(assignments) and sorted(sum(assignments, [])) == list(range(6)),
          f"{strategy}: 6 partitions split over 3 members {assignments}")
    # Commit the end offsets from each member and read them back.
    for c in consumers:
        tps = [TopicPartition(topic, p, 200) for p in sorted(tp.partition for tp in c.assignment())]
        if tps:
            c.commit(offsets=tps, asynchronous=False)
    committed = consumers[0].committed([TopicPartition(topic, p) for p in range(6)], timeout=10)
    check([tp.offset for tp in committed] == [200] * 6, f"{strategy}: committed offsets read back {[tp.offset for tp in committed]}")
    for c in consumers:
        c.close()
    # A new member of the group resumes from the committed offsets: nothing left to read.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "partition.assignment.strategy": strategy, "auto.offset.reset": "earliest", **COMMON})
    c.subscribe([topic])
    extra = []
    end = time.time() + 4
    while time.time() < end:
        extra += [m for m in c.consume(num_messages=100, timeout=0.2) if not m.error()]
    c.close()
    check(not extra, f"{strategy}: a restarted member resumes at the committed offsets ({len(extra)} re-read)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap")
    ap.add_argument("--binary")
    ap.add_argument("--brokers", type=int, default=3)
    ap.add_argument("--fake-arg", action="append", default=[])
    args = ap.parse_args()
    proc = None
    bootstrap = args.bootstrap
    if not bootstrap:
        if not args.binary:
            ap.error("--bootstrap or --binary is required")
        proc = subprocess.Popen([args.binary, "--brokers", str(args.brokers), *args.fake_arg],
                                stdout=subprocess.PIPE, text=True)
        bootstrap = proc.stdout.readline().strip()
    print(f"bootstrap {bootstrap} {' '.join(args.fake_arg)}", flush=True)
    start = time.time()
    try:
        test_plain_and_idempotent(bootstrap)
        test_transactions(bootstrap)
        test_compression(bootstrap)
        test_exactly_once_copy(bootstrap)
        test_static_membership(bootstrap)
        test_group(bootstrap, "cooperative-sticky")
        test_group(bootstrap, "range")
        test_group_churn(bootstrap, "cooperative-sticky")
        test_group_churn(bootstrap, "range")
    except Exception as e:  # noqa: BLE001 - any exception is a conformance failure
        FAILURES.append(f"exception: {e!r}")
        print(f"FAIL exception: {e!r}", flush=True)
    finally:
        if proc:
            proc.terminate()
            proc.wait(10)
    print(f"{'FAILED' if FAILURES else 'PASSED'} in {time.time() - start:.1f}s; failures: {FAILURES}", flush=True)
    sys.exit(1 if FAILURES else 0)


if __name__ == "__main__":
    main()
