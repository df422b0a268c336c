"""Harness for the differential corpus: render a config, build the TFTP tree, run one server.

Each config in ``configs/`` is a dnsmasq conf written from a public deployment; only the
site-specific values are placeholders, filled in by :func:`render`:

    @IFACE@ eth0            @SERVER_IP@ 10.213.0.1     @SUBNET@ 10.213.0.0
    @NETMASK@ 255.255.255.0 @REMOTE_SUBNET@ 10.214.0.0  @TFTP_ROOT@ the shared tree

The rendered file is written once and read, unmodified, by both servers:

    dnsmasq --no-daemon --port=0 --pid-file= --dhcp-leasefile=WD/leases --conf-file=F
    bootstorm --conf-file=F --no-daemon

(the lease file is only moved out of /var/lib/misc: dnsmasq opens one whenever DHCP is on).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pxe import netns
from pxe.differential import Probe, run_probes
from pxe.servers import Server, start, start_bootstorm
from pxe.simulator import Client, ClientProfile

HERE = Path(__file__).parent
CONF_DIR = HERE / "configs"
TFTP_PROBE = HERE / "tftpprobe.py"

SRV = netns.SERVER_ADDR
CLIENT_IP = netns.CLIENT_ADDR
REMOTE_NET = "10.214.0"
REMOTE_RELAY = f"{REMOTE_NET}.254"
NO_RANGE_RELAY = "10.215.0.254"

SUBST = {
    "@IFACE@": netns.IFNAME,
    "@SERVER_IP@": SRV,
    "@SUBNET@": f"{netns.SUBNET}.0",
    "@NETMASK@": "255.255.255.0",
    "@REMOTE_SUBNET@": f"{REMOTE_NET}.0",
}


def render(text: str, tftp_root: Path) -> str:
    out = text.replace("@TFTP_ROOT@", str(tftp_root))
    for k, v in SUBST.items():
        out = out.replace(k, v)
    left = re.findall(r"@[A-Z_]+@", out)
    assert not left, f"unfilled placeholders {left}"
    return out


# --- the TFTP tree ------------------------------------------------------------------
def _content(name: str, size: int) -> bytes:
    seed = zlib.crc32(name.encode())
    block = bytes((seed + i * 31) & 0xFF for i in range(251)) + name.encode()
    return (block * (size // len(block) + 1))[:size]


# every file a config names, plus the ones the TFTP probes ask for; sizes vary on purpose
# (pxelinux.0 is an exact multiple of 512: the transfer ends with an empty block)
TREE_FILES = {
    "pxelinux.0": 40 * 512,
    "ipxe.efi": 200_003,
    "undionly.kpxe": 70_001,
    "undionly": 3_000,
    "undionly-lab.kpxe": 9_000,
    "snponly.efi": 180_000,
    "arm64-efi/snponly.efi": 190_000,
    "netboot.xyz.kpxe": 350_000,
    "netboot.xyz.efi": 1_050_000,
    "netboot.xyz-arm64.efi": 1_000,
    "i386-efi/ipxe.efi": 150_000,
    "ltsp/undionly.kpxe": 70_000,
    "ltsp/snponly.efi": 180_000,
    "ltsp/ltsp.ipxe": 2_000,
    "ltsp/i386/pxelinux.0": 26_000,
    "bios/lpxelinux.0": 90_000,
    "efi64/syslinux.efi": 200_000,
    "bootx64.efi": 950_000,
    "grubx64.efi": 2_500_000,
    "grubaa64.efi": 900_000,
    "ipxe.pxe": 80_000,
    "ipxe-x86_64.efi": 200_000,
    "ipxe32.efi": 160_000,
    "ipxe-arm64.efi": 170_000,
    "snp-arm64.efi": 100_000,
    "ipxe-snponly-x86_64.efi": 200_000,
    "boot/bios/undionly.kpxe": 70_000,
    "boot/efi/ipxe-snponly-x86_64.efi": 200_000,
    "debian-installer/arm64/grubaa64.efi": 900_000,
    "debian-installer/arm64/bootnetaa64.efi": 900_000,
    "debian-installer/amd64/bootnetx64.efi": 900_000,
    "boot.ipxe": 57,
    "sub/readme.txt": 1_000,
    "private.bin": 4_000,  # not world-readable (mode 0600)
    # tftp-unique-root: the client's own directories (by IP, and by MAC as dnsmasq spells it)
    f"{CLIENT_IP}/pxelinux.0": 12_345,
    f"{CLIENT_IP}/node.cfg": 300,
    "52-54-00-12-34-56/start4.elf": 30_000,
    "52-54-00-12-34-56/pxelinux.0": 7_777,
}


def build_tree() -> tuple[Path, Path]:
    """(base, root): root is the TFTP root, base/x is the traversal bait outside it.  World
    readable all the way (dnsmasq drops to user nobody), unlike pytest's 0700 tmp dirs."""
    base = Path(tempfile.mkdtemp(prefix="bs-conformance-"))
    os.chmod(base, 0o755)
    root = base / "tftp"
    for rel, size in TREE_FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(_content(rel, size))
        os.chmod(p, 0o600 if rel == "private.bin" else 0o644)
    for d in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        os.chmod(d, 0o755)
    (base / "x").write_bytes(b"outside the TFTP root\n")
    os.chmod(base / "x", 0o644)
    return base, root


