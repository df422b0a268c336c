"""Side-by-side TFTP benchmark: dnsmasq, tftpd-hpa and bootstorm on 127.0.0.1.

    python -m bench.side_by_side [--quick] [--out bench/results] [--servers dnsmasq,null]

Scenarios (each server freshly started for every single measurement):
  A1  one 64 MiB transfer, blksize 1468, windowsize 1   (lock-step)
  A16 one 64 MiB transfer, blksize 1468, windowsize 16  (servers that do not negotiate
      windowsize answer without it and the client runs lock-step)
  B   2000 transfers of a 40 KiB file, 200 at once, blksize 1468, no windowsize

Medians over 3 repetitions (1 with --quick); repetitions are interleaved across servers.
Writes OUT/side_by_side.json and OUT/side_by_side.md.  Only 127.0.0.1 is ever used;
every loop is bounded in count and every subprocess in time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.peers import DEFAULT_PEERS, LOOPBACK, PEERS

HERE = Path(__file__).resolve().parent
LOADGEN_SRC = HERE / "loadgen.c"
LOADGEN = HERE / "build" / "loadgen"

SMALL = ("small.bin", 40 * 1024)
LARGE = ("large.bin", 64 * 1024 * 1024)

SCENARIOS = [
    # id, title, file, concurrency, transfers, blksize, windowsize, max_seconds
    dict(id="A1", title="1 x 64 MiB, blksize 1468, windowsize 1", file=LARGE, concurrency=1,
         transfers=1, blksize=1468, windowsize=1, max_seconds=120),
    dict(id="A16", title="1 x 64 MiB, blksize 1468, windowsize 16", file=LARGE, concurrency=1,
         transfers=1, blksize=1468, windowsize=16, max_seconds=120),
    dict(id="B", title="2000 x 40 KiB, 200 concurrent, blksize 1468", file=SMALL,
         concurrency=200, transfers=2000, blksize=1468, windowsize=None, max_seconds=120),
]


def build_loadgen(force: bool = False) -> Path:
    if force or not LOADGEN.exists() or LOADGEN.stat().st_mtime < LOADGEN_SRC.stat().st_mtime:
        LOADGEN.parent.mkdir(parents=True, exist_ok=True)
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-O2", "-o", str(LOADGEN), str(LOADGEN_SRC)], check=True, timeout=120)
    return LOADGEN


def make_files(root: Path) -> dict[str, Path]:
    out = {}
    for name, size in (SMALL, LARGE):
        p = root / name
        with open(p, "wb") as f:
            left = size
            while left > 0:  # bounded: size / 1 MiB iterations
                n = min(left, 1 << 20)
                f.write(os.urandom(n))
                left -= n
        assert p.stat().st_size == size
        os.chmod(p, 0o644)
        out[name] = p
    os.chmod(root, 0o755)  # tftpd-hpa drops to nobody before reading
    return out


def run_loadgen(port: int, sc: dict, files: dict[str, Path]) -> dict:
    name, size = sc["file"]
    argv = [str(LOADGEN), "--server", LOOPBACK, "--port", str(port), "--file", name,
            "--size", str(size), "--concurrency", str(sc["concurrency"]),
            "--transfers", str(sc["transfers"]), "--blksize", str(sc["blksize"]),
            "--timeout-ms", "1000", "--max-seconds", str(sc["max_seconds"]),
            "--verify", str(files[name])]
    if sc["windowsize"]:
        argv += ["--windowsize", str(sc["windowsize"])]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=sc["max_seconds"] + 60)
    if not p.stdout.strip():
        raise RuntimeError(f"loadgen rc={p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout)


def measure(peer_cls, root: Path, sc: dict, files) -> dict:
    peer = peer_cls()
    port = peer.start(str(root))
    try:
        time.sleep(0.1)  # let start-up work finish before the CPU baseline
        cpu0 = peer.cpu_seconds()
        res = run_loadgen(port, sc, files)
        time.sleep(0.05)  # late ACK processing / children exiting
        cpu1 = peer.cpu_seconds()
    finally:
        rc = peer.stop()
        tail = peer.log_tail(5)
    res["server_cpu_s"] = cpu1 - cpu0
    res["server_cpu_method"] = peer.meter.kind
    res["server_exit"] = rc
    res["server_log_tail"] = tail
    gb = res["bytes"] / 1e9
    res["cpu_s_per_gb"] = res["server_cpu_s"] / gb if gb > 0 else None
    res["client_cpu_s_per_gb"] = res["client_cpu_s"] / gb if gb > 0 else None
    return res


KEYS = ["transfers_per_s", "mb_per_s", "p50_ms", "p99_ms", "failed", "server_cpu_s",
        "cpu_s_per_gb", "client_cpu_s", "retransmits", "windowsize_granted"]


def flat(r: dict) -> dict:
    return dict(transfers_per_s=r["transfers_per_s"], mb_per_s=r["mb_per_s"],
                p50_ms=r["latency_ms"]["p50"], p99_ms=r["latency_ms"]["p99"],
                failed=r["transfers_failed"], server_cpu_s=r["server_cpu_s"],
                cpu_s_per_gb=r["cpu_s_per_gb"], client_cpu_s=r["client_cpu_s"],
                retransmits=r["retransmits"],
                windowsize_granted=r.get("negotiated", {}).get("windowsize_max", 0))


def median_of(runs: list[dict]) -> dict:
    out = {}
    for k in KEYS:
        vals = [flat(r)[k] for r in runs if flat(r)[k] is not None]
        out[k] = statistics.median(vals) if vals else None
    out["failed"] = max(flat(r)["failed"] for r in runs) if runs else None  # worst, not median
    return out


def fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, int):
        return str(x)
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{nd}f}"


def ratio(a, b):
    if a is None or b in (None, 0):
        return "-"
    return f"{a / b:.2f}x"


def markdown(result: dict) -> str:
    L = []
    L.append("# TFTP side by side (127.0.0.1)")
    L.append("")
    L.append(f"{result['when']} on {result['host']['machine']}, {result['host']['cpus']} CPUs, "
             f"kernel {result['host']['kernel']}; medians of {result['repetitions']} run(s); "
             f"ratios are against dnsmasq in the same run (throughput: higher is better; "
             f"CPU/GB: lower is better).")
    L.append("")
    L.append("| scenario | server | transfers/s | MB/s | p50 ms | p99 ms | failed | "
             "server CPU s/GB | client CPU s | win | thrpt vs dnsmasq | CPU/GB vs dnsmasq |")
    L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for sc in SCENARIOS:
        rows = result["scenarios"].get(sc["id"], {})
        base = rows.get("dnsmasq", {}).get("median")
        key = "mb_per_s" if sc["transfers"] == 1 else "transfers_per_s"
        for server, d in rows.items():
            m = d.get("median")
            if not m:
                err = (d.get("error") or "?").split(" | ")[-1].strip().replace("|", "/")
                L.append(f"| {sc['id']} | {server} | error: {err[:160]} |" + " |" * 10)
                continue
            L.append("| " + " | ".join([
                sc["id"], server, fmt(m["transfers_per_s"]), fmt(m["mb_per_s"]),
                fmt(m["p50_ms"]), fmt(m["p99_ms"]), fmt(m["failed"]), fmt(m["cpu_s_per_gb"], 2),
                fmt(m["client_cpu_s"], 2),
                fmt(int(m["windowsize_granted"])) if m["windowsize_granted"] is not None else "-",
                ratio(m[key], base[key]) if base else "-",
                ratio(m["cpu_s_per_gb"], base["cpu_s_per_gb"]) if base else "-",
            ]) + " |")
    L.append("")
    L.append("Scenarios: " + "; ".join(f"**{s['id']}** {s['title']}" for s in SCENARIOS) + ".")
    L.append("")
    L.append("`win` = windowsize the server granted (1 = lock-step, no windowsize in the OACK). "
             "MB = 10^6 bytes of verified payload; latency = RRQ sent to last ACK sent, per "
             "transfer; server CPU = user+system of the server and all its children "
             f"({result.get('cpu_method', '?')}), divided by the verified bytes.")
    for s, why in result.get("skipped", {}).items():
        L.append(f"\n- {s} skipped: {why}")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 repetition instead of 3")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--servers", default=",".join(DEFAULT_PEERS),
                    help="comma list of " + ",".join(PEERS) + " (null = bench/nullserver.c, "
                    "a minimal C server showing the load generator's own ceiling)")
    ap.add_argument("--scenarios", default=",".join(s["id"] for s in SCENARIOS))
    ap.add_argument("--repetitions", type=int, default=None)
    a = ap.parse_args(argv)

    reps = a.repetitions or (1 if a.quick else 3)
    reps = max(1, min(reps, 20))
    build_loadgen()
    servers, skipped = [], {}
    for n in a.servers.split(","):
        n = n.strip()
        if n not in PEERS:
            ap.error(f"unknown server {n}")
        ok, why = PEERS[n].available()
        if ok:
            servers.append(n)
            print(f"[bench] {n}: {why}", file=sys.stderr)
        else:
            skipped[n] = why
            print(f"[bench] {n}: SKIPPED ({why})", file=sys.stderr)
    wanted = set(a.scenarios.split(","))
    scenarios = [s for s in SCENARIOS if s["id"] in wanted]

    result = dict(
        when=time.strftime("%Y-%m-%d %H:%M:%S"),
        host=dict(machine=platform.machine(), cpus=os.cpu_count(), kernel=platform.release()),
        repetitions=reps, skipped=skipped, scenarios={}, runs=[],
    )
    tmp = Path(tempfile.mkdtemp(prefix="bootstorm-bench-"))
    try:
        root = tmp / "root"
        root.mkdir()
        files = make_files(root)
        for rep in range(reps):
            for sc in scenarios:
                for n in servers:
                    t = time.monotonic()
                    try:
                        r = measure(PEERS[n], root, sc, files)
                        result["cpu_method"] = r["server_cpu_method"]
                    except Exception as e:  # noqa: BLE001 - record and go on
                        r = dict(error=f"{type(e).__name__}: {e}")
                    r.update(rep=rep, scenario=sc["id"], server=n)
                    result["runs"].append(r)
                    if "error" in r:
                        msg = r["error"]
                    else:
                        f = flat(r)
                        msg = (f"{f['transfers_per_s']:.1f} tr/s {f['mb_per_s']:.1f} MB/s "
                               f"p99 {f['p99_ms']:.1f} ms failed {f['failed']} "
                               f"cpu {r['server_cpu_s']:.2f}s win {f['windowsize_granted']}")
                    print(f"[bench] rep {rep + 1}/{reps} {sc['id']:>3} {n:<10} {msg} "
                          f"({time.monotonic() - t:.1f}s)", file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for sc in scenarios:
        rows = {}
        for n in servers:
            runs = [r for r in result["runs"] if r["scenario"] == sc["id"] and r["server"] == n]
            good = [r for r in runs if "error" not in r]
            rows[n] = dict(median=median_of(good) if good else None,
                           error=None if good else (runs[0].get("error") if runs else "no run"))
        result["scenarios"][sc["id"]] = rows

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "side_by_side.json").write_text(json.dumps(result, indent=1) + "\n")
    md = markdown(result)
    (out / "side_by_side.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
