"""The boot-storm benchmark: bootstorm side by side with the TFTP/ProxyDHCP servers users run.

    python -m bench                       # everything, medians of 3 repetitions (~15 min)
    python -m bench --quick               # smaller counts, 3 repetitions (~3 min)
    python -m bench --scenarios S1,S4 --servers dnsmasq,bootstorm --reps 5
    python -m bench --setup               # only make bench/build/pyenv and bench/build/atftpd
    python -m bench --setup --dnsmasq-src DIR   # also build the dnsmasq-2.92 peer from DIR
    python -m bench --replot              # tables and plots again from bench/results/bench.json

Groups (``--scenarios``):
  CEIL  loopback ceilings: blast (sendmmsg/recvmmsg; and with UDP GSO at 1468 B) and
        lock-step ping-pong, 1468 and 65464 B, also with the sending side busy-polling 50 µs
  S1    small-file storm: 40 KiB file, 200 concurrent, thousands of transfers, blksize 1468
  S2    one 64 MiB transfer: blksize 1468 and 65464 x windowsize 1 and 16
  S3    big-file storm: 16 MiB, 100 concurrent, windowsize 1 and 8
  S4    ProxyDHCP in network namespaces: DISCOVERs from many MACs, then :4011 REQUESTs
  MEM   2000 concurrent transfers in one bootstorm process, RSS from /proc during the run
  W     bootstorm --workers 1 vs 2: transfers per server CPU second (the S1 load; pinned, all
        workers share the server CPU: what splitting the load costs, not what a core adds)

Every server is started fresh for every measurement; repetitions are interleaved (rep 1 of
every case and server, then rep 2...).  Results: bench/results/bench.json (every run) and
bench/results/bench.md (medians, min-max, ratios, goals); plots: docs/img/bench-*.png
(drawn by bench/plots.py with the bench venv's matplotlib - never a bootstorm dependency).
TFTP only on 127.0.0.1; DHCP only inside namespaces made and removed here.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import dhcp, pin, tftp
from bench.peers import DEFAULT_PEERS, PEERS, PYENV, Atftpd, Dnsmasq292

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
IMG = REPO / "docs" / "img"
PY_PEERS = ["tftpy", "py3tftp", "fbtftp"]
GROUPS = ["CEIL", "S1", "S2", "S3", "S4", "MEM", "W"]
MiB = 1 << 20


# ----------------------------------------------------------------------------- setup
def setup(verbose=True, dnsmasq_src: str | None = None) -> None:
    """The throwaway venv (matplotlib, tftpy, py3tftp, fbtftp), atftpd unpacked from its .deb,
    and with dnsmasq_src dnsmasq 2.92 built from that source tree."""
    py = PYENV / "bin" / "python"
    if not py.exists():
        print(f"[bench] creating {PYENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(PYENV)], check=True, timeout=300)
    need = [m for m in ("matplotlib", "tftpy", "py3tftp", "fbtftp")
            if subprocess.run([str(py), "-c", f"import {m}"], capture_output=True, timeout=60).returncode]
    if need:
        print(f"[bench] pip install {' '.join(need)} into {PYENV}", file=sys.stderr)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *need], check=True, timeout=900)
    if dnsmasq_src:
        dest = Dnsmasq292.EXE.parents[1]
        print(f"[bench] building dnsmasq from {dnsmasq_src} in {dest}", file=sys.stderr)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(dnsmasq_src, dest, symlinks=True, ignore=shutil.ignore_patterns(".git"))
        subprocess.run(["make", "-j2"], cwd=dest, check=True, capture_output=True, timeout=600)
        v = subprocess.run([str(Dnsmasq292.EXE), "--version"], capture_output=True, text=True, timeout=10).stdout
        if "version 2.92" not in v:
            print(f"[bench] warning: {Dnsmasq292.EXE} says {v.splitlines()[0] if v else '?'!r}, "
                  "and the bench calls it dnsmasq-2.92", file=sys.stderr)
    if not Atftpd.EXE.exists():
        print("[bench] apt-get download atftpd; dpkg -x into bench/build/atftpd", file=sys.stderr)
        with tempfile.TemporaryDirectory() as td:
            cp = subprocess.run(["apt-get", "download", "atftpd"], cwd=td, capture_output=True, text=True, timeout=300)
            debs = list(Path(td).glob("atftpd_*.deb"))
            if not debs:
                print(f"[bench] atftpd: download failed: {cp.stderr.strip()[-300:]}", file=sys.stderr)
                return
            subprocess.run(["dpkg", "-x", str(debs[0]), str(Atftpd.EXE.parents[2])], check=True, timeout=120)


# ----------------------------------------------------------------------------- cases
def cases(quick: bool, s3_python: bool) -> list[dict]:
    """Every measurement kind with its sizes; --quick shrinks counts, not the shapes."""
    C = []
    for mode, size in (("blast", 1468), ("blast-gso", 1468), ("blast", 65464), ("pingpong", 1468),
                       ("pingpong", 65464), ("pingpong-spin", 1468), ("pingpong-spin", 65464)):
        if True:
            cnt = {("blast", 1468): 300000, ("blast-gso", 1468): 300000, ("blast", 65464): 40000,
                   ("pingpong", 1468): 40000, ("pingpong", 65464): 20000,
                   ("pingpong-spin", 1468): 100000, ("pingpong-spin", 65464): 40000}[(mode, size)]
            if quick:
                cnt //= 4
            C.append(dict(id=f"CEIL {mode} {size}", group="CEIL", kind="ceiling", mode=mode, size=size,
                          count=cnt, max_seconds=10, title=f"{mode} {size}-byte datagrams"))
    n1 = 1000 if quick else 4000
    # S1 and W take a second or two per run and swing most (client and server share two vCPUs,
    # and each run lands either "fast" or "slow" for every server): 3 runs per repetition
    C.append(dict(id="S1", group="S1", kind="tftp", file="small.bin", concurrency=200, transfers=n1,
                  blksize=1468, windowsize=None, max_seconds=120, metric="transfers_per_s", per_rep=3,
                  variants=["null-shared"],  # the CPU floor of a lock-step storm (bench/peers.py)
                  title=f"S1 small-file storm: {n1} x 40 KiB, 200 concurrent, blksize 1468, no windowsize"))
    big = 16 if quick else 64
    for bs in (1468, 65464):
        for w in (1, 16):
            C.append(dict(id=f"S2 b{bs} w{w}", group="S2", kind="tftp", file="large.bin", concurrency=1,
                          transfers=1, blksize=bs, windowsize=w, max_seconds=120, metric="mb_per_s",
                          # the window atftpd and dnsmasq 2.92 grant, where bootstorm's default grants 1
                          variants=["bootstorm-wbm1m"] if (bs, w) == (65464, 16) else [],
                          title=f"S2 one {big} MiB transfer, blksize {bs}, windowsize {w}"))
    c3 = 40 if quick else 100
    for w in (1, 8):
        C.append(dict(id=f"S3 w{w}", group="S3", kind="tftp", file="big.bin", concurrency=c3, transfers=c3,
                      blksize=1468, windowsize=w, max_seconds=180, metric="mb_per_s", py=s3_python,
                      title=f"S3 big-file storm: {c3} x 16 MiB at once, blksize 1468, windowsize {w}"))
    n4 = 5000 if quick else 20000
    C.append(dict(id="S4", group="S4", kind="dhcp", count=n4, macs=1000, inflight=64, max_seconds=60,
                  title=f"S4 ProxyDHCP: {n4} DISCOVERs from 1000 MACs, then {n4} :4011 REQUESTs, 64 in flight"))
    C.append(dict(id="MEM", group="MEM", kind="tftp", file="mid.bin", concurrency=2000, transfers=2000,
                  blksize=1468, windowsize=None, max_seconds=120, metric="transfers_per_s", rss=True,
                  title="MEM 2000 concurrent transfers of 256 KiB (blksize 1468) in one process"))
    C.append(dict(id="W", group="W", kind="tftp", file="small.bin", concurrency=200, transfers=n1,
                  blksize=1468, windowsize=None, max_seconds=120, metric="transfers_per_s", per_rep=3,
                  title=f"W bootstorm --workers 1 vs 2 on the S1 load ({n1} x 40 KiB, 200 concurrent)"
                        + (", all workers on the server CPU" if pin.enabled else "")))
    return C


FILES = {"small.bin": 40 * 1024, "mid.bin": 256 * 1024, "big.bin": 16 * MiB}


def servers_for(case: dict, servers: list[str]) -> list[str]:
    g = case["group"]
    if g == "S4":
        return [s for s in ("dnsmasq", "dnsmasq-2.92", "bootstorm") if s in servers]
    if g == "MEM":
        return ["bootstorm"] if "bootstorm" in servers else []
    if g == "W":
        return ["bootstorm-w1", "bootstorm-w2"] if "bootstorm" in servers else []
    if g == "CEIL":
        return ["-"]
    if g == "S3" and not case.get("py"):
        return [s for s in servers if s not in PY_PEERS]
    if "bootstorm" in servers:
        return servers + case.get("variants", [])  # bench/tftp.py VARIANTS
    return servers


# ----------------------------------------------------------------------------- running
def run_case(case, server, root, files, lan) -> dict:
    k = case["kind"]
    if k == "ceiling":
        return tftp.ceiling(case["mode"], case["size"], case["count"], case["max_seconds"])
    if k == "dhcp":
        return dhcp.measure(lan, server, case)
    return tftp.measure(server, root, files, case, rss=case.get("rss", False))


def one_line(case, r) -> str:
    if "error" in r:
        return "ERROR " + r["error"][:200]
    k = case["kind"]
    if k == "ceiling":
        return f"{r['pps']:.0f} datagrams/s {r['mb_per_s']:.0f} MB/s"
    if k == "dhcp":
        return " ".join(f"{ph}: {r[ph]['replies_per_s']:.0f}/s lost {r[ph]['lost']} "
                        f"{r[ph]['server_cpu_us_per_reply'] or 0:.0f} us/reply" for ph in ("discover", "request4011"))
    s = (f"{r['transfers_per_s']:.1f} tr/s {r['mb_per_s']:.1f} MB/s p99 {r['latency_ms']['p99']:.0f} ms "
         f"failed {r['transfers_failed']} cpu {r['server_cpu_s']:.2f}s "
         f"({r['cpu_s_per_gb'] or 0:.2f} s/GB) win {r['negotiated'].get('windowsize_max')}")
    if "rss_peak_kb" in r:
        s += f" rss peak {r['rss_peak_kb'] / 1024:.1f} MiB"
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller counts (~3 minutes)")
    ap.add_argument("--scenarios", default=",".join(GROUPS), help="comma list of " + ",".join(GROUPS))
    ap.add_argument("--servers", default=",".join(DEFAULT_PEERS),
                    help="comma list of " + ",".join(PEERS) + " (null = bench/nullserver.c, loadgen's own ceiling)")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    ap.add_argument("--s3-python", action="store_true",
                    help="also run the Python servers in S3 (slow: minutes per repetition)")
    ap.add_argument("--no-pin", action="store_true",
                    help="let the scheduler place servers and load generators (bench/pin.py)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--img", help="where the plots go (default: docs/img, or OUT when --out is given)")
    ap.add_argument("--setup", action="store_true", help="only make the venv and unpack atftpd")
    ap.add_argument("--dnsmasq-src", metavar="DIR",
                    help="with --setup: build the dnsmasq-2.92 peer from this source tree")
    ap.add_argument("--replot", action="store_true", help="only redo table and plots from OUT/bench.json")
    a = ap.parse_args(argv)
    out = Path(a.out)
    img = Path(a.img) if a.img else IMG if out == RESULTS else out  # a trial run leaves docs alone

    if a.setup:
        setup(dnsmasq_src=a.dnsmasq_src)
        return 0
    if a.no_pin:
        pin.enabled = False
    if a.replot:
        result = json.loads((out / "bench.json").read_text())
        write_reports(result, out, img)
        return 0
    if os.geteuid() != 0:
        print("[bench] warning: not root: dnsmasq needs port 69, S4 needs namespaces, CPU needs cgroups",
              file=sys.stderr)
    setup()
    tftp.build_tools()
    reps = max(1, min(a.reps, 20))
    groups = [g.strip().upper() for g in a.scenarios.split(",") if g.strip()]
    for g in groups:
        if g not in GROUPS:
            ap.error(f"unknown scenario group {g}")
    servers, skipped = [], {}
    for n in [s.strip() for s in a.servers.split(",") if s.strip()]:
        if n not in PEERS:
            ap.error(f"unknown server {n}")
        ok, why = PEERS[n].available()
        print(f"[bench] {n}: {why if ok else 'SKIPPED: ' + why}", file=sys.stderr)
        (servers.append(n) if ok else skipped.__setitem__(n, why))
    versions = {n: PEERS[n].available()[1] for n in servers}
    todo = [c for c in cases(a.quick, a.s3_python) if c["group"] in groups]
    if "S4" in groups:
        ok, why = dhcp.available()
        if not ok:
            skipped["S4"] = why
            todo = [c for c in todo if c["group"] != "S4"]

    result = dict(
        when=time.strftime("%Y-%m-%d %H:%M:%S"), quick=a.quick, reps=reps,
        command="python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        host=host_info(), versions=versions, skipped=skipped, pinning=pin.describe(),
        cases=[{k: v for k, v in c.items()} for c in todo], runs=[],
    )
    t_start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="bootstorm-bench-"))
    os.chmod(tmp, 0o755)  # atftpd and tftpd-hpa read as nobody
    lan = None
    try:
        root = tmp / "root"
        root.mkdir()
        files = {n: tftp.make_file(root, n, s) for n, s in FILES.items()}
        files["large.bin"] = tftp.make_file(root, "large.bin", (16 if a.quick else 64) * MiB)
        if any(c["kind"] == "dhcp" for c in todo):
            lan = dhcp.lan().__enter__()
        for rep in range(reps):
            for case in todo:
                for _ in range(case.get("per_rep", 1)):
                    for server in servers_for(case, servers):
                        t = time.monotonic()
                        try:
                            r = run_case(case, server, root, files, lan)
                        except Exception as e:  # noqa: BLE001 - record and go on
                            r = dict(error=f"{type(e).__name__}: {e}")
                        r.update(rep=rep, case=case["id"], server=server)
                        result["runs"].append(r)
                        print(f"[bench] rep {rep + 1}/{reps} {case['id']:<22} {server:<13} {one_line(case, r)} "
                              f"({time.monotonic() - t:.1f}s)", file=sys.stderr, flush=True)
    finally:
        if lan is not None:
            lan.close()
        shutil.rmtree(tmp, ignore_errors=True)
    result["wall_s"] = round(time.monotonic() - t_start, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=1) + "\n")
    write_reports(result, out, img)
    print(f"[bench] done in {result['wall_s']:.0f}s: {out / 'bench.md'}", file=sys.stderr)
    return 0


def host_info() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    git = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                         capture_output=True, text=True, timeout=30).stdout.strip()
    return dict(machine=platform.machine(), cpus=os.cpu_count(), cpu=cpu, mem_mib=mem,
                kernel=platform.release(), python=platform.python_version(), bootstorm_git=git)


def write_reports(result: dict, out: Path, img: Path) -> None:
    from bench import report

    md = report.markdown(result)
    (out / "bench.md").write_text(md)
    print(md)
    py = PYENV / "bin" / "python"
    if py.exists():
        img.mkdir(parents=True, exist_ok=True)
        p = subprocess.run([str(py), str(HERE / "plots.py"), str(out / "bench.json"), str(img)],
                           capture_output=True, text=True, timeout=300, cwd=str(REPO))
        if p.returncode:
            print(f"[bench] plots failed: {p.stderr[-800:]}", file=sys.stderr)
        else:
            print(p.stdout.strip(), file=sys.stderr)
    else:
        print("[bench] no bench venv: plots skipped (python -m bench --setup)", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
