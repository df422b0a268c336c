"""Plots of a benchmark run, one PNG per scenario group, into docs/img.

    bench/build/pyenv/bin/python bench/plots.py bench/results/bench.json docs/img

Runs only in the bench venv (matplotlib): bootstorm never imports it.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from bench.report import ceilings, med, order, summarize  # noqa: E402

COLORS = {"bootstorm": "#d62728", "bootstorm-wbm1m": "#ff7f0e", "bootstorm-w1": "#d62728", "bootstorm-w2": "#ff9896",
          "dnsmasq": "#1f77b4", "dnsmasq-2.92": "#17becf", "tftpd-hpa": "#2ca02c", "atftpd": "#9467bd", "tftpy": "#8c564b",
          "py3tftp": "#e377c2", "fbtftp": "#7f7f7f", "null": "#bcbd22",
          "null-shared": "#dbdb8d"}


def bars(ax, cids, summ, metric, ylabel, log=False, scale=1.0):
    servers = order({s for c in cids for s in summ.get(c, {})} - {"-"})
    n = len(servers)
    w = 0.8 / max(n, 1)
    for i, s in enumerate(servers):
        xs, ys, lo, hi = [], [], [], []
        for j, c in enumerate(cids):
            v = (summ.get(c, {}).get(s) or {}).get(metric)
            if not v:
                continue
            xs.append(j - 0.4 + w * (i + 0.5))
            ys.append(v[0] * scale)
            lo.append((v[0] - v[1]) * scale)
            hi.append((v[2] - v[0]) * scale)
        if xs:
            ax.bar(xs, ys, w, yerr=[lo, hi], capsize=2, label=s, color=COLORS.get(s, None))
    ax.set_xticks(range(len(cids)))
    ax.set_xticklabels(cids, fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)


def main():
    result = json.loads(Path(sys.argv[1]).read_text())
    img = Path(sys.argv[2])
    img.mkdir(parents=True, exist_ok=True)
    summ = summarize(result)
    ceil = ceilings(summ)
    by_group = {}
    for c in result["cases"]:
        if c["id"] in summ:
            by_group.setdefault(c["group"], []).append(c)
    sub = f"{result['when']}, {result['host']['cpus']} CPUs, medians of {result['reps']} (bars: min–max)"
    written = []
    for g, cs in by_group.items():
        cids = [c["id"] for c in cs]
        if g in ("S1", "S2", "S3"):
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.5))
            metric = "transfers_per_s" if g == "S1" else "mb_per_s"
            bars(a1, cids, summ, metric, "transfers/s" if g == "S1" else "MB/s (verified payload)", log=g != "S1")
            if g != "S1":
                for cid, lab, ls in (("CEIL blast 1468", "blast 1468 B", "--"), ("CEIL pingpong 1468", "ping-pong 1468 B", ":")):
                    v = med(ceil.get(cid), "mb_per_s")
                    if v:
                        a1.axhline(v, color="k", ls=ls, lw=1, label=f"{lab} ceiling")
            bars(a2, cids, summ, "cpu_s_per_gb", "server CPU s per GB (lower is better)", log=True)
            a1.legend(fontsize=7, ncol=2)
            fig.suptitle(f"{cs[0]['title'].split(':')[0].split(', blksize')[0]} — {sub}", fontsize=9)
        elif g == "S4":
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
            for ax, m, lab in ((a1, "replies_per_s", "replies/s"), (a2, "us_per_reply", "server CPU µs per reply")):
                servers = order(summ["S4"])
                for i, s in enumerate(servers):
                    for j, ph in enumerate(("discover", "request4011")):
                        v = summ["S4"][s].get(f"{ph}.{m}")
                        if v:
                            ax.bar(j - 0.2 + 0.4 * i, v[0], 0.4, yerr=[[v[0] - v[1]], [v[2] - v[0]]], capsize=3,
                                   color=COLORS.get(s), label=s if j == 0 else None)
                ax.set_xticks([0, 1])
                ax.set_xticklabels(["DISCOVER :67", "REQUEST :4011"])
                ax.set_ylabel(lab)
                ax.grid(axis="y", alpha=0.3)
            a1.legend(fontsize=8)
            fig.suptitle(f"S4 ProxyDHCP — {sub}", fontsize=9)
        elif g == "CEIL":
            fig, ax = plt.subplots(figsize=(7, 4))
            labels = [c.replace("CEIL ", "") for c in cids]
            vals = [ceil[c]["mb_per_s"] for c in cids]
            ax.bar(range(len(cids)), [v[0] for v in vals],
                   yerr=[[v[0] - v[1] for v in vals], [v[2] - v[0] for v in vals]], capsize=3, color="#555")
            ax.set_xticks(range(len(cids)))
            ax.set_xticklabels(labels, fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel("MB/s")
            ax.grid(axis="y", alpha=0.3)
            fig.suptitle(f"Loopback ceilings — {sub}", fontsize=9)
        elif g == "MEM":
            fig, ax = plt.subplots(figsize=(7, 4))
            for r in result["runs"]:
                if r["case"] == "MEM" and r.get("rss_samples"):
                    t = [s[0] for s in r["rss_samples"]]
                    kb = [s[1] / 1024 for s in r["rss_samples"]]
                    ax.plot(t, kb, label=f"{r['server']} rep {r['rep'] + 1}")
            ax.axhline(100e6 / 2**20, color="k", ls="--", lw=1, label="100 MB goal")
            ax.set_xlabel("seconds into the run")
            ax.set_ylabel("RSS of all server processes, MiB")
            ax.set_ylim(bottom=0)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
            fig.suptitle(f"2000 concurrent transfers in one bootstorm process — {sub}", fontsize=9)
        elif g == "W":
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 4))
            bars(a1, cids, summ, "transfers_per_s", "transfers/s")
            bars(a2, cids, summ, "transfers_per_cpu_s", "transfers per server CPU second")
            a1.legend(fontsize=8)
            fig.suptitle(f"bootstorm --workers 1 vs 2 — {sub}", fontsize=9)
        else:
            continue
        fig.tight_layout()
        p = img / f"bench-{g.lower()}.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        written.append(str(p))
    print("[bench] plots: " + ", ".join(written))


if __name__ == "__main__":
    main()
