#!/usr/bin/env python3
"""Capture real broker responses as seeds for krust's `responses` fuzz target.

    capture_responses.py BROKER_ADDR OUT_DIR [TOPIC]

Sends simple requests (ApiVersions v0-3, Metadata v0-12, FindCoordinator v0-3, ListGroups v0-3,
Fetch v4, Produce v3, InitProducerId v0-1, ListOffsets v1-5) and writes each response body, after
its response header, as OUT_DIR/<api>-v<version> in the target's input format:
byte 0 = API key, byte 1 = version, then the body.
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_raw  # noqa: E402


def s(x):
    b = x.encode()
    return struct.pack(">h", len(b)) + b


def cs(x):
    b = x.encode()
    return bytes([len(b) + 1]) + b


class FlexConn(kafka_raw.Conn):
    def request_any(self, api_key, version, body, flexible_req, flexible_resp):
        """Like request(), with a v2 request header / v1 response header when flexible."""
        self.correlation += 1
        header = struct.pack(">hhi", api_key, version, self.correlation) + s(self.client_id)
        if flexible_req:
            header += b"\x00"
        msg = header + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", self._recv_exact(4))[0]
        resp = self._recv_exact(size)
        body = resp[4:]
        if flexible_resp:
            assert body[0] == 0, "tagged fields in the response header"
            body = body[1:]
        return body


def main():
    addr, out = sys.argv[1], sys.argv[2]
    topic = sys.argv[3] if len(sys.argv) > 3 else None
    os.makedirs(out, exist_ok=True)
    c = FlexConn(addr, "krust-seed")

    def save(api, ver, body):
        with open(os.path.join(out, f"{api}-v{ver}"), "wb") as f:
            f.write(bytes([api, ver]) + body)

    for v in range(4):
        body = (cs("krust") + cs("0.1") + b"\x00") if v >= 3 else b""
        save(18, v, c.request_any(18, v, body, v >= 3, False))
    for v in range(13):
        flex = v >= 9
        if flex:
            body = b"\x00"  # null topics: all
        elif v == 0:
            body = struct.pack(">i", 0)
        else:
            body = struct.pack(">i", -1)
        if v >= 4:
            body += b"\x01"
        if 8 <= v <= 10:
            body += b"\x00\x00"
        elif v >= 11:
            body += b"\x00"
        if flex:
            body += b"\x00"
        save(3, v, c.request_any(3, v, body, flex, flex))
    for v in range(4):
        body = (cs("krust-group") + b"\x00\x00") if v >= 3 else (s("krust-group") + (b"\x00" if v >= 1 else b""))
        save(10, v, c.request_any(10, v, body, v >= 3, v >= 3))
    for v in range(4):
        body = b"\x00" if v >= 3 else b""
        save(16, v, c.request_any(16, v, body, v >= 3, v >= 3))
    for v in range(2):
        save(22, v, c.request_any(22, v, struct.pack(">hi", -1, 60000), False, False))
    if topic:
        for v in range(1, 6):
            body = struct.pack(">i", -1) + (b"\x00" if v >= 2 else b"")
            body += struct.pack(">i", 1) + s(topic) + struct.pack(">i", 1) + struct.pack(">i", 0)
            if v >= 4:
                body += struct.pack(">i", -1)
            body += struct.pack(">q", -2)
            save(2, v, c.request_any(2, v, body, False, False))
        fetch = struct.pack(">iiiib", -1, 100, 1, 1 << 20, 0) + struct.pack(">i", 1) + s(topic)
        fetch += struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 1 << 20)
        save(1, 4, c.request_any(1, 4, fetch, False, False))
    c.close()
    print(f"wrote seeds to {out}")


if __name__ == "__main__":
    sys.exit(main())
