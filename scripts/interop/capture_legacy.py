#!/usr/bin/env python3
"""Capture legacy message sets (magic 0 and 1) written by librdkafka, as krust golden fixtures.

    capture_legacy.py OUT_DIR

Modern brokers convert old produce requests to v2 batches, so this script plays the broker
itself: a minimal in-process Kafka 0.9/0.10 broker on a loopback port answering Metadata v0/v1
and Produce v1/v2, which records the message set of each Produce request. librdkafka is run with
`api.version.request=false` and `broker.version.fallback=0.9.0` (magic 0), or against a broker
answering ApiVersions like Kafka 0.10.0 (magic 1), once
per codec (none, gzip, snappy, lz4), and each captured message set is written as
OUT_DIR/librdkafka-legacy-v<magic>-<codec>.bin with its .expected records. (librdkafka 2.x does
not compress lz4 at magic 1, so that fixture is uncompressed; magic 0 lz4 has the old header
checksum.)
"""
import os
import socket
import struct
import sys
import threading

from confluent_kafka import Producer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_raw  # noqa: E402

TOPIC = "legacy"


def s(x):
    b = x.encode()
    return struct.pack(">h", len(b)) + b


class FakeBroker:
    def __init__(self):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(8)
        self.port = self.srv.getsockname()[1]
        self.captured = []
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        def recv(n):
            b = b""
            while len(b) < n:
                x = c.recv(n - len(b))
                if not x:
                    raise IOError
                b += x
            return b
        try:
            while True:
                size = struct.unpack(">i", recv(4))[0]
                req = recv(size)
                api, ver, corr = struct.unpack_from(">hhi", req, 0)
                (clen,) = struct.unpack_from(">h", req, 8)
                body = req[10 + max(clen, 0):]
                if api == 3:
                    resp = self.metadata(ver)
                elif api == 0:
                    resp = self.produce(ver, body)
                elif api == 18:
                    resp = self.api_versions(ver)
                else:
                    return
                out = struct.pack(">i", corr) + resp
                c.sendall(struct.pack(">i", len(out)) + out)
        except (IOError, OSError, struct.error):
            pass
        finally:
            c.close()

    def api_versions(self, ver):
        # As a Kafka 0.10.0 broker: v0 only (a higher version gets UNSUPPORTED_VERSION in the
        # v0 layout, and the client retries with v0).
        if ver > 0:
            return struct.pack(">hi", 35, 1) + struct.pack(">hhh", 18, 0, 0)
        keys = [(0, 0, 2), (1, 0, 2), (3, 0, 1), (18, 0, 0)]
        return struct.pack(">hi", 0, len(keys)) + b"".join(struct.pack(">hhh", *k) for k in keys)

    def metadata(self, ver):
        r = struct.pack(">i", 1) + struct.pack(">i", 0) + s("127.0.0.1") + struct.pack(">i", self.port)
        if ver >= 1:
            r += struct.pack(">h", -1)  # rack: null
            r += struct.pack(">i", 0)   # controller id
        r += struct.pack(">i", 1) + struct.pack(">h", 0) + s(TOPIC)
        if ver >= 1:
            r += b"\x00"  # is_internal
        r += struct.pack(">i", 1) + struct.pack(">hii", 0, 0, 0)
        r += struct.pack(">ii", 1, 0) + struct.pack(">ii", 1, 0)
        return r

    def produce(self, ver, body):
        p = 6  # acks, timeout
        (nt,) = struct.unpack_from(">i", body, p)
        p += 4
        (tl,) = struct.unpack_from(">h", body, p)
        p += 2 + tl
        (np_,) = struct.unpack_from(">i", body, p)
        p += 4
        part, mlen = struct.unpack_from(">ii", body, p)
        p += 8
        with self.lock:
            self.captured.append(body[p:p + mlen])
        r = struct.pack(">i", 1) + s(TOPIC) + struct.pack(">i", 1) + struct.pack(">ihq", part, 0, 0)
        if ver >= 2:
            r += struct.pack(">q", -1)
        if ver >= 1:
            r += struct.pack(">i", 0)
        return r


def records(magic):
    out = []
    for i in range(5):
        ts = 1_700_000_000_000 + i if magic == 1 else -1
        out.append((ts, f"legacy-key-{i}".encode(), (f"legacy value {i} " * (i + 2)).encode()))
    out.append((1_700_000_000_100 if magic == 1 else -1, None, b"no key"))
    return out


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    for magic, fallback in [(0, "0.9.0"), (1, None)]:
        for codec in ["none", "gzip", "snappy", "lz4"]:
            broker = FakeBroker()
            p = Producer({
                "bootstrap.servers": f"127.0.0.1:{broker.port}",
                **({"api.version.request": False, "broker.version.fallback": fallback}
                   if fallback else {}),
                "compression.type": codec,
                "linger.ms": 200,
                "acks": 1,
                "enable.idempotence": False,
            })
            errs = []
            for ts, key, value in records(magic):
                kw = {"timestamp": ts} if ts >= 0 else {}
                p.produce(TOPIC, value=value, key=key, partition=0,
                          on_delivery=lambda e, m: e and errs.append(e), **kw)
            left = p.flush(20)
            broker.srv.close()
            if left or errs or len(broker.captured) != 1:
                print(f"v{magic} {codec}: failed ({left} left, {errs}, {len(broker.captured)} sets)")
                return 1
            data = broker.captured[0]
            if magic == 1 and data[17] & 0x07:
                # A producer writes 0 as the wrapper's offset; a broker stores the offset of the
                # last inner message there (inner offsets are relative). Do as a broker with an
                # empty log would, so the fixture is what a consumer fetches.
                data = struct.pack(">q", len(records(magic)) - 1) + data[8:]
            name = f"librdkafka-legacy-v{magic}-{codec}"
            with open(os.path.join(out_dir, name + ".bin"), "wb") as f:
                f.write(data)
            with open(os.path.join(out_dir, name + ".expected"), "w") as f:
                for off, (ts, key, value) in enumerate(records(magic)):
                    f.write(kafka_raw.expected_line(off, ts, key, value, []) + "\n")
            print(f"v{magic} {codec}: {len(data)} bytes, magic byte {data[16]}, attributes {data[17]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