def remove_tree(base: Path) -> None:
    shutil.rmtree(base, ignore_errors=True)


# --- clients --------------------------------------------------------------------------
def ipxe_features_full(efi: bool) -> str:
    """Option 175 as a full iPXE build sends it: every feature a sub-option (code, 1, 1):
    PXE_EXT, iSCSI, HTTP, HTTPS, TFTP, DNS, MENU and PXE+bzImage (BIOS) or EFI, then the
    version (iPXE src/include/ipxe/features.h)."""
    codes = [0x11, 0x13, 0x14, 0x15, 0x17] + ([0x24] if efi else [0x18, 0x21]) + [0x27]
    subs = [(0x10, b"\x02")] + [(c, b"\x01") for c in codes] + [(0xEB, b"\x01\x15\x00")]
    return b"".join(bytes([c, len(v)]) + v for c, v in subs).hex()


@dataclass
class Profile(ClientProfile):
    features_hex: str | None = None  # replaces option 175's value

    def base_options(self, msg_type: int) -> list[tuple[int, bytes]]:
        opts = super().base_options(msg_type)
        if self.features_hex is None:
            return opts
        opts = [o for o in opts if o[0] != 175]
        return opts + [(175, bytes.fromhex(self.features_hex))]


class ConfClient(Client):
    """The simulator's client plus moves as another machine (chaddr) or a full iPXE build."""

    def discover_as(self, arch: int = 0, *, mac: str | None = None, features_hex: str | None = None,
                    relay: bool = False, xid: int, expect: int | None = 1, wait: float = 0.4,
                    **kw: Any):
        prof = Profile(arch=arch, mac=mac or self.mac, features_hex=features_hex, **kw)
        return self.discover(arch, relay=relay, xid=xid, expect=expect, wait=wait, profile=prof)

    def request_4011_as(self, arch: int = 7, *, mac: str | None = None, features_hex: str | None = None,
                        sport: int = 4011, xid: int, expect: int | None = 1, wait: float = 0.4,
                        **kw: Any):
        prof = Profile(arch=arch, mac=mac or self.mac, features_hex=features_hex, **kw)
        return self.request_4011(arch, sport=sport, xid=xid, expect=expect, wait=wait, profile=prof)


