"""Regular build vs Limited API (abi3) build of bootstorm's native code: the figures of docs/wheels.md.

Runs against whichever bootstorm the interpreter imports (a wheel installed in a venv, or
PYTHONPATH=some/src). Two measurements:
  micro      best-of-7 ns per call of parse_request / negotiate / parse_reply / build_ack
  transfer   `python -m bootstorm serve` on 127.0.0.1, a 64 MiB file fetched N times with
             `curl --tftp-blksize 1468`; median MB/s (curl's speed_download) and median server
             CPU seconds (utime+stime from /proc) per fetch. With several --pythonpath, one
             server each, fetches alternating between them.

    python wheels/abi3_bench.py micro
    python wheels/abi3_bench.py transfer --runs 7
    python wheels/abi3_bench.py transfer --runs 15 --pythonpath /tmp/reg/src --pythonpath /tmp/la/src
    python wheels/abi3_bench.py transfer --runs 15 --pythonpath VENV1/bin/python --pythonpath VENV2/bin/python
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import timeit


def micro() -> None:
    import bootstorm._native.tftp as t

    print(f"# {t.__file__}")
    req = (b"\x00\x01pxelinux.0\x00octet\x00blksize\x001468\x00tsize\x000\x00"
           b"windowsize\x0016\x00timeout\x001\x00")
    opts = {"blksize": "1468", "tsize": "0", "windowsize": "16", "timeout": "1"}
    data = b"\x00\x03\x00\x01" + b"x" * 1468
    cases = {
        "parse_request": lambda: t.parse_request(req),
        "negotiate": lambda: t.negotiate(opts, 123456789),
        "parse_reply": lambda: t.parse_reply(data),
        "build_ack": lambda: t.build_ack(7),
    }
    n = 200_000
    for name, fn in cases.items():
        ns = min(timeit.repeat(fn, number=n, repeat=7)) / n * 1e9
        print(f"{name:14s} {ns:7.0f} ns/call")


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds used so far by a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _serve(root: str, where: str | None) -> tuple[subprocess.Popen, int]:
    """where: None (this interpreter), a directory for PYTHONPATH, or another interpreter."""
    env = dict(os.environ)
    python = sys.executable
    if where and os.path.isdir(where):
        env["PYTHONPATH"] = where
    elif where:
        python = where
    srv = subprocess.Popen(
        [python, "-m", "bootstorm", "serve", "--tftp-root", root,
         "--listen", "127.0.0.1", "--tftp-port", "0"],
        stderr=subprocess.PIPE, text=True, cwd=root, env=env)
    for line in srv.stderr:
        m = re.search(r"TFTP listening on 127\.0\.0\.1:(\d+)", line)
        if m:
            print(f"# {where or '(installed)'}: {line.rstrip()}")
            return srv, int(m.group(1))
    srv.kill()
    sys.exit(f"server ({where}) did not start")


def transfer(runs: int, size_mb: int, pythonpaths: list[str]) -> None:
    """One server per PYTHONPATH (or one for the current environment); the fetches alternate
    between them so that other load on the machine hits every build alike."""
    with tempfile.TemporaryDirectory() as root:
        with open(os.path.join(root, "big.img"), "wb") as f:
            f.write(os.urandom(size_mb << 20))
        servers = [_serve(root, p) for p in (pythonpaths or [None])]
        rates: list[list[float]] = [[] for _ in servers]
        cpu: list[list[float]] = [[] for _ in servers]
        try:
            for _ in range(runs):
                for i, (srv, port) in enumerate(servers):
                    c0 = _cpu_s(srv.pid)
                    out = subprocess.run(
                        ["curl", "-s", "--tftp-blksize", "1468", "-o", os.devnull,
                         "-w", "%{speed_download} %{size_download}",
                         f"tftp://127.0.0.1:{port}/big.img"],
                        check=True, capture_output=True, text=True).stdout.split()
                    cpu[i].append(_cpu_s(srv.pid) - c0)
                    assert int(float(out[1])) == size_mb << 20, out
                    rates[i].append(float(out[0]) / 1e6)
        finally:
            for srv, _ in servers:
                srv.terminate()
                srv.wait(10)
        for p, r, c in zip(pythonpaths or ["(installed)"], rates, cpu):
            print(f"{p}: MB/s " + " ".join(f"{x:.1f}" for x in r))
            print(f"{p}: median {statistics.median(r):.1f} MB/s, server CPU median "
                  f"{statistics.median(c):.3f} s per {size_mb} MiB")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=("micro", "transfer"))
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--size-mb", type=int, default=64)
    p.add_argument("--pythonpath", action="append", default=[],
                   help="transfer: one server per PYTHONPATH directory or python interpreter "
                        "given (repeatable)")
    a = p.parse_args()
    micro() if a.what == "micro" else transfer(a.runs, a.size_mb, a.pythonpath)


if __name__ == "__main__":
    main()
