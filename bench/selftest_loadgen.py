"""Self-test of bench/loadgen.c against a tiny, deliberately lossy RFC 7440 server.

    python -m bench.selftest_loadgen

No installed peer negotiates windowsize (dnsmasq and tftpd-hpa ignore it, atftpd is not
installed), so this script serves one file from 127.0.0.1 with windowsize, block-number
rollover, and injected faults - dropped DATA (a gap), duplicated DATA, and a second transfer ID - and checks that loadgen still verifies every byte.  Everything is
bounded in time; only 127.0.0.1 is used.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.tftp import build_tools

MAX_SECONDS = 60


def serve(sock: socket.socket, data: bytes, faults: dict, stop: threading.Event, log: list):
    """Serve RRQs one after another until stop is set."""
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            pkt, peer = sock.recvfrom(2048)
        except socket.timeout:
            continue
        if pkt[:2] != b"\x00\x01":
            continue
        parts = pkt[2:].split(b"\x00")
        opts = {parts[i].lower(): parts[i + 1] for i in range(2, len(parts) - 1, 2)}
        bs = int(opts.get(b"blksize", 512))
        ws = int(opts.get(b"windowsize", 1)) if faults.get("grant_window", True) else 1
        t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t.bind(("127.0.0.1", 0))
        t.settimeout(0.05)
        try:
            log.append(transfer(t, peer, data, bs, ws, opts, faults, stop))
        finally:
            t.close()


def transfer(t, peer, data, bs, ws, opts, faults, stop):
    nblocks = len(data) // bs + 1
    oack = b"\x00\x06"
    if b"blksize" in opts:
        oack += b"blksize\x00%d\x00" % bs
    if b"windowsize" in opts and faults.get("grant_window", True):
        oack += b"windowsize\x00%d\x00" % ws
    if b"tsize" in opts:
        oack += b"tsize\x00%d\x00" % len(data)
    drop = set(faults.get("drop", ()))     # absolute block numbers dropped once
    dup = set(faults.get("dup", ()))       # absolute block numbers sent twice
    stats = dict(sent=0, dropped=0, acks=0, ws=ws)
    if faults.get("second_tid"):
        # a stray second TID sending DATA 1: the client must answer ERROR 5 and go on
        s2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s2.bind(("127.0.0.1", 0))
    else:
        s2 = None
    acked = 0
    if len(oack) > 2:
        for _ in range(20):
            t.sendto(oack, peer)
            if s2:
                s2.sendto(b"\x00\x03\x00\x01" + data[:bs], peer)
            try:
                a, _ = t.recvfrom(100)
                if a[:4] == b"\x00\x04\x00\x00":
                    break
            except socket.timeout:
                continue
    deadline = time.monotonic() + MAX_SECONDS
    while acked < nblocks and time.monotonic() < deadline and not stop.is_set():
        for b in range(acked + 1, min(acked + ws, nblocks) + 1):
            payload = b"\x00\x03" + struct.pack("!H", b & 0xFFFF) + data[(b - 1) * bs: b * bs]
            if b in drop:
                drop.discard(b)
                stats["dropped"] += 1
                continue
            t.sendto(payload, peer)
            stats["sent"] += 1
            if b in dup:
                t.sendto(payload, peer)
                stats["sent"] += 1
        # wait for an ACK; ACK numbers are mod 65536, map to absolute near `acked`
        got = False
        for _ in range(40):
            try:
                a, _ = t.recvfrom(100)
            except socket.timeout:
                break
            if a[:2] == b"\x00\x04":
                n16 = struct.unpack("!H", a[2:4])[0]
                base = acked - (acked & 0xFFFF)
                cand = [base + n16 - 65536, base + n16, base + n16 + 65536]
                absn = min(cand, key=lambda c: abs(c - acked - ws))
                stats["acks"] += 1
                if absn > acked:
                    acked = absn
                got = True
                break
            if a[:2] == b"\x00\x05":
                stats["error"] = a[4:-1].decode(errors="replace")
                return stats
        if not got:
            continue  # timeout: resend the window from acked+1
    if s2:
        s2.close()
    stats["complete"] = acked >= nblocks
    return stats


def run(loadgen, port, name, size, path, **kw):
    argv = [str(loadgen), "--server", "127.0.0.1", "--port", str(port), "--file", name,
            "--size", str(size), "--concurrency", "1", "--transfers", "1",
            "--timeout-ms", "300", "--max-seconds", str(MAX_SECONDS), "--verify", str(path)]
    for k, v in kw.items():
        argv += [f"--{k}"] + ([] if v is True else [str(v)])
    p = subprocess.run(argv, capture_output=True, text=True, timeout=MAX_SECONDS + 30)
    return json.loads(p.stdout)


def main() -> int:
    loadgen = build_tools()["loadgen"]
    cases = [
        # name, file size, loadgen options, server faults, expected granted windowsize
        ("lock-step, exact multiple of blksize", 512 * 8, dict(blksize=512), {}, 1),
        ("window 4, gap at 3 and 9, dup 5", 512 * 20 + 7, dict(blksize=512, windowsize=4),
         dict(drop=[3, 9], dup=[5]), 4),
        ("window 16, rollover (70000 blocks of 16)", 16 * 70000 + 3,
         dict(blksize=16, windowsize=16), dict(drop=[65535, 65536, 65537], dup=[65536]), 16),
        ("window asked, not granted -> lock-step", 1468 * 30 + 1,
         dict(blksize=1468, windowsize=16), dict(grant_window=False, drop=[7]), 1),
        ("last block of a window dropped", 1000 * 32,
         dict(blksize=1000, windowsize=8), dict(drop=[8, 16, 33]), 8),
        ("stray second TID", 512 * 3 + 1, dict(blksize=512), dict(second_tid=True), 1),
        ("tsize", 4000, dict(blksize=512, tsize=True), {}, 1),
    ]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="loadgen-selftest-") as tmp:
        for title, size, opts, faults, want_ws in cases:
            data = os.urandom(size)
            path = Path(tmp) / "f.bin"
            path.write_bytes(data)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            stop, log = threading.Event(), []
            th = threading.Thread(target=serve, args=(sock, data, faults, stop, log), daemon=True)
            th.start()
            try:
                r = run(loadgen, sock.getsockname()[1], "f.bin", size, path, **opts)
            finally:
                stop.set()
                th.join(5)
                sock.close()
            ok = (r["transfers_ok"] == 1 and r["bytes"] == size
                  and r["negotiated"]["windowsize_max"] == want_ws)
            if faults.get("second_tid"):
                ok = ok and r["events"]["unknown_tid"] >= 1
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {title}: ok={r['transfers_ok']} bytes={r['bytes']} "
                  f"win={r['negotiated']['windowsize_max']} retx={r['retransmits']} "
                  f"errors={r['errors']} events={r['events']} server={log}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
