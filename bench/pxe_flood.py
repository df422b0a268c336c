"""DISCOVER flood, dnsmasq and bootstorm side by side (a measurement, never a test gate).

    sudo python3 bench/pxe_flood.py [--count 2000] [--reps 3] [--rate 0]

For each server in turn, on a fresh two-namespace segment (tests/pxe harness): the same
BIOS menu config (dnsmasq conf / equivalent TOML), then N DHCPDISCOVERs (arch 0,
PXEClient) from N distinct MACs as raw broadcast frames, as fast as the sender goes
(or at ``--rate`` per second), bounded to 30 s.  A sniffer in the client namespace counts
the OFFERs by xid.  Printed per run: offered/s, replies, loss, replies/s (first send to
last reply), and the server's CPU seconds (utime+stime from /proc).  Both servers log
every reply: dnsmasq with ``log-dhcp`` (the harness's conf, several lines per
exchange) or, with ``--quiet-dnsmasq``, without; bootstorm one line per reply.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.peers import proc_tree_seconds  # noqa: E402
from tests.pxe import netns  # noqa: E402
from tests.pxe.flood import run_flood  # noqa: E402
from tests.pxe.servers import dnsmasq_argv, start, start_bootstorm, start_dnsmasq  # noqa: E402

CONF = """dhcp-range=10.213.0.0,proxy
pxe-service=x86PC,"Network Boot",pxelinux
pxe-service=x86PC,"Boot from local disk"
pxe-service=x86-64_EFI,"UEFI Boot",ipxe.efi
pxe-prompt="Press F8 for boot menu",5
"""
TOML = """[dhcp]
interfaces = ["eth0"]
ranges = [{ network = "10.213.0.0" }]
prompts = [{ text = "Press F8 for boot menu", timeout = 5 }]
services = [
  { arch = "x86PC", menu = "Network Boot", file = "pxelinux" },
  { arch = "x86PC", menu = "Boot from local disk" },
  { arch = 7, menu = "UEFI Boot", file = "ipxe.efi" },
]
"""


def one(server: str, count: int, rate: float, quiet: bool) -> dict:
    with netns.pxe_lan() as lan, tempfile.TemporaryDirectory() as tmp:
        wd = Path(tmp)
        if server == "dnsmasq":
            if quiet:
                conf = wd / "dnsmasq.conf"
                conf.write_text(f"interface=eth0\nbind-interfaces\nno-resolv\nno-hosts\n"
                                f"dhcp-leasefile={wd / 'leases'}\n" + CONF)
                srv = start(dnsmasq_argv(conf), lan["srv"], name="dnsmasq", workdir=wd, ports=(67, 4011))
            else:
                srv = start_dnsmasq(lan["srv"], CONF, workdir=wd)
        else:
            (wd / "pxe.toml").write_text(TOML)
            srv = start_bootstorm(lan["srv"], toml=wd / "pxe.toml", workdir=wd, extra=["--no-tftp"])
        try:
            time.sleep(0.2)
            cpu0 = proc_tree_seconds(srv.proc.pid)
            res = run_flood(lan["cli"].ns, "discover", "--count", str(count), "--seconds", "30",
                            "--rate", str(rate))
            res["cpu_seconds"] = round(proc_tree_seconds(srv.proc.pid) - cpu0, 3)
            res["log_lines"] = srv.log.count("\n")
        finally:
            srv.stop()
        return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rate", type=float, default=0.0, help="DISCOVERs/s offered (0: as fast as possible)")
    ap.add_argument("--quiet-dnsmasq", action="store_true", help="dnsmasq without log-dhcp")
    a = ap.parse_args(argv)
    netns.check_available()
    print(f"DISCOVER flood: {a.count} distinct MACs, rate {a.rate or 'max'}, {a.reps} reps, "
          f"dnsmasq log-dhcp {'off' if a.quiet_dnsmasq else 'on'}")
    print(f"{'server':10} {'rep':>3} {'sent':>6} {'offered/s':>10} {'replies':>8} {'lost':>6} "
          f"{'replies/s':>10} {'cpu s':>7}")
    summary = {}
    for rep in range(a.reps):
        for server in ("dnsmasq", "bootstorm"):  # interleaved: drifts hit both
            r = one(server, a.count, a.rate, a.quiet_dnsmasq)
            summary.setdefault(server, []).append(r)
            print(f"{server:10} {rep:>3} {r['sent']:>6} {r['offered_per_second']:>10} {r['replies']:>8} "
                  f"{r['lost']:>6} {r['replies_per_second']:>10} {r['cpu_seconds']:>7}", flush=True)
    for server, rs in summary.items():
        print(f"{server:10} median replies/s {statistics.median(r['replies_per_second'] for r in rs):.0f}, "
              f"median loss {statistics.median(r['lost'] for r in rs)}/{a.count}, "
              f"median cpu {statistics.median(r['cpu_seconds'] for r in rs):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
