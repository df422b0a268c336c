"""Alternating A/B runs of one TFTP load against two bootstorm source trees.

    python -m bench.ab TREE_A TREE_B --root DIR [--rounds 8] [--serve="--workers 2"] -- LOADGEN ARGS

Each tree (a checkout with its extensions built in place: `python setup.py build_ext
--inplace`) is served by its own `bootstorm serve` on 127.0.0.1, pinned as `python -m bench`
pins (bench/pin.py); the load generator runs against A and B in turn, the order swapped every
round, so a machine that drifts over the run drifts for both. Prints, per tree, the medians of
server CPU µs per transfer, server CPU s per GB and the load generator's transfers/s and MB/s,
with every round's value. The loadgen arguments are its own (`--file`, `--size`, ...), minus
`--server` and `--port`. Two separate bench runs are no substitute: cells swing 10-30 %.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench import pin
from bench.peers import LOOPBACK, free_udp_port, proc_tree_seconds
from bench.tftp import BUILD, build_tools


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trees", nargs=2, metavar="TREE", help="source trees (their src/ is put first on PYTHONPATH)")
    ap.add_argument("--root", required=True, help="the TFTP root both servers serve")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--serve", default="", help="extra `bootstorm serve` arguments, for both")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    a, largs = ap.parse_args(argv[:cut]), argv[cut + 1:]  # after --: the load generator's
    build_tools()
    servers = []
    try:
        for tree in a.trees:
            port = free_udp_port()
            env = dict(os.environ, PYTHONPATH=os.path.join(os.path.abspath(tree), "src"))
            proc = subprocess.Popen(
                [sys.executable, "-m", "bootstorm", "serve", "--tftp-root", a.root, "--listen", LOOPBACK,
                 "--tftp-port", str(port), *a.serve.split()],
                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=pin.server())
            servers.append((tree, port, proc))
        time.sleep(2)  # start-up done before the first CPU reading
        rows: dict[str, list[tuple[float, float, float, float]]] = {t: [] for t in a.trees}
        for r in range(max(1, a.rounds)):
            for tree, port, proc in servers if r % 2 == 0 else servers[::-1]:
                before = proc_tree_seconds(proc.pid)
                out = subprocess.run([str(BUILD / "loadgen"), "--server", LOOPBACK, "--port", str(port), *largs],
                                     capture_output=True, text=True, timeout=600, preexec_fn=pin.load())
                cpu = proc_tree_seconds(proc.pid) - before
                res = json.loads(out.stdout)
                if res["transfers_failed"]:
                    raise SystemExit(f"{tree}: {res['transfers_failed']} transfers failed: {res.get('errors')}")
                rows[tree].append((cpu * 1e6 / res["transfers_ok"], cpu / (res["bytes"] / 1e9),
                                   res["transfers_per_s"], res["mb_per_s"]))
    finally:
        for _, _, proc in servers:
            proc.terminate()
            proc.wait(10)
    for tree in a.trees:
        cols = list(zip(*rows[tree]))
        print(f"{tree}:")
        for name, values in zip(("server CPU us/transfer", "server CPU s/GB", "transfers/s", "MB/s"), cols):
            print(f"  {name:<24} median {statistics.median(values):10.2f}   "
                  + " ".join(f"{v:.4g}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
