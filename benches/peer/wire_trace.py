#!/usr/bin/env python3
"""Kafka request/response timing seen on the loopback wire (root; Linux AF_PACKET).

Captures TCP traffic to one broker port on `lo` with kernel timestamps, reassembles each
connection's byte streams, splits them into Kafka frames and matches responses to requests by
correlation id. Client-independent: the same numbers for krust and librdkafka.

    python3 wire_trace.py --port 19092 --secs 12 --out trace.tsv   # capture, then summary
    python3 wire_trace.py --load trace.tsv                           # summary of a saved capture

Per Produce request it reports: the time from its last byte on the wire to its response's last
byte (round trip), the requests of the same connection outstanding when it was sent (depth),
records per request, and a serial service time: response_i - max(request_i, response_{i-1}),
which is the broker's time per request if it answers one connection's requests one at a time.
"""

import argparse
import collections
import select
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
PACKET_OUTGOING = 4


def uvarint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def skip_tags(b, i):
    n, i = uvarint(b, i)
    for _ in range(n):
        _, i = uvarint(b, i)
        ln, i = uvarint(b, i)
        i += ln
    return i


def produce_records(frame, ver):
    """Records and batches in a Produce request frame (without the size prefix)."""
    i = 8
    (cl,) = struct.unpack_from(">h", frame, i)
    i += 2 + max(cl, 0)
    flex = ver >= 9
    if flex:
        i = skip_tags(frame, i)
    if ver >= 3:
        if flex:
            n, i = uvarint(frame, i)
            i += max(n - 1, 0)
        else:
            (n,) = struct.unpack_from(">h", frame, i)
            i += 2 + max(n, 0)
    i += 2 + 4  # acks, timeout
    records = batches = 0
    attrs = set()
    if flex:
        nt, i = uvarint(frame, i)
        nt -= 1
    else:
        (nt,) = struct.unpack_from(">i", frame, i)
        i += 4
    for _ in range(nt):
        if flex:
            ln, i = uvarint(frame, i)
            i += ln - 1
            np_, i = uvarint(frame, i)
            np_ -= 1
        else:
            (ln,) = struct.unpack_from(">h", frame, i)
            i += 2 + ln
            (np_,) = struct.unpack_from(">i", frame, i)
            i += 4
        for _ in range(np_):
            i += 4
            if flex:
                ln, i = uvarint(frame, i)
                ln -= 1
            else:
                (ln,) = struct.unpack_from(">i", frame, i)
                i += 4
            end = i + max(ln, 0)
            j = i
            while j + 61 <= end:
                (blen,) = struct.unpack_from(">i", frame, j + 8)
                (a,) = struct.unpack_from(">h", frame, j + 21)
                (cnt,) = struct.unpack_from(">i", frame, j + 57)
                attrs.add(a)
                records += cnt
                batches += 1
                j += 12 + blen
            i = end
            if flex:
                i = skip_tags(frame, i)
        if flex:
            i = skip_tags(frame, i)
    return records, batches, attrs


class Stream:
    def __init__(self):
        self.seq = None
        self.buf = bytearray()
        self.broken = False


