"""Medians, min-max, ratios and the issue's goals, from bench/results/bench.json -> Markdown.

Also imported by bench/plots.py (in the bench venv), so standard library only.
"""
from __future__ import annotations

import statistics

C_PEERS = ["dnsmasq", "dnsmasq-2.92", "tftpd-hpa", "atftpd"]
PEER_ORDER = ["dnsmasq", "dnsmasq-2.92", "tftpd-hpa", "atftpd", "tftpy", "py3tftp", "fbtftp", "null",
              "null-shared"]


def _get(r: dict, path: str):
    for k in path.split("."):
        if not isinstance(r, dict) or k not in r:
            return None
        r = r[k]
    return r


TFTP_METRICS = {
    "transfers_per_s": "transfers_per_s", "mb_per_s": "mb_per_s", "p50_ms": "latency_ms.p50",
    "p99_ms": "latency_ms.p99", "cpu_s_per_gb": "cpu_s_per_gb", "server_cpu_s": "server_cpu_s",
    "client_cpu_s": "client_cpu_s", "transfers_per_cpu_s": "transfers_per_cpu_s",
    "retransmits": "retransmits", "rss_peak_kb": "rss_peak_kb", "rss_idle_kb": "rss_idle_kb",
    "seconds": "seconds", "server_user_s": "server_user_s", "server_sys_s": "server_sys_s",
}
DHCP_METRICS = {f"{ph}.{m}": f"{ph}.{p}" for ph in ("discover", "request4011")
                for m, p in (("replies_per_s", "replies_per_s"), ("p50_ms", "latency_ms.p50"),
                             ("p99_ms", "latency_ms.p99"), ("us_per_reply", "server_cpu_us_per_reply"),
                             ("server_cpu_s", "server_cpu_s"), ("client_cpu_s", "client_cpu_s"),
                             ("server_user_s", "server_user_s"), ("server_sys_s", "server_sys_s"))}
CEIL_METRICS = {"pps": "pps", "mb_per_s": "mb_per_s", "cpu_s": "cpu_s"}


def summarize(result: dict) -> dict:
    """{case_id: {server: {metric: (median, min, max)} + failed/lost/win/n/errors}}"""
    kinds = {c["id"]: c["kind"] for c in result["cases"]}
    out: dict = {}
    for r in result["runs"]:
        out.setdefault(r["case"], {}).setdefault(r["server"], []).append(r)
    summ: dict = {}
    for cid, by_server in out.items():
        kind = kinds.get(cid, "tftp")
        metrics = {"tftp": TFTP_METRICS, "dhcp": DHCP_METRICS, "ceiling": CEIL_METRICS}[kind]
        for server, runs in by_server.items():
            good = [r for r in runs if "error" not in r]
            d: dict = {"n": len(good), "errors": [r["error"] for r in runs if "error" in r]}
            for m, path in metrics.items():
                vals = [v for v in (_get(r, path) for r in good) if v is not None]
                d[m] = (statistics.median(vals), min(vals), max(vals)) if vals else None
            if kind == "tftp" and good:
                d["failed"] = max(r["transfers_failed"] for r in good)
                d["win"] = max(_get(r, "negotiated.windowsize_max") or 0 for r in good)
                d["blk"] = max(_get(r, "negotiated.blksize_max") or 0 for r in good)
            if kind == "dhcp" and good:
                for ph in ("discover", "request4011"):
                    d[f"{ph}.lost"] = max(r[ph]["lost"] for r in good)
                    d[f"{ph}.count"] = good[0][ph]["count"]
            summ.setdefault(cid, {})[server] = d
    return summ


def med(d, m):
    v = d.get(m) if d else None
    return v[0] if v else None


def fmt(x, nd=1):
    if x is None:
        return "-"
    if isinstance(x, int):
        return str(x)
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{nd}f}"


def rng(v, nd=1):
    if not v:
        return "-"
    return f"{fmt(v[0], nd)} ({fmt(v[1], nd)}–{fmt(v[2], nd)})"


