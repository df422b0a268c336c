"""TFTP scenarios (S1-S3), the 2000-transfer memory check, the workers check and the
loopback ceilings: one measurement each, a fresh server each time, on 127.0.0.1 only.

Driven by ``python -m bench`` (bench/__main__.py); nothing here loops without a bound.
"""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

from bench import pin
from bench.peers import LOOPBACK, PEERS, Bootstorm

HERE = Path(__file__).resolve().parent
# bootstorm with non-default options, each a row of its own: W's worker counts, and
# bootstorm-wbm1m, which grants the windowsize 16 at blksize 65464 that atftpd and dnsmasq
# 2.92 grant (the default window-bytes-max, 64 KiB, grants 1 there: docs/tftp.md);
# loadgen's buffer holds it
VARIANTS = {"bootstorm-w1": ("--workers", "1"), "bootstorm-w2": ("--workers", "2"),
            "bootstorm-wbm1m": ("--window-bytes-max", "1048576")}
BUILD = HERE / "build"
TOOLS = {"loadgen": "loadgen.c", "nullserver": "nullserver.c", "ceiling": "ceiling.c",
         "dhcpgen": "dhcpgen.c"}


def build_tools() -> dict[str, Path]:
    out = {}
    BUILD.mkdir(parents=True, exist_ok=True)
    for exe, src in TOOLS.items():
        e, s = BUILD / exe, HERE / src
        if not e.exists() or e.stat().st_mtime < s.stat().st_mtime:
            subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", str(e), str(s)], check=True, timeout=120)
        out[exe] = e
    return out


def make_file(root: Path, name: str, size: int) -> Path:
    p = root / name
    if not (p.exists() and p.stat().st_size == size):
        with open(p, "wb") as f:
            left = size
            while left > 0:  # bounded: size / 1 MiB iterations
                n = min(left, 1 << 20)
                f.write(os.urandom(n))
                left -= n
    os.chmod(p, 0o644)
    os.chmod(root, 0o755)  # tftpd-hpa, atftpd drop to nobody before reading
    return p


def run_loadgen(port: int, *, name: str, size: int, verify: Path, concurrency: int, transfers: int,
                blksize: int, windowsize: int | None, max_seconds: float) -> dict:
    argv = [str(BUILD / "loadgen"), "--server", LOOPBACK, "--port", str(port), "--file", name,
            "--size", str(size), "--concurrency", str(concurrency), "--transfers", str(transfers),
            "--blksize", str(blksize), "--timeout-ms", "1000", "--max-seconds", str(int(max_seconds)),
            "--verify", str(verify)]
    if windowsize:
        argv += ["--windowsize", str(windowsize)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=max_seconds + 60,
                       preexec_fn=pin.load())
    if not p.stdout.strip():
        raise RuntimeError(f"loadgen rc={p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout)


class RssSampler:
    """Peak and last total VmRSS of every process in the server's cgroup, sampled every 50 ms."""

    def __init__(self, peer, period: float = 0.05):
        self.peer, self.period = peer, period
        self.peak_kb = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def rss_kb(self) -> int:
        total = 0
        for p in self.peer.meter.pids():
            try:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
            except OSError:
                pass
        return total

    def _run(self):
        t0 = time.monotonic()
        while not self._stop.is_set() and len(self.samples) < 20000:  # bounded: ~17 min
            kb = self.rss_kb()
            self.samples.append((round(time.monotonic() - t0, 3), kb))
            self.peak_kb = max(self.peak_kb, kb)
            self._stop.wait(self.period)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(2)


def measure(server: str, root: Path, files: dict[str, Path], sc: dict, *, rss: bool = False) -> dict:
    """Start ``server`` fresh, run one loadgen invocation of scenario ``sc``, stop it."""
    peer = Bootstorm(extra=VARIANTS[server]) if server in VARIANTS else PEERS[server]()
    port = peer.start(str(root))
    sampler = None
    try:
        time.sleep(0.1)  # start-up work finishes before the CPU baseline
        idle_kb = RssSampler(peer).rss_kb() if rss else None
        cpu0 = peer.cpu_seconds()
        split0 = peer.meter.split()
        name = sc["file"]
        if rss:
            sampler = RssSampler(peer)
            sampler.__enter__()
        try:
            res = run_loadgen(port, name=name, size=files[name].stat().st_size, verify=files[name],
                              concurrency=sc["concurrency"], transfers=sc["transfers"],
                              blksize=sc["blksize"], windowsize=sc.get("windowsize"),
                              max_seconds=sc["max_seconds"])
        finally:
            if sampler:
                sampler.__exit__()
        time.sleep(0.05)  # late ACKs, children exiting
        cpu1 = peer.cpu_seconds()
        split1 = peer.meter.split()
    finally:
        rc = peer.stop()
        tail = peer.log_tail(3)
    res["server_cpu_s"] = cpu1 - cpu0
    if split0 and split1:
        res["server_user_s"], res["server_sys_s"] = split1[0] - split0[0], split1[1] - split0[1]
    res["server_cpu_method"] = peer.meter.kind if peer.meter else "?"
    res["server_exit"] = rc
    res["server_log_tail"] = tail
    gb = res["bytes"] / 1e9
    res["cpu_s_per_gb"] = res["server_cpu_s"] / gb if gb > 0 else None
    res["client_cpu_s_per_gb"] = res["client_cpu_s"] / gb if gb > 0 else None
    res["transfers_per_cpu_s"] = (res["transfers_ok"] / res["server_cpu_s"]) if res["server_cpu_s"] > 0 else None
    if rss:
        res["rss_idle_kb"] = idle_kb
        res["rss_peak_kb"] = sampler.peak_kb
        res["rss_samples"] = sampler.samples[::max(1, len(sampler.samples) // 200)]
    return res


def ceiling(mode: str, size: int, count: int, max_seconds: float) -> dict:
    where = ["--pin", f"{pin.SERVER_CPU},{pin.LOAD_CPU}"] if pin.enabled else []
    p = subprocess.run([str(BUILD / "ceiling"), mode, "--size", str(size), "--count", str(count),
                        "--max-seconds", str(max_seconds), *where], capture_output=True, text=True,
                       timeout=max_seconds + 30)
    if not p.stdout.strip():
        raise RuntimeError(f"ceiling rc={p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout)
