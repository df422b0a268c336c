"""Throw-away network namespaces for PXE tests.

A :class:`Lan` is one Ethernet segment made of network namespaces, created with
``ip netns add`` and veth pairs, and removed again on exit even when a test fails:

* two hosts (the default) are joined by one veth pair;
* three or more hosts (or ``bridge=True``) hang off a Linux bridge that lives in a
  namespace of its own, one veth per host.

Every host sees its end of the segment as ``eth0``, so server configs can always say
``interface=eth0``.  Addresses are assigned only inside the namespaces, in a private
test subnet (10.213.0.0/24 by default); nothing on the machine's own interfaces changes.

Namespaces are named ``bs-<role>-<pid>-<n>``; a later run removes namespaces left
behind by a run whose process no longer exists (a crashed or killed pytest).
"""

from __future__ import annotations

import itertools
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Iterable, Sequence

IFNAME = "eth0"  # each host's end of the segment, the same name in every namespace
SUBNET = "10.213.0"
PREFIX = 24
SERVER_ADDR = f"{SUBNET}.1"
DHCP_ADDR = f"{SUBNET}.2"  # the ordinary DHCP server, in the three-host topology
CLIENT_ADDR = f"{SUBNET}.50"  # the PXE client once "its address is settled" (4011 phase)
RELAY_ADDR = f"{SUBNET}.254"  # a DHCP relay agent (giaddr) on the client's side

# fixed MACs: replies from two servers run in turn on the same segment compare equal
CLIENT_MAC = "52:54:00:12:34:56"
SERVER_MAC = "52:54:00:bb:00:01"
DHCP_MAC = "52:54:00:bb:00:02"

_NS_RE = re.compile(r"^bs-([a-z0-9]+)-(\d+)-(\d+)$")
_counter = itertools.count()


class NetnsUnavailable(RuntimeError):
    """Root or network namespaces are missing on this machine."""


def run(argv: Sequence[str], check: bool = True, timeout: float = 10.0) -> subprocess.CompletedProcess:
    """Run a short command (ip, ss...), capturing output; raise with its stderr on failure."""
    cp = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and cp.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({cp.returncode}): {cp.stderr.strip()}")
    return cp


def ns_exec(ns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns, *argv]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    cp = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]


def remove_stale() -> list[str]:
    """Delete ``bs-*-<pid>-<n>`` namespaces whose creating process is gone."""
    removed = []
    for name in list_namespaces():
        m = _NS_RE.match(name)
        if m and int(m.group(2)) != os.getpid() and not _pid_alive(int(m.group(2))):
            run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed


