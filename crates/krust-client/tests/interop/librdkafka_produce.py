#!/usr/bin/env python3
"""librdkafka (confluent-kafka) produces records that krust must read back intact.

usage: librdkafka_produce.py BROKER TOPIC COUNT

For each codec (none, gzip, snappy, lz4, zstd), one librdkafka producer with that
compression.type writes COUNT records to partition <codec index> of TOPIC (which must exist with
at least 5 partitions): keys (some null), values (some null, some empty, some binary), headers
(none, several, repeated keys, null values) and explicit CreateTime timestamps. Every delivery
must succeed. Prints, as JSON on stdout, what was produced, with the offsets librdkafka reported:
{"librdkafka": "<version>", "records": [{"partition", "offset", "timestamp", "key", "value",
"headers": [[name, value]]}]}, bytes as hex strings, null as null.
"""
import json
import sys

from confluent_kafka import Producer, libversion

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
BASE_TS = 1_700_000_000_000


def record(codec_index, i):
    n = codec_index * 100_000 + i
    key = None if i % 9 == 4 else f"key-{n}".encode()
    if i % 13 == 5:
        value = None
    elif i % 13 == 6:
        value = b""
    elif i % 13 == 7:
        value = bytes(range(256)) * 3  # binary, not UTF-8
    else:
        value = (f"value-{n}-" + "abc" * (i % 40)).encode()
    headers = []
    for h in range(i % 4):
        name = "dup" if h == 2 else f"h{h}"
        headers.append((name, None if h == 1 else f"hv-{n}-{h}".encode()))
    return key, value, headers, BASE_TS + n


def main():
    broker, topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    out = []
    errors = []
    for ci, codec in enumerate(CODECS):
        p = Producer(
            {
                "bootstrap.servers": broker,
                "compression.type": codec,
                "linger.ms": 20,
                "acks": "all",
                "enable.idempotence": False,
                "api.version.request": True,
            }
        )
        for i in range(count):
            key, value, headers, ts = record(ci, i)

            def done(err, msg, key=key, value=value, headers=headers, ts=ts):
                if err is not None:
                    errors.append(f"{codec}: {err}")
                    return
                out.append(
                    {
                        "partition": msg.partition(),
                        "offset": msg.offset(),
                        "timestamp": ts,
                        "key": None if key is None else key.hex(),
                        "value": None if value is None else value.hex(),
                        "headers": [[k, None if v is None else v.hex()] for k, v in headers],
                    }
                )

            p.produce(
                topic,
                key=key,
                value=value,
                headers=headers or None,
                partition=ci,
                timestamp=ts,
                on_delivery=done,
            )
            p.poll(0)
        left = p.flush(30)
        if left:
            errors.append(f"{codec}: {left} records not delivered within 30 s")
    if errors:
        print("\n".join(errors), file=sys.stderr)
        sys.exit(1)
    json.dump({"librdkafka": libversion()[0], "records": out}, sys.stdout)


if __name__ == "__main__":
    main()
