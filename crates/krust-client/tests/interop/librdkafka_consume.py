#!/usr/bin/env python3
"""librdkafka (confluent-kafka) reads back records that krust produced.

usage: librdkafka_consume.py BROKER TOPIC PARTITIONS COUNT

Assigns partitions 0..PARTITIONS-1 of TOPIC from the beginning (no group offsets are committed)
and reads until COUNT records arrived (failing after 60 s). Prints them as JSON on stdout:
{"librdkafka": "<version>", "records": [{"partition", "offset", "timestamp", "key", "value",
"headers": [[name, value]]}]}, bytes as hex strings, null as null.
"""
import json
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition, libversion


def main():
    broker, topic = sys.argv[1], sys.argv[2]
    partitions, count = int(sys.argv[3]), int(sys.argv[4])
    c = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": "krust-interop-unused",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "check.crcs": True,
        }
    )
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + 60
    while len(out) < count:
        if time.monotonic() > deadline:
            print(f"only {len(out)} of {count} records within 60 s", file=sys.stderr)
            sys.exit(1)
        msg = c.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            print(f"consume error: {msg.error()}", file=sys.stderr)
            sys.exit(1)
        key, value = msg.key(), msg.value()
        out.append(
            {
                "partition": msg.partition(),
                "offset": msg.offset(),
                "timestamp": msg.timestamp()[1],
                "key": None if key is None else key.hex(),
                "value": None if value is None else value.hex(),
                "headers": [
                    [k, None if v is None else v.hex()] for k, v in (msg.headers() or [])
                ],
            }
        )
    c.close()
    json.dump({"librdkafka": libversion()[0], "records": out}, sys.stdout)


if __name__ == "__main__":
    main()
