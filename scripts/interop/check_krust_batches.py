#!/usr/bin/env python3
"""Send krust-encoded record batches to a broker in raw Produce requests and read them back
with librdkafka (confluent-kafka), checking every record.

    check_krust_batches.py BROKER_ADDR DIR

DIR holds krust-<codec>.bin (one batch, as BatchBuilder::finish wrote it) and
krust-<codec>.expected (see crates/krust-wire/tests/fixtures/README.md), as written by the
`write_interop_batches` test. Exits 1 on any mismatch, 2 on usage errors.
"""
import os
import sys
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_raw  # noqa: E402

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def produce_v7(conn, topic, records):
    """Produce v7 (zstd needs v7+; the request layout is v3's)."""
    import struct
    body = struct.pack(">h", -1) + struct.pack(">hi", -1, 30000)
    body += struct.pack(">i", 1) + kafka_raw._string(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", 0)
    body += struct.pack(">i", len(records)) + records
    r = conn.request(0, 7, body)
    p = 4
    (tlen,) = struct.unpack_from(">h", r, p)
    p += 2 + tlen + 4
    _part, err, base = struct.unpack_from(">ihq", r, p)
    return err, base


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    addr, d = sys.argv[1], sys.argv[2]
    suffix = str(int(time.time() * 1000))
    admin = AdminClient({"bootstrap.servers": addr})
    topics = {c: f"krust-interop-{c}-{suffix}" for c in CODECS}
    for f in admin.create_topics([NewTopic(t, 1, 1) for t in topics.values()]).values():
        f.result(30)
    failures = 0
    for codec, topic in topics.items():
        data = open(os.path.join(d, f"krust-{codec}.bin"), "rb").read()
        want = open(os.path.join(d, f"krust-{codec}.expected")).read().splitlines()
        conn = kafka_raw.Conn(addr)
        err, base = produce_v7(conn, topic, data)
        conn.close()
        if err != 0:
            print(f"FAIL {codec}: produce error code {err}")
            failures += 1
            continue
        c = Consumer({
            "bootstrap.servers": addr,
            "group.id": f"krust-interop-{suffix}",
            "enable.auto.commit": False,
            "check.crcs": True,
        })
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.time() + 30
        while len(got) < len(want) and time.time() < deadline:
            m = c.poll(1.0)
            if m is None:
                continue
            if m.error():
                print(f"FAIL {codec}: consumer error {m.error()}")
                failures += 1
                break
            ts_type, ts = m.timestamp()
            got.append(kafka_raw.expected_line(m.offset(), ts, m.key(), m.value(), m.headers() or []))
        c.close()
        if got != want:
            failures += 1
            print(f"FAIL {codec}: librdkafka read {len(got)} records, {len(want)} expected")
            for g, w in zip(got, want):
                if g != w:
                    print(f"  got  {g}\n  want {w}")
                    break
        else:
            print(f"ok   {codec}: {len(got)} records read back by librdkafka")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