def capture(port, secs, out):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    s.bind(("lo", 0))
    streams = collections.defaultdict(Stream)
    rows = []
    deadline = time.monotonic() + secs
    # CLOCK_REALTIME kernel stamps; keep as float seconds.
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], 0.2)
        if not r:
            continue
        data, anc, _flags, addr = s.recvmsg(262144, 64)
        if addr[2] != PACKET_OUTGOING:
            continue
        ts = None
        for lvl, typ, val in anc:
            if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", val[:16])
                ts = sec + nsec / 1e9
        if ts is None:
            ts = time.time()
        if len(data) < 14 + 20 or data[12:14] != b"\x08\x00":
            continue
        ip = data[14:]
        ihl = (ip[0] & 0x0F) * 4
        if ip[9] != 6:
            continue
        (tot,) = struct.unpack_from(">H", ip, 2)
        tcp = ip[ihl:tot]
        sport, dport, seq = struct.unpack_from(">HHI", tcp, 0)
        if port not in (sport, dport):
            continue
        off = (tcp[12] >> 4) * 4
        flags = tcp[13]
        payload = tcp[off:]
        key = (sport, dport)
        st = streams[key]
        if flags & 0x02:  # SYN
            st.seq = (seq + 1) & 0xFFFFFFFF
            st.buf.clear()
            st.broken = False
            continue
        if not payload or st.broken:
            continue
        if st.seq is None:
            st.broken = True  # joined mid-stream: frame boundaries unknown
            continue
        d = (seq - st.seq) & 0xFFFFFFFF
        if d >= 0x80000000:  # retransmission of old bytes
            skip = (st.seq - seq) & 0xFFFFFFFF
            if skip >= len(payload):
                continue
            payload = payload[skip:]
        elif d != 0:
            st.broken = True
            print(f"gap on {key}", file=sys.stderr)
            continue
        st.seq = (st.seq + len(payload)) & 0xFFFFFFFF
        st.buf += payload
        to_broker = dport == port
        conn = sport if to_broker else dport
        while len(st.buf) >= 4:
            (size,) = struct.unpack_from(">i", st.buf, 0)
            if len(st.buf) < 4 + size:
                break
            frame = bytes(st.buf[4 : 4 + size])
            del st.buf[: 4 + size]
            if to_broker:
                api, ver, corr = struct.unpack_from(">hhi", frame, 0)
                recs, batches, attrs = (0, 0, set())
                if api == 0:
                    try:
                        recs, batches, attrs = produce_records(frame, ver)
                    except (struct.error, IndexError):
                        recs = -1
                rows.append(("req", ts, conn, api, ver, corr, size + 4, recs, batches,
                             ",".join(map(str, sorted(attrs)))))
            else:
                (corr,) = struct.unpack_from(">i", frame, 0)
                rows.append(("resp", ts, conn, -1, -1, corr, size + 4, 0, 0, ""))
    with open(out, "w") as f:
        for r in rows:
            f.write("\t".join(map(str, r)) + "\n")
    return rows


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            rows.append((p[0], float(p[1]), int(p[2]), int(p[3]), int(p[4]), int(p[5]),
                         int(p[6]), int(p[7]), int(p[8]), p[9] if len(p) > 9 else ""))
    return rows


def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(len(v) * p + 0.999999) - 1))]


def summary(rows, min_produce=200):
    by_conn = collections.defaultdict(list)
    for r in rows:
        by_conn[r[2]].append(r)
    for conn, rs in by_conn.items():
        reqs = {}
        produce = [r for r in rs if r[0] == "req" and r[3] == 0]
        if len(produce) < min_produce:
            continue
        outstanding = 0
        depth = []
        rtt = []
        svc = []
        recs = []
        sizes = []
        gaps = []
        last_resp = None
        last_req = None
        vers = set()
        attrs = set()
        for r in rs:
            if r[0] == "req":
                if r[3] != 0:
                    continue
                depth.append(outstanding)
                outstanding += 1
                reqs[r[5]] = r
                recs.append(r[7])
                sizes.append(r[6])
                vers.add(r[4])
                attrs.add(r[9])
                if last_req is not None:
                    gaps.append(r[1] - last_req)
                last_req = r[1]
            else:
                q = reqs.pop(r[5], None)
                if q is None:
                    continue
                outstanding -= 1
                rtt.append(r[1] - q[1])
                start = q[1] if last_resp is None else max(q[1], last_resp)
                svc.append(r[1] - start)
                last_resp = r[1]
        span = produce[-1][1] - produce[0][1]
        ms = lambda v, p: pct(v, p) * 1e3
        print(f"conn :{conn}: {len(produce)} Produce requests in {span:.1f} s "
              f"(v{sorted(vers)}, batch attributes {sorted(attrs)})")
        print(f"  records/request p50 {pct(recs, .5)} mean {sum(recs)/len(recs):.1f} "
              f"p99 {pct(recs, .99)}; bytes/request p50 {pct(sizes, .5)}")
        dh = collections.Counter(depth)
        print("  depth at send (requests already outstanding): " +
              ", ".join(f"{k}:{dh[k]*100/len(depth):.0f}%" for k in sorted(dh)))
        print(f"  round trip ms p50 {ms(rtt, .5):.2f} p90 {ms(rtt, .9):.2f} p99 {ms(rtt, .99):.2f} "
              f"mean {sum(rtt)/len(rtt)*1e3:.2f}")
        print(f"  serial service ms p50 {ms(svc, .5):.2f} p90 {ms(svc, .9):.2f} p99 {ms(svc, .99):.2f} "
              f"mean {sum(svc)/len(svc)*1e3:.2f}; busy {sum(svc)/span*100:.0f}% of the span")
        print(f"  gap between requests ms p50 {ms(gaps, .5):.2f} p90 {ms(gaps, .9):.2f} "
              f"p99 {ms(gaps, .99):.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=19092)
    ap.add_argument("--secs", type=float, default=12)
    ap.add_argument("--out", default="/tmp/wire_trace.tsv")
    ap.add_argument("--load")
    a = ap.parse_args()
    rows = load(a.load) if a.load else capture(a.port, a.secs, a.out)
    summary(rows)


if __name__ == "__main__":
    main()
