"""The TFTP admission path in one process: µs of server CPU per request, without loadgen.

    python -m bench.admission [--requests 20000] [--batch 200] [--reps 5] [--size 40960]
                              [--single-port] [--profile FILE.prof]

What S1 costs bootstorm's Python per transfer, apart from the DATA/ACK exchange: a real
TftpServer on 127.0.0.1 (its config as `bootstorm serve` builds it) is handed the RRQ loadgen
sends (blksize 1468), from --batch client sockets in turn, through `_serve` as its listener
does; the transfers of a batch then end (`abort_all`: the engine's callback, the release of the
file and the log line), and the client sockets are drained outside the timing. The timing is
the thread's CPU time, system calls included (the OACK send, openat2, fstat). The log goes to
a line-buffered file, as bootstorm's stderr does under the benchmark. Compare the min of the
reps; on a shared machine the median swings.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import socket
import tempfile
import time

from bootstorm.config import TftpConfig
from bootstorm.log import Log
from bootstorm.tftp import TftpServer


def rrq(name: str, blksize: int) -> bytes:
    return b"\x00\x01" + name.encode() + b"\x00octet\x00blksize\x00" + str(blksize).encode() + b"\x00"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=200, help="transfers in flight at once")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--size", type=int, default=40960)
    ap.add_argument("--blksize", type=int, default=1468)
    ap.add_argument("--single-port", action="store_true")
    ap.add_argument("--profile", metavar="FILE", help="write a cProfile of one rep here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "f"), "wb") as f:
            f.write(os.urandom(args.size))
        os.chmod(os.path.join(root, "f"), 0o644)
        logfile = open(os.path.join(root, "log"), "w", buffering=1)  # noqa: SIM115
        cfg = TftpConfig(root=root, listen="127.0.0.1", port=0, single_port=args.single_port)
        loop = asyncio.new_event_loop()
        server = TftpServer(cfg, Log("text", logfile))
        server.start(loop)
        clients = []
        for _ in range(args.batch):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.setblocking(False)
            clients.append(s)
        addrs = [c.getsockname() for c in clients]
        data = rrq("f", args.blksize)
        local = socket.inet_aton("127.0.0.1")
        ifindex = socket.if_nametoindex("lo")
        batches = max(1, args.requests // args.batch)

        def drain() -> None:
            for c in clients:
                while True:
                    try:
                        c.recv(65536)
                    except BlockingIOError:
                        break

        def rep() -> float:
            spent = 0.0
            for _ in range(batches):
                t0 = time.thread_time()
                with server.log:  # as _on_requests: the lines of a wake-up in one write
                    for a in addrs:
                        server._serve(data, a, ifindex, local)
                    server.engine.abort_all()
                spent += time.thread_time() - t0
                drain()
            return spent * 1e6 / (batches * args.batch)

        rep()  # warm: the snapshot, the shared socket, the interpreter's caches
        gc.collect()
        gc.freeze()
        results = []
        for i in range(args.reps):
            if args.profile and i == 0:
                prof = cProfile.Profile()
                prof.enable()
                results.append(rep())
                prof.disable()
                prof.dump_stats(args.profile)
            else:
                results.append(rep())
        stats = server.stats()
        server.close()
        loop.close()
        for c in clients:
            c.close()
        if stats["requests_refused"]:
            raise SystemExit(f"{stats['requests_refused']} requests refused: the timing is not of admission")
        results.sort()
        print(f"admission + end of transfer, {batches * args.batch} requests per rep, "
              f"{args.reps} reps: min {results[0]:.1f} µs, median {results[len(results) // 2]:.1f} µs, "
              f"max {results[-1]:.1f} µs per request")


if __name__ == "__main__":
    main()