def check_available() -> None:
    """Raise :class:`NetnsUnavailable` with a reason unless we can build namespaces."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("network namespace tests need root (ip netns add)")
    if shutil.which("ip") is None:
        raise NetnsUnavailable("iproute2 `ip` is not installed")
    probe = f"bs-probe-{os.getpid()}-{next(_counter)}"
    cp = run(["ip", "netns", "add", probe], check=False)
    if cp.returncode != 0:
        raise NetnsUnavailable(f"`ip netns add` failed: {cp.stderr.strip()}")
    try:
        cp = run(["ip", "-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1"], check=False)
        if cp.returncode != 0:
            raise NetnsUnavailable(f"veth pairs unavailable: {cp.stderr.strip()}")
    finally:
        run(["ip", "netns", "del", probe], check=False)


@dataclass
class Host:
    """One namespace on the segment."""

    role: str
    ns: str
    addrs: list[str] = field(default_factory=list)  # "a.b.c.d/len" on eth0
    mac: str = ""
    ifname: str = IFNAME

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        return ns_exec(self.ns, argv)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run(["ip", "-n", self.ns, *args], check=check)

    def add_addr(self, cidr: str) -> None:
        # nodad: the address is usable at once (no IPv6 here, but keep it explicit)
        self.ip("addr", "add", cidr, "dev", self.ifname)
        self.addrs.append(cidr)

    def del_addr(self, cidr: str) -> None:
        self.ip("addr", "del", cidr, "dev", self.ifname, check=False)
        if cidr in self.addrs:
            self.addrs.remove(cidr)

    @property
    def addr(self) -> str | None:
        """The first IPv4 address (without prefix length), if any."""
        return self.addrs[0].split("/")[0] if self.addrs else None


class Lan:
    """A segment of namespaces; use as a context manager.

    ``hosts`` maps a role (short lowercase word: srv, cli, dhcp...) to the addresses
    its ``eth0`` gets, e.g. ``{"srv": ["10.213.0.1/24"], "cli": []}``.  ``macs`` may fix
    a host's MAC address (the PXE client's chaddr should match its interface).
    """

    def __init__(
        self,
        hosts: dict[str, Iterable[str]],
        *,
        bridge: bool | None = None,
        macs: dict[str, str] | None = None,
    ) -> None:
        self.spec = {role: list(addrs) for role, addrs in hosts.items()}
        for role in self.spec:
            if not re.fullmatch(r"[a-z0-9]{1,6}", role):
                raise ValueError(f"role {role!r}: 1-6 lowercase letters or digits")
        self.use_bridge = bridge if bridge is not None else len(self.spec) != 2
        self.macs = macs or {}
        self.hosts: dict[str, Host] = {}
        self.bridge_ns: str | None = None
        self._created: list[str] = []
        self._procs: list[subprocess.Popen] = []

    # -- lifecycle ---------------------------------------------------------------
    def _new_ns(self, role: str) -> str:
        name = f"bs-{role}-{os.getpid()}-{next(_counter)}"
        run(["ip", "netns", "add", name])
        self._created.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def __enter__(self) -> "Lan":
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build(self) -> None:
        remove_stale()
        for role in self.spec:
            self.hosts[role] = Host(role=role, ns=self._new_ns(role))
        if self.use_bridge:
            self.bridge_ns = self._new_ns("br")
            br = self.bridge_ns
            run(["ip", "-n", br, "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0"])
            # no IGMP snooping surprises and no learning delays for the tests
            run(["ip", "-n", br, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0"], check=False)
            run(["ip", "-n", br, "link", "set", "br0", "up"])
            for i, host in enumerate(self.hosts.values()):
                port = f"p{i}-{host.role}"
                run(["ip", "link", "add", IFNAME, "netns", host.ns, "type", "veth", "peer", "name", port, "netns", br])
                run(["ip", "-n", br, "link", "set", port, "master", "br0"])
                run(["ip", "-n", br, "link", "set", port, "up"])
        else:
            a, b = self.hosts.values()
            run(["ip", "link", "add", IFNAME, "netns", a.ns, "type", "veth", "peer", "name", IFNAME, "netns", b.ns])
        for role, host in self.hosts.items():
            if self.macs.get(role):
                host.ip("link", "set", IFNAME, "address", self.macs[role])
            host.ip("link", "set", IFNAME, "up")
            for cidr in self.spec[role]:
                host.add_addr(cidr)
            out = host.ip("-o", "link", "show", IFNAME).stdout
            m = re.search(r"link/ether ([0-9a-f:]{17})", out)
            host.mac = m.group(1) if m else ""

    def close(self) -> None:
        for p in self._procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        self._procs.clear()
        for name in reversed(self._created):
            run(["ip", "netns", "del", name], check=False)
        self._created.clear()

    # -- helpers -----------------------------------------------------------------
    def __getitem__(self, role: str) -> Host:
        return self.hosts[role]

    def track(self, proc: subprocess.Popen) -> subprocess.Popen:
        """Kill ``proc`` when the segment is torn down (servers are stopped earlier normally)."""
        self._procs.append(proc)
        return proc

    @property
    def namespaces(self) -> list[str]:
        return list(self._created)


def pxe_lan(*, with_dhcp: bool = False, client_addrs: Iterable[str] | None = None) -> Lan:
    """The usual topology: ``srv`` (10.213.0.1) and ``cli`` (the PXE client's namespace).

    ``cli`` carries the client's settled address 10.213.0.50 (used only for the unicast
    4011 phase: the raw DISCOVER frames are sourced from 0.0.0.0 regardless) and the
    relay agent's address 10.213.0.254.  ``with_dhcp`` adds a third host ``dhcp``
    (10.213.0.2) for an ordinary DHCP server on the same bridge.
    """
    if client_addrs is None:
        client_addrs = [f"{CLIENT_ADDR}/{PREFIX}", f"{RELAY_ADDR}/{PREFIX}"]
    hosts: dict[str, list[str]] = {"srv": [f"{SERVER_ADDR}/{PREFIX}"], "cli": list(client_addrs)}
    if with_dhcp:
        hosts["dhcp"] = [f"{DHCP_ADDR}/{PREFIX}"]
    return Lan(hosts, macs={"cli": CLIENT_MAC, "srv": SERVER_MAC, "dhcp": DHCP_MAC})


def require() -> None:
    """Network namespaces, or the test cannot run: a skip on a developer's machine without
    them, a failure under CI (where every test must really run)."""
    import pytest

    try:
        check_available()
    except NetnsUnavailable as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but network namespaces are unavailable: {e}", pytrace=False)
        pytest.skip(f"network namespaces unavailable: {e}")


def require_tool(name: str) -> str:
    """The path of a tool a test runs (nft, a TFTP client): a skip on a developer's machine
    without it, a failure under CI (.ci/run installs them)."""
    import pytest

    exe = shutil.which(name)
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {name} is not installed", pytrace=False)
        pytest.skip(f"{name} is not installed")
    return exe