def user_pct(d, prefix=""):
    u, k = med(d, prefix + "server_user_s"), med(d, prefix + "server_sys_s")
    return "-" if u is None or k is None or u + k <= 0 else f"{100 * u / (u + k):.0f} %"


def ratio(a, b):
    if a is None or not b:
        return None
    return a / b


def rfmt(x):
    return "-" if x is None else f"{x:.2f}x"


def order(servers):
    key = {s: i for i, s in enumerate(["bootstorm", "bootstorm-wbm1m", "bootstorm-w1", "bootstorm-w2"] + PEER_ORDER)}
    return sorted(servers, key=lambda s: key.get(s, 99))


def ceilings(summ) -> dict:
    return {cid: d["-"] for cid, d in summ.items() if cid.startswith("CEIL") and "-" in d}


def goals(result, summ) -> list[tuple[str, str, str]]:
    """(goal, measured, verdict) for each goal of issue 5 that this run has data for."""
    G = []

    def row(goal, measured, ok):
        G.append((goal, measured, "met" if ok else ("no data" if ok is None else "**not met**")))

    def get(cid, srv, m):
        return med(summ.get(cid, {}).get(srv), m)

    b = "bootstorm"
    if "S1" in summ:
        t = ratio(get("S1", b, "transfers_per_s"), get("S1", "dnsmasq", "transfers_per_s"))
        c = ratio(get("S1", b, "cpu_s_per_gb"), get("S1", "dnsmasq", "cpu_s_per_gb"))
        p, pd = get("S1", b, "p99_ms"), get("S1", "dnsmasq", "p99_ms")
        row("S1 transfers/s >= 1.5x dnsmasq", rfmt(t), None if t is None else t >= 1.5)
        row("S1 server CPU s/GB <= 0.6x dnsmasq", rfmt(c), None if c is None else c <= 0.6)
        row("S1 p99 latency <= dnsmasq", f"{fmt(p)} ms vs {fmt(pd)} ms",
            None if p is None or pd is None else p <= pd)
        for srv, what in (("null", "bench/nullserver.c, a C server with no checks, timers or logging"),
                          ("null-shared", "the same with `--shared`: one socket, a batch per system call")):
            tn = ratio(get("S1", srv, "transfers_per_s"), get("S1", "dnsmasq", "transfers_per_s"))
            cn = ratio(get("S1", srv, "cpu_s_per_gb"), get("S1", "dnsmasq", "cpu_s_per_gb"))
            if tn is not None:
                G.append((f"({what}, in the same run)", f"{rfmt(tn)} transfers/s, {rfmt(cn)} CPU s/GB",
                          "for information"))
    k = "S2 b1468 w16"
    if k in summ:
        t = ratio(get(k, b, "mb_per_s"), get(k, "atftpd", "mb_per_s"))
        c = ratio(get(k, b, "cpu_s_per_gb"), get(k, "atftpd", "cpu_s_per_gb"))
        row("S2 blksize 1468 windowsize 16 >= 1.5x atftpd", rfmt(t), None if t is None else t >= 1.5)
        row("S2 blksize 1468 windowsize 16 CPU s/GB <= 0.5x atftpd", rfmt(c), None if c is None else c <= 0.5)
    for k, need, label in (("S2 b1468 w1", 1.2, "S2 windowsize 1 (blksize 1468) >= 1.2x the best C peer"),
                           ("S2 b65464 w1", 1.0, "S2 blksize 65464 windowsize 1 >= the best C peer"),
                           ("S2 b65464 w16", 1.0, "S2 blksize 65464 windowsize 16 >= the best C peer")):
        if k in summ:
            best = max(((get(k, p, "mb_per_s") or 0), p) for p in C_PEERS)
            t = ratio(get(k, b, "mb_per_s"), best[0])
            row(label, f"{rfmt(t)} (best: {best[1]})", None if t is None else t >= need)
            t = ratio(get(k, "bootstorm-wbm1m", "mb_per_s"), best[0])
            if t is not None:
                G.append(("(the same with `--window-bytes-max 1048576`, the window atftpd and dnsmasq 2.92 grant)",
                          f"{rfmt(t)} (best: {best[1]})", "for information"))
    if "S3 w8" in summ:
        t = ratio(get("S3 w8", b, "mb_per_s"), get("S3 w8", "atftpd", "mb_per_s"))
        row("S3 windowsize 8 >= 1.5x atftpd", rfmt(t), None if t is None else t >= 1.5)
        blast = med(summ.get("CEIL blast 1468", {}).get("-"), "mb_per_s")
        f = ratio(get("S3 w8", b, "mb_per_s"), blast)
        row("S3 windowsize 8 >= 60 % of the 1468-byte blast (sendmmsg)", "-" if f is None else f"{f * 100:.0f} %",
            None if f is None else f >= 0.6)
        gso = med(summ.get("CEIL blast-gso 1468", {}).get("-"), "mb_per_s")
        f = ratio(get("S3 w8", b, "mb_per_s"), gso)
        G.append(("(the same against the UDP GSO blast, a stricter ceiling)",
                  "-" if f is None else f"{f * 100:.0f} %", "for information"))
    if "S3 w1" in summ:
        t = ratio(get("S3 w1", b, "mb_per_s"), get("S3 w1", "dnsmasq", "mb_per_s"))
        row("S3 windowsize 1 >= 1.2x dnsmasq", rfmt(t), None if t is None else t >= 1.2)
    if "S4" in summ:
        for ph in ("discover", "request4011"):
            t = ratio(get("S4", b, f"{ph}.replies_per_s"), get("S4", "dnsmasq", f"{ph}.replies_per_s"))
            lost = (summ["S4"].get(b) or {}).get(f"{ph}.lost")
            row(f"S4 {ph} replies/s >= 1.5x dnsmasq at zero loss", f"{rfmt(t)}, lost {lost}",
                None if t is None else (t >= 1.5 and lost == 0))
            c = ratio(get("S4", b, f"{ph}.us_per_reply"), get("S4", "dnsmasq", f"{ph}.us_per_reply"))
            row(f"S4 {ph} server CPU per reply <= 0.6x dnsmasq", rfmt(c), None if c is None else c <= 0.6)
    if "MEM" in summ and b in summ["MEM"]:
        d = summ["MEM"][b]
        rss = med(d, "rss_peak_kb")
        row("2000 concurrent transfers, RSS <= 100 MB",
            "-" if rss is None else f"{rss * 1024 / 1e6:.1f} MB peak, {d.get('failed')} failed",
            None if rss is None else rss * 1024 <= 100e6 and d.get("failed") == 0)
    if "W" in summ:
        e1, e2 = get("W", "bootstorm-w1", "transfers_per_cpu_s"), get("W", "bootstorm-w2", "transfers_per_cpu_s")
        f = ratio(e2, e1)
        row("--workers 2 per-core efficiency flat vs 1 (>= 0.9x)",
            f"{fmt(e1)} vs {fmt(e2)} transfers per CPU s ({rfmt(f)})", None if f is None else f >= 0.9)
    return G


