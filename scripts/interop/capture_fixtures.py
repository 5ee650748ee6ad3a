#!/usr/bin/env python3
"""Capture record batches written by librdkafka, one topic per codec, as krust golden fixtures.

    capture_fixtures.py BROKER_ADDR OUT_DIR

Produces the same keyed records with headers through confluent-kafka (librdkafka) with each
compression.type, then reads the stored batch bytes back with a raw Fetch v4 (the broker stores
batches as produced) and writes, per codec:
    OUT_DIR/librdkafka-<codec>.bin       the Fetch response's records bytes
    OUT_DIR/librdkafka-<codec>.expected  the records, one per line (see fixtures/README.md)
Exits non-zero if anything fails. Needs confluent-kafka (scripts/python-env.sh).
"""
import os
import sys
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_raw  # noqa: E402

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
BASE_TS = 1_700_000_000_000


def records():
    """The records every fixture holds: keyed, with headers, a null key, a null value."""
    out = []
    for i in range(8):
        key = f"key-{i}".encode()
        value = (f"value {i} " + "lorem ipsum dolor sit amet " * (i + 1)).encode()
        headers = [("trace", f"t{i}".encode()), ("empty", b"")]
        if i % 3 == 0:
            headers.append(("null", None))
        out.append((BASE_TS + i * 7, key, value, headers))
    out.append((BASE_TS + 100, None, b"no key", []))
    out.append((BASE_TS + 101, b"tombstone", None, [("h", b"x")]))
    return out


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    addr, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    suffix = str(int(time.time()))
    admin = AdminClient({"bootstrap.servers": addr})
    topics = {c: f"krust-fixture-{c}-{suffix}" for c in CODECS}
    futs = admin.create_topics([NewTopic(t, 1, 1) for t in topics.values()])
    for f in futs.values():
        f.result(30)
    for codec, topic in topics.items():
        p = Producer({
            "bootstrap.servers": addr,
            "compression.type": codec,
            "linger.ms": 500,
            "batch.num.messages": 1000,
            "enable.idempotence": False,
            "acks": "all",
        })
        errors = []
        for ts, key, value, headers in records():
            p.produce(topic, value=value, key=key, headers=headers, partition=0, timestamp=ts,
                      on_delivery=lambda err, msg: err and errors.append(err))
        if p.flush(30) != 0 or errors:
            print(f"{codec}: produce failed: {errors}", file=sys.stderr)
            return 1
        conn = kafka_raw.Conn(addr)
        err, hw, data = conn.fetch_records(topic)
        conn.close()
        if err != 0 or not data:
            print(f"{codec}: fetch error {err}, {len(data)} bytes", file=sys.stderr)
            return 1
        with open(os.path.join(out_dir, f"librdkafka-{codec}.bin"), "wb") as f:
            f.write(data)
        with open(os.path.join(out_dir, f"librdkafka-{codec}.expected"), "w") as f:
            for off, (ts, key, value, headers) in enumerate(records()):
                f.write(kafka_raw.expected_line(off, ts, key, value, headers) + "\n")
        print(f"{codec}: {len(data)} bytes, high watermark {hw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
