"""Minimal raw-socket Kafka requests for krust's interop scripts (Fetch v4, Produce v3).

Only what the fixture capture and the reverse interop check need; no dependencies.
"""
import socket
import struct


def _string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def _nullable_string(s):
    return struct.pack(">h", -1) if s is None else _string(s)


class Conn:
    def __init__(self, addr, client_id="krust-interop"):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.client_id = client_id
        self.correlation = 0

    def close(self):
        self.sock.close()

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise IOError("connection closed by broker")
            buf += chunk
        return buf

    def request(self, api_key, version, body):
        self.correlation += 1
        header = struct.pack(">hhi", api_key, version, self.correlation) + _string(self.client_id)
        msg = header + body
        self.sock.sendall(struct.pack(">i", len(msg)) + msg)
        size = struct.unpack(">i", self._recv_exact(4))[0]
        resp = self._recv_exact(size)
        corr = struct.unpack(">i", resp[:4])[0]
        if corr != self.correlation:
            raise IOError(f"correlation id {corr}, expected {self.correlation}")
        return resp[4:]

    def fetch_records(self, topic, partition=0, offset=0, max_bytes=1 << 20):
        """Fetch v4; returns (error_code, high_watermark, records bytes)."""
        body = struct.pack(">iiiib", -1, 1000, 1, max_bytes, 0)
        body += struct.pack(">i", 1) + _string(topic)
        body += struct.pack(">i", 1) + struct.pack(">iqi", partition, offset, max_bytes)
        r = self.request(1, 4, body)
        p = 4  # throttle_time_ms
        (ntopics,) = struct.unpack_from(">i", r, p)
        p += 4
        assert ntopics == 1, ntopics
        (tlen,) = struct.unpack_from(">h", r, p)
        p += 2 + tlen
        (nparts,) = struct.unpack_from(">i", r, p)
        p += 4
        assert nparts == 1, nparts
        _part, err, hw, _lso = struct.unpack_from(">ihqq", r, p)
        p += 4 + 2 + 8 + 8
        (naborted,) = struct.unpack_from(">i", r, p)
        p += 4
        if naborted > 0:
            p += naborted * 16
        (rlen,) = struct.unpack_from(">i", r, p)
        p += 4
        records = b"" if rlen < 0 else r[p:p + rlen]
        return err, hw, records

    def produce(self, topic, partition, records, acks=-1):
        """Produce v3 of one record set; returns (error_code, base_offset)."""
        body = _nullable_string(None) + struct.pack(">hi", acks, 30000)
        body += struct.pack(">i", 1) + _string(topic)
        body += struct.pack(">i", 1) + struct.pack(">i", partition)
        body += struct.pack(">i", len(records)) + records
        r = self.request(0, 3, body)
        p = 4  # topics count
        (tlen,) = struct.unpack_from(">h", r, p)
        p += 2 + tlen
        p += 4  # partitions count
        _part, err, base = struct.unpack_from(">ihq", r, p)
        return err, base


def expected_line(offset, timestamp, key, value, headers):
    """One record in the fixtures' text form (see crates/krust-wire/tests/fixtures/README.md)."""
    def hx(b):
        return "-" if b is None else (b.hex() if b else "=")
    hs = ",".join(f"{k.encode().hex() or '='}:{hx(v)}" for k, v in headers) or "-"
    return f"{offset} {timestamp} {hx(key)} {hx(value)} {hs}"