def tftp_batch(ns: str, server: str, requests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    cp = subprocess.run(["ip", "netns", "exec", ns, sys.executable, str(TFTP_PROBE)],
                        input=json.dumps({"server": server, "requests": requests}),
                        capture_output=True, text=True, timeout=120)
    if cp.returncode != 0:
        raise RuntimeError(f"tftpprobe failed ({cp.returncode}): {cp.stderr}")
    return json.loads(cp.stdout)


# --- segments and runs ----------------------------------------------------------------
@dataclass
class Segment:
    lan: netns.Lan
    client: ConfClient
    remote: ConfClient
    norange: ConfClient


def make_segment(stack) -> Segment:
    lan = stack.enter_context(netns.pxe_lan())
    lan["cli"].add_addr(f"{REMOTE_RELAY}/24")
    lan["cli"].add_addr(f"{NO_RANGE_RELAY}/24")
    lan["srv"].ip("route", "add", f"{REMOTE_NET}.0/24", "via", netns.RELAY_ADDR)
    kw = dict(mac=lan["cli"].mac, server=SRV, addr=CLIENT_IP)
    return Segment(lan, ConfClient(lan["cli"].ns, relay=netns.RELAY_ADDR, **kw),
                   ConfClient(lan["cli"].ns, relay=REMOTE_RELAY, **kw),
                   ConfClient(lan["cli"].ns, relay=NO_RANGE_RELAY, **kw))


def dnsmasq_argv(conf: Path, workdir: Path) -> list[str]:
    return [shutil.which("dnsmasq") or "/usr/sbin/dnsmasq", "--no-daemon", "--port=0", "--pid-file=",
            f"--dhcp-leasefile={workdir / 'leases'}", f"--conf-file={conf}"]


def start_server(kind: str, seg: Segment, conf: Path, workdir: Path, ports: tuple[int, ...]) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    if kind == "dnsmasq":
        return start(dnsmasq_argv(conf, workdir), seg.lan["srv"], name="dnsmasq", workdir=workdir, ports=ports)
    return start_bootstorm(seg.lan["srv"], conf_file=conf, workdir=workdir, ports=ports)


@dataclass
class Plan:
    """What one config is asked: DHCP probes (direct, via the remote relay, via a relay no range
    covers) and TFTP requests."""

    name: str
    conf: Path
    probes: list[Probe]
    remote: list[Probe] = field(default_factory=list)
    norange: list[Probe] = field(default_factory=list)
    tftp: list[dict[str, Any]] = field(default_factory=list)
    mtu: int | None = None  # the segment's MTU for this config (jumbo frames), else 1500


def run_plan(kind: str, seg: Segment, plan: Plan, workdir: Path) -> dict[str, Any]:
    text = plan.conf.read_text()
    ports = (67, 4011, 69) if "enable-tftp" in text else (67, 4011)
    if plan.mtu:
        for h in ("srv", "cli"):
            seg.lan[h].ip("link", "set", netns.IFNAME, "mtu", str(plan.mtu))
    try:
        srv = start_server(kind, seg, plan.conf, workdir, ports)
    except BaseException:
        _reset_mtu(seg, plan)
        raise
    try:
        dhcp = run_probes(seg.client, plan.probes, salt=plan.name)
        if plan.remote:
            dhcp |= run_probes(seg.remote, plan.remote, salt=plan.name)
        if plan.norange:
            dhcp |= {f"norange-{k}": v for k, v in run_probes(seg.norange, plan.norange, salt=plan.name).items()}
        tftp = tftp_batch(seg.lan["cli"].ns, SRV, plan.tftp) if plan.tftp else {}
        alive = srv.alive()
        return {"dhcp": dhcp, "tftp": tftp, "alive": alive, "log": srv.log[-4000:]}
    finally:
        srv.stop()
        _reset_mtu(seg, plan)


def _reset_mtu(seg: Segment, plan: Plan) -> None:
    if plan.mtu:
        for h in ("srv", "cli"):
            seg.lan[h].ip("link", "set", netns.IFNAME, "mtu", "1500")
