"""S4: ProxyDHCP load, dnsmasq vs bootstorm, inside two throw-away network namespaces.

    python -m bench --scenarios S4 [--quick]

Topology (tests/pxe/netns.py's Lan, removed in ``finally``): ``bs-srv-PID-n`` (server, eth0
10.213.0.1/24) and ``bs-cli-PID-n`` (load generator, eth0 10.213.0.50/24) joined by one veth
pair.  Addresses exist only inside the namespaces.
Both servers read the same dnsmasq conf file (proxy mode, pxe-service and pxe-prompt);
bootstorm by its drop-in contract ``bootstorm --conf-file=F --no-daemon`` (as dnsmasq runs:
its debug mode, where both keep root).
Each measurement starts the server fresh in its cgroup (CPU of all its processes), runs
``dhcpgen`` (bench/dhcpgen.c) in the client namespace: DISCOVERs to :67 from many MACs,
then REQUESTs to :4011, and stops the server.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench import pin
from bench.peers import PEERS, Bootstorm, CpuMeter
from tests.pxe import netns
from tests.pxe.netns import CLIENT_ADDR, SERVER_ADDR
from tests.pxe.servers import dnsmasq_argv

HERE = Path(__file__).resolve().parent

CONF_BODY = """\
interface=eth0
bind-interfaces
no-resolv
no-hosts
dhcp-leasefile={wd}/leases
dhcp-range=10.213.0.0,proxy
pxe-service=x86PC,"Network Boot",pxelinux
pxe-service=x86PC,"Boot from local disk"
pxe-service=x86-64_EFI,"UEFI Boot",ipxe.efi
pxe-service=BC_EFI,"UEFI BC Boot",bootx64.efi
pxe-prompt="Press F8 for boot menu",5
"""


def _run(argv, check=True, timeout=10.0):
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and cp.returncode:
        raise RuntimeError(f"{' '.join(argv)}: {cp.stderr.strip()}")
    return cp


def lan():
    """The two-namespace segment of tests/pxe/netns.py: ``srv`` 10.213.0.1 and ``cli`` 10.213.0.50."""
    return netns.pxe_lan(client_addrs=[f"{CLIENT_ADDR}/24"])


def available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "S4 needs root (ip netns add)"
    if not shutil.which("ip"):
        return False, "iproute2 missing"
    return True, "ok"


def build_dhcpgen() -> Path:
    src, exe = HERE / "dhcpgen.c", HERE / "build" / "dhcpgen"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        exe.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", str(exe), str(src)], check=True, timeout=120)
    return exe


def _bound(ns: str) -> set[int]:
    out = _run(["ip", "netns", "exec", ns, "ss", "-H", "-uln"], check=False).stdout
    return {int(m.group(1)) for m in re.finditer(r":(\d+)\s", out)}


class DhcpServer:
    """dnsmasq (2.90 or 2.92) or bootstorm in the server namespace, in a cgroup of its own."""

    def __init__(self, name: str, ns: str, wd: Path):
        self.name, self.ns, self.wd = name, ns, wd
        self.meter = CpuMeter(f"dhcp-{name}")
        conf = wd / "proxy.conf"
        conf.write_text(CONF_BODY.format(wd=wd))
        if name.startswith("dnsmasq"):  # dnsmasq or dnsmasq-2.92: its executable as peers.py finds it
            cmd = dnsmasq_argv(conf, PEERS[name].exe())
            env = None
        else:
            cmd = [*Bootstorm._cmd(), f"--conf-file={conf}", "--no-daemon"]
            env = Bootstorm._pyenv()
        self.log = wd / f"{name}.log"
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(self.meter.wrap(["ip", "netns", "exec", ns, *cmd]),
                                     stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                     preexec_fn=pin.server())
        self.meter.pid = self.proc.pid
        deadline = time.monotonic() + 20
        while True:  # bounded: 20 s
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited {self.proc.returncode}: {self.log.read_text()[-400:]}")
            ready = {67, 4011} <= _bound(ns)
            if ready and name == "bootstorm":
                ready = "ProxyDHCP listening" in self.log.read_text(errors="replace")
            if ready:
                break
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} not ready: {self.log.read_text()[-400:]}")
            time.sleep(0.05)

    def cpu(self) -> float:
        return self.meter.seconds()

    def rss_kb(self) -> int:
        total = 0
        for p in self.meter.pids():
            try:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for _ in range(3):
            left = self.meter.pids()
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, 9)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        self._logf.close()
        self.meter.close()


def run_phase(lan: netns.Lan, mode: str, count: int, macs: int, inflight: int, arch: int,
              max_seconds: float) -> dict:
    argv = ["ip", "netns", "exec", lan["cli"].ns, str(build_dhcpgen()), "--iface", "eth0",
            "--server", SERVER_ADDR, "--mode", mode, "--count", str(count), "--macs", str(macs),
            "--inflight", str(inflight), "--arch", str(arch), "--timeout-ms", "1000",
            "--max-seconds", str(int(max_seconds))]
    if mode == "request4011":
        argv += ["--ciaddr", CLIENT_ADDR]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=max_seconds + 30,
                       preexec_fn=pin.load())
    if not p.stdout.strip():
        raise RuntimeError(f"dhcpgen rc={p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout)


def measure(lan: netns.Lan, server: str, sc: dict) -> dict:
    """One fresh server; DISCOVER phase then :4011 REQUEST phase; CPU per phase."""
    wd = Path(tempfile.mkdtemp(prefix=f"bs-bench-{server}-"))
    os.chmod(wd, 0o755)
    srv = DhcpServer(server, lan["srv"].ns, wd)
    out = dict(server=server)
    try:
        time.sleep(0.2)
        for phase, mode, arch in (("discover", "discover", 0), ("request4011", "request4011", 7)):
            c0, s0 = srv.cpu(), srv.meter.split()
            r = run_phase(lan, mode, sc["count"], sc["macs"], sc["inflight"], arch, sc["max_seconds"])
            time.sleep(0.05)
            r["server_cpu_s"] = srv.cpu() - c0
            s1 = srv.meter.split()
            if s0 and s1:
                r["server_user_s"], r["server_sys_s"] = s1[0] - s0[0], s1[1] - s0[1]
            r["server_cpu_us_per_reply"] = (r["server_cpu_s"] * 1e6 / r["replies"]) if r["replies"] else None
            out[phase] = r
        out["rss_kb"] = srv.rss_kb()
    finally:
        srv.stop()
        out["log_tail"] = srv.log.read_text(errors="replace").splitlines()[-3:]
        shutil.rmtree(wd, ignore_errors=True)
    return out
