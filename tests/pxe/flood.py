"""Bounded floods for the ProxyDHCP tests and the side-by-side measurement.

Runs inside the client's namespace (``ip netns exec NS python3 flood.py ...``), every
loop bounded in count and in time, and prints one JSON object:

* ``malformed --count N --seconds S``: N malformed datagrams (seeded, reproducible) sent
  in turn to the server's ports 67 and 4011: random bytes, truncated headers, a bad magic
  cookie, an option length past the end, option overload (52) into garbage in
  ``file``/``sname``, hlen 255, an unterminated option header.
* ``discover --count N --seconds S``: N DHCPDISCOVERs (arch 0, PXEClient) from N distinct
  MACs as raw broadcast frames, while an AF_PACKET sniffer counts the OFFERs by xid:
  replies, loss, and replies per second from the first send to the last reply.

From the test process, :func:`run_flood` wraps it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simulator import (ClientProfile, build_bootp, build_frame, discover,  # noqa: E402
                       encode_options)

MAX_COUNT = 100_000
MAX_SECONDS = 60.0
KINDS = ("random", "truncated", "bad-cookie", "option-past-end", "overload-garbage", "hlen-255",
         "option-header-cut")


def malformed(kind: str, rng: random.Random, xid: int) -> bytes:
    """One malformed DHCP message of the given kind (each one must be rejected by a parser)."""
    good = discover(ClientProfile(arch=0, mac="52:54:00:66:00:01"), xid=xid)
    if kind == "random":
        return rng.randbytes(rng.randrange(0, 600))
    if kind == "truncated":
        return good[:rng.randrange(0, 240)]
    if kind == "bad-cookie":
        return good[:236] + b"\x63\x82\x53\x64" + good[240:]
    if kind == "option-past-end":  # option 60 claims 200 bytes, 20 follow
        return build_bootp(xid=xid, raw_options=b"\x35\x01\x01\x3c\xc8" + b"PXEClient" * 2, min_len=0)
    if kind == "overload-garbage":  # 52 says "options in file and sname"; they hold a runaway option
        area = bytes([12, 250]) + rng.randbytes(60)
        return build_bootp(xid=xid, sname=area[:64], file=area.ljust(128, b"\x01"),
                           options=[(53, b"\x01"), (52, b"\x03"), (60, b"PXEClient")])
    if kind == "hlen-255":
        b = bytearray(good)
        b[2] = 255
        return bytes(b)
    if kind == "option-header-cut":  # the last byte is an option code with no length
        return build_bootp(xid=xid, raw_options=encode_options([(53, b"\x01")]) + b"\x3c", min_len=0)
    raise ValueError(kind)


def flood_malformed(server: str, count: int, seconds: float, ports=(67, 4011), seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    sent, errors, by_kind = 0, 0, {k: 0 for k in KINDS}
    t0 = time.monotonic()
    for i in range(min(count, MAX_COUNT)):
        if time.monotonic() - t0 > min(seconds, MAX_SECONDS):
            break
        kind = KINDS[i % len(KINDS)]
        try:
            s.sendto(malformed(kind, rng, 0x5A000000 + i), (server, ports[i % len(ports)]))
            sent += 1
            by_kind[kind] += 1
        except OSError:
            errors += 1
        if i % 200 == 199:
            time.sleep(0.002)  # a flood, but not one the local send queue drops by itself
    s.close()
    return {"sent": sent, "send_errors": errors, "seconds": round(time.monotonic() - t0, 3), "by_kind": by_kind}


def flood_discover(iface: str, count: int, seconds: float, rate: float = 0.0) -> dict[str, Any]:
    count = min(count, MAX_COUNT)
    frames, xids = [], set()
    for i in range(count):
        mac = "02:42:%02x:%02x:%02x:%02x" % (i >> 24 & 0xFF, i >> 16 & 0xFF, i >> 8 & 0xFF, i & 0xFF)
        xid = 0x7A000000 + i
        xids.add(xid)
        frames.append(build_frame(discover(ClientProfile(arch=0, mac=mac), xid=xid), src_mac=mac))
    sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sniff.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sniff.bind((iface, 0))
    sniff.setblocking(False)
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    raw.bind((iface, 0))
    seen: set[int] = set()
    dup = 0
    last_reply = None

    def drain() -> None:
        nonlocal dup, last_reply
        while True:
            try:
                frame, addr = sniff.recvfrom(4096)
            except BlockingIOError:
                return
            if addr[2] == 4 or len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00":
                continue
            bootp = frame[14 + (frame[14] & 0x0F) * 4 + 8:]
            if bootp[0] != 2:
                continue
            xid = struct.unpack("!I", bootp[4:8])[0]
            if xid in xids:
                if xid in seen:
                    dup += 1
                seen.add(xid)
                last_reply = time.monotonic()

    limit = min(seconds, MAX_SECONDS)
    t0 = time.monotonic()
    sent = 0
    for f in frames:
        now = time.monotonic()
        if now - t0 > limit:
            break
        if rate > 0:
            due = t0 + sent / rate
            while now < due:
                select.select([sniff], [], [], due - now)
                drain()
                now = time.monotonic()
        try:
            raw.send(f)
            sent += 1
        except OSError:
            time.sleep(0.001)
        if sent % 32 == 0:
            drain()
    send_done = time.monotonic()
    # wait for stragglers: until 1 s passes with no new reply, or the time limit
    while time.monotonic() - t0 < limit + 2:
        before = len(seen)
        r, _, _ = select.select([sniff], [], [], 1.0)
        drain()
        if not r or len(seen) == before:
            if time.monotonic() - (last_reply or send_done) > 1.0:
                break
    span = ((last_reply or send_done) - t0) or 1e-9
    return {"sent": sent, "replies": len(seen), "duplicates": dup, "lost": sent - len(seen),
            "send_seconds": round(send_done - t0, 3), "seconds": round(span, 3),
            "replies_per_second": round(len(seen) / span, 1), "offered_per_second": round(sent / ((send_done - t0) or 1e-9), 1)}


def run_flood(ns: str, *args: str, timeout: float = 90.0) -> dict[str, Any]:
    """Run this script in namespace ``ns`` with ``args``; its JSON result."""
    cp = subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__), *args],
                        capture_output=True, text=True, timeout=timeout)
    if cp.returncode != 0:
        raise RuntimeError(f"flood failed ({cp.returncode}): {cp.stderr}")
    return json.loads(cp.stdout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("malformed", "discover"))
    ap.add_argument("--server", default="10.213.0.1")
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=0.0, help="DISCOVERs per second (0: as fast as possible)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    if a.kind == "malformed":
        out = flood_malformed(a.server, a.count, a.seconds, seed=a.seed)
    else:
        out = flood_discover(a.iface, a.count, a.seconds, a.rate)
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