def markdown(result: dict) -> str:
    summ = summarize(result)
    h = result["host"]
    L = ["# Boot-storm benchmark results", ""]
    L.append(f"{result['when']}; `{result['command']}`; {'quick sizes; ' if result.get('quick') else ''}"
             f"medians of {result['reps']} repetitions (min–max in parentheses; S1 and W run 3 times "
             f"in each repetition); "
             f"{h['cpus']} CPUs ({h['cpu']}), {h['mem_mib']} MiB, kernel {h['kernel']}, "
             f"Python {h['python']}; bootstorm at `{h.get('bootstorm_git', '?')}`; "
             f"CPU placement: {result.get('pinning', 'unpinned')}; wall time {result.get('wall_s', '?')} s.")
    L.append("")
    L.append("Servers: " + "; ".join(f"{k}: {v}" for k, v in result.get("versions", {}).items()) + ".")
    for k, v in result.get("skipped", {}).items():
        L.append(f"\n- {k} skipped: {v}")
    L.append("")
    titles = {c["id"]: c["title"] for c in result["cases"]}
    kinds = {c["id"]: c["kind"] for c in result["cases"]}
    ceil = ceilings(summ)

    # ceilings
    if ceil:
        L += ["## Loopback ceilings (same run)", "",
              "| ceiling | datagrams/s | MB/s | CPU s (both ends) |", "|---|--:|--:|--:|"]
        for cid, d in ceil.items():
            L.append(f"| {titles.get(cid, cid)} | {rng(d['pps'])} | {rng(d['mb_per_s'])} | {rng(d['cpu_s'], 2)} |")
        L.append("")
    blast = med(ceil.get("CEIL blast 1468"), "mb_per_s")
    blast64 = med(ceil.get("CEIL blast 65464"), "mb_per_s")

    # TFTP tables
    groups_done = []
    for c in result["cases"]:
        cid = c["id"]
        if kinds[cid] != "tftp" or cid not in summ:
            continue
        if c["group"] not in groups_done:
            groups_done.append(c["group"])
        rows = summ[cid]
        base = rows.get("dnsmasq")
        key = c["metric"]
        L += [f"## {titles[cid]}", "",
              "| server | transfers/s | MB/s | p50 ms | p99 ms | failed | retrans | blk/win | "
              "server CPU s/GB | user share | transfers per CPU s | client CPU s | vs dnsmasq: speed | vs dnsmasq: CPU/GB | % of blast |"
              + (" RSS peak MiB |" if c.get("rss") else ""),
              "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|" + ("--:|" if c.get("rss") else "")]
        for server in order(rows):
            d = rows[server]
            if not d["n"]:
                L.append(f"| {server} | error: {(d['errors'] or ['?'])[0][:150].replace('|', '/')} |" + " |" * 13)
                continue
            lim = blast64 if c["blksize"] > 1468 else blast
            pct = ratio(med(d, "mb_per_s"), lim)
            cells = [server, rng(d["transfers_per_s"]), rng(d["mb_per_s"]), fmt(med(d, "p50_ms")),
                     fmt(med(d, "p99_ms")), str(d["failed"]), fmt(med(d, "retransmits")),
                     f"{d['blk']}/{d['win']}", rng(d["cpu_s_per_gb"], 2), user_pct(d), fmt(med(d, "transfers_per_cpu_s")),
                     fmt(med(d, "client_cpu_s"), 2),
                     rfmt(ratio(med(d, key), med(base, key))) if base else "-",
                     rfmt(ratio(med(d, "cpu_s_per_gb"), med(base, "cpu_s_per_gb"))) if base else "-",
                     "-" if pct is None else f"{pct * 100:.0f} %"]
            if c.get("rss"):
                rp = d.get("rss_peak_kb")
                cells.append("-" if not rp else f"{rp[0] / 1024:.1f} ({rp[1] / 1024:.1f}–{rp[2] / 1024:.1f}), "
                             f"idle {med(d, 'rss_idle_kb') / 1024:.1f}")
            L.append("| " + " | ".join(cells) + " |")
        L.append("")

    # DHCP
    if "S4" in summ:
        rows = summ["S4"]
        L += [f"## {titles['S4']}", "",
              "| server | phase | replies/s | lost (worst) | p50 ms | p99 ms | server CPU µs/reply | user share | client CPU s | vs dnsmasq: replies/s | vs dnsmasq: CPU/reply |",
              "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        base = rows.get("dnsmasq")
        for server in order(rows):
            d = rows[server]
            if not d["n"]:
                L.append(f"| {server} | error: {(d['errors'] or ['?'])[0][:150].replace('|', '/')} |" + " |" * 8)
                continue
            for ph in ("discover", "request4011"):
                L.append("| " + " | ".join([
                    server, ph, rng(d[f"{ph}.replies_per_s"]), f"{d[f'{ph}.lost']} of {d[f'{ph}.count']}",
                    fmt(med(d, f"{ph}.p50_ms"), 2), fmt(med(d, f"{ph}.p99_ms"), 2), rng(d[f"{ph}.us_per_reply"]), user_pct(d, f"{ph}."),
                    fmt(med(d, f"{ph}.client_cpu_s"), 2),
                    rfmt(ratio(med(d, f"{ph}.replies_per_s"), med(base, f"{ph}.replies_per_s"))) if base else "-",
                    rfmt(ratio(med(d, f"{ph}.us_per_reply"), med(base, f"{ph}.us_per_reply"))) if base else "-",
                ]) + " |")
        L.append("")

    # bootstorm vs each peer
    peers = [p for p in PEER_ORDER if any(p in summ.get(c["id"], {}) for c in result["cases"])]
    vs_rows = []
    for c in result["cases"]:
        cid = c["id"]
        if cid not in summ or "bootstorm" not in summ[cid] or c["group"] in ("MEM", "W", "CEIL"):
            continue
        b = summ[cid]["bootstorm"]
        cells = [cid]
        for p in peers:
            d = summ[cid].get(p)
            if kinds[cid] == "dhcp":
                if not p.startswith("dnsmasq") or not d:
                    cells.append("-")
                    continue
                cells.append(" / ".join(
                    f"{rfmt(ratio(med(b, f'{ph}.replies_per_s'), med(d, f'{ph}.replies_per_s')))} "
                    f"{rfmt(ratio(med(b, f'{ph}.us_per_reply'), med(d, f'{ph}.us_per_reply')))}"
                    for ph in ("discover", "request4011")))
                continue
            if not d or not d["n"]:
                cells.append("-")
                continue
            cells.append(f"{rfmt(ratio(med(b, c['metric']), med(d, c['metric'])))} / "
                         f"{rfmt(ratio(med(b, 'cpu_s_per_gb'), med(d, 'cpu_s_per_gb')))}")
        vs_rows.append("| " + " | ".join(cells) + " |")
    if vs_rows:
        L += ["## bootstorm against each peer", "",
              "Each cell: bootstorm's speed ÷ the peer's (transfers/s in S1, MB/s in S2/S3; higher is "
              "better for bootstorm) / bootstorm's server CPU s/GB ÷ the peer's (lower is better). "
              "S4: replies/s ratio and CPU-per-reply ratio, DISCOVER phase / :4011 phase.", "",
              "| case | " + " | ".join(peers) + " |", "|---|" + "--:|" * len(peers)] + vs_rows + [""]

    G = goals(result, summ)
    if G:
        L += ["## The goals of issue 5 (ratios from this run)", "", "| goal | measured | verdict |", "|---|---|---|"]
        L += [f"| {g} | {m} | {v} |" for g, m, v in G]
        L.append("")
    L += ["Notes: MB = 10^6 bytes of verified payload. `blk/win` = largest blksize/windowsize the "
          "server granted (win 1 and no windowsize in the OACK look the same). Latency = RRQ sent to last "
          "ACK sent, per transfer. `user share` = user ÷ (user + system) of the server's CPU (the rest is "
          "the kernel: system calls, UDP, loopback). Server CPU = user+system of the server and every process/thread it "
          "started (its own cgroup, `cpu.stat`), between just before and just after the load; client "
          "CPU = the load generator's. `% of blast` = MB/s ÷ the blast ceiling at the same datagram size. "
          "`failed` and `lost` are the worst repetition. Timings on this shared 2-core VM swing between "
          "runs: compare ratios within this run, and CPU s/GB.", ""]
    return "\n".join(L)
