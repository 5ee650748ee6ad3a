#!/usr/bin/env python3
"""A librdkafka (confluent-kafka) member of a consumer group shared with krust members.

usage: group_member.py BROKER GROUP TOPIC STRATEGY SECONDS

Subscribes to TOPIC in GROUP with partition.assignment.strategy STRATEGY (fast test timeouts),
prints one JSON line per event on stdout as it happens:
  {"event": "assigned"|"revoked"|"lost", "partitions": [..]}
  {"event": "record", "partition": p, "offset": o, "value": "<utf-8>"}
commits each record's offset synchronously after printing it, and exits after SECONDS, or
early when it reads a line "stop" on stdin.
"""
import json
import select
import sys
import time

from confluent_kafka import Consumer


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    broker, group, topic, strategy, seconds = sys.argv[1:6]
    c = Consumer(
        {
            "bootstrap.servers": broker,
            "group.id": group,
            "partition.assignment.strategy": strategy,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "max.poll.interval.ms": 6000,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )

    def on_assign(consumer, parts):
        out({"event": "assigned", "partitions": [p.partition for p in parts]})
        if strategy == "cooperative-sticky":
            consumer.incremental_assign(parts)
        else:
            consumer.assign(parts)

    def on_revoke(consumer, parts):
        out({"event": "revoked", "partitions": [p.partition for p in parts]})
        if strategy == "cooperative-sticky":
            consumer.incremental_unassign(parts)
        else:
            consumer.unassign()

    def on_lost(consumer, parts):
        out({"event": "lost", "partitions": [p.partition for p in parts]})

    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        if select.select([sys.stdin], [], [], 0)[0]:
            if sys.stdin.readline().strip() == "stop":
                break
        msg = c.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            print(f"consume error: {msg.error()}", file=sys.stderr)
            continue
        out(
            {
                "event": "record",
                "partition": msg.partition(),
                "offset": msg.offset(),
                "value": msg.value().decode("utf-8", "replace"),
            }
        )
        c.commit(message=msg, asynchronous=False)
    c.close()


if __name__ == "__main__":
    main()
