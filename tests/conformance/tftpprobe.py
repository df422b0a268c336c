"""A raw TFTP client for the conformance corpus: one process, many read requests, one JSON answer.

Runs inside the client's network namespace (``ip netns exec NS python3 tftpprobe.py``), reads
``{"server": IP, "requests": [{"name", "file", "mode", "options": {..}}]}`` on stdin and prints,
per request, what the server did: the first answer (``OACK``/``DATA``/``ERROR``/``timeout``), the
options it acknowledged, the error code (the message text is kept but not compared: dnsmasq's and
bootstorm's wordings differ), and for a transfer the size, CRC-32, the size of the first DATA block
and the number of blocks.  Standard library only.

Every loop is bounded: each request has a deadline (``DEADLINE`` seconds), a retry budget, and a
cap on the bytes and packets it takes in; at most ``MAX_REQUESTS`` requests per run.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
import zlib

MAX_REQUESTS = 64
DEADLINE = 8.0  # seconds per request, whatever happens
RETRIES = 3
TIMEOUT = 0.5
MAX_BYTES = 8 << 20
MAX_PACKETS = 20000
RRQ, DATA, ACK, ERROR, OACK = 1, 3, 4, 5, 6


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("latin-1")


def rrq(server: str, req: dict) -> dict:
    opts = req.get("options") or {}
    pkt = struct.pack("!H", RRQ) + req["file"].encode("latin-1") + b"\0" + req.get("mode", "octet").encode() + b"\0"
    for k, v in opts.items():
        pkt += k.encode() + b"\0" + str(v).encode() + b"\0"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    out: dict = {"first": None}
    t_end = time.monotonic() + DEADLINE
    dest = (server, 69)
    peer = None
    blksize = 512
    data = bytearray()
    expected = 1
    blocks = 0
    tries = 0
    packets = 0
    to_send = pkt
    try:
        while time.monotonic() < t_end and packets < MAX_PACKETS:
            s.sendto(to_send, dest)
            s.settimeout(min(TIMEOUT, max(0.01, t_end - time.monotonic())))
            try:
                resp, addr = s.recvfrom(65536)
            except socket.timeout:
                tries += 1
                if tries > RETRIES:
                    out.setdefault("stalled", True)
                    break
                continue
            packets += 1
            if peer is None:
                peer = addr
                dest = addr
                out["tid_is_69"] = addr[1] == 69
            elif addr != peer:
                continue
            tries = 0
            if len(resp) < 4:
                out["first"] = out["first"] or "short"
                break
            op = struct.unpack("!H", resp[:2])[0]
            kind = {DATA: "DATA", ERROR: "ERROR", OACK: "OACK"}.get(op, f"op{op}")
            if out["first"] is None:
                out["first"] = kind
            if op == ERROR:
                out["error_code"] = struct.unpack("!H", resp[2:4])[0]
                out["error_msg"] = _cstr(resp[4:])
                break
            if op == OACK:
                parts = resp[2:].split(b"\0")
                oack = {parts[i].decode("latin-1").lower(): parts[i + 1].decode("latin-1")
                        for i in range(0, len(parts) - 1, 2)}
                out["oack"] = oack
                blksize = int(oack.get("blksize", blksize))
                to_send = struct.pack("!HH", ACK, 0)
                continue
            if op != DATA:
                break
            block = struct.unpack("!H", resp[2:4])[0]
            payload = resp[4:]
            if block == expected & 0xFFFF:
                if blocks == 0:
                    out["first_block_len"] = len(payload)
                data += payload
                blocks += 1
                expected += 1
                if len(data) > MAX_BYTES:
                    out["error"] = "too big"
                    break
            to_send = struct.pack("!HH", ACK, block)
            if len(payload) < blksize and block == (expected - 1) & 0xFFFF:
                s.sendto(to_send, dest)
                out.update(ok=True, size=len(data), crc32=zlib.crc32(data), blocks=blocks)
                break
        else:
            out.setdefault("stalled", True)
    finally:
        s.close()
    if out["first"] is None:
        out["first"] = "timeout"
    return out


def main() -> int:
    spec = json.load(sys.stdin)
    results = {}
    for req in spec["requests"][:MAX_REQUESTS]:
        results[req["name"]] = rrq(spec["server"], req)
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
