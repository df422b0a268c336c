"""tftp-single-port behind a real NAT: what the option is for.

Three namespaces: a client (10.213.1.2), a router that masquerades what it forwards to the
server's segment (nftables, no conntrack TFTP helper, as a home router or cloud NAT), and
the server (10.213.2.2). The router's connection tracking lets back only replies from the
address and port the client asked. A transfer from a fresh port (RFC 1350's TID) is dropped
there; with tftp-single-port every DATA comes from port 69 and gets through. dnsmasq, on the
same conf file and the same network, is the reference for the failure without it.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from . import netns
from .netns import Host, run
from .servers import bootstorm_cmd, dnsmasq_argv, dnsmasq_conf, start

CLIENT, ROUTER_IN, ROUTER_OUT, SERVER = "10.213.1.2", "10.213.1.1", "10.213.2.1", "10.213.2.2"
CONTENT = bytes((i * 31 + 7) & 0xFF for i in range(150_000))  # 293 blocks of 512


@pytest.fixture(scope="module")
def nat(netns_required):
    """(client ns, server ns): the client's packets reach the server masqueraded."""
    nft = netns.require_tool("nft")
    netns.remove_stale()
    names = {role: f"bs-{role}-{os.getpid()}-{next(netns._counter)}" for role in ("ncli", "nrtr", "nsrv")}
    made = []
    try:
        for ns in names.values():
            run(["ip", "netns", "add", ns])
            made.append(ns)
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        cli, rtr, srv = names["ncli"], names["nrtr"], names["nsrv"]
        run(["ip", "link", "add", "eth0", "netns", cli, "type", "veth", "peer", "name", "eth0", "netns", rtr])
        run(["ip", "link", "add", "eth0", "netns", srv, "type", "veth", "peer", "name", "eth1", "netns", rtr])
        for ns, dev, cidr in ((cli, "eth0", f"{CLIENT}/24"), (rtr, "eth0", f"{ROUTER_IN}/24"),
                              (rtr, "eth1", f"{ROUTER_OUT}/24"), (srv, "eth0", f"{SERVER}/24")):
            run(["ip", "-n", ns, "addr", "add", cidr, "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["ip", "-n", cli, "route", "add", "default", "via", ROUTER_IN])
        # the server knows no route back to 10.213.1.0/24: only the masqueraded address
        run(netns.ns_exec(rtr, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]))
        run(netns.ns_exec(rtr, [nft, "add table ip nat; "
                                     "add chain ip nat post { type nat hook postrouting priority 100 ; } ; "
                                     'add rule ip nat post oifname "eth1" masquerade']))
        yield Host(role="ncli", ns=cli), Host(role="nsrv", ns=srv)
    finally:
        for ns in made:
            run(["ip", "netns", "del", ns], check=False)


def _serve(host: Host, kind: str, root: Path, single_port: bool, workdir: Path):
    body = f"port=0\nenable-tftp\ntftp-root={root}\n" + ("tftp-single-port\n" if single_port else "")
    if kind == "dnsmasq":
        return start(dnsmasq_argv(dnsmasq_conf(workdir, body)), host, name="dnsmasq",
                     workdir=workdir, ports=(69,))
    conf = dnsmasq_conf(workdir, body)  # the very same file as dnsmasq's
    return start([*bootstorm_cmd(), f"--conf-file={conf}", "--no-daemon"], host, name="bootstorm",
                 workdir=workdir, ready_line="TFTP listening", ports=(69,))


def _fetch(client: Host, out: Path, timeout: int) -> subprocess.CompletedProcess:
    curl = shutil.which("curl")
    assert curl, "curl is installed by .ci/run"
    return subprocess.run(netns.ns_exec(client.ns, [curl, "-sS", "--max-time", str(timeout),
                                                    f"tftp://{SERVER}/boot.bin", "-o", str(out)]),
                          capture_output=True, text=True, timeout=timeout + 10)


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.bin").write_bytes(CONTENT)
    root.chmod(0o755)
    (root / "boot.bin").chmod(0o644)
    return root


def _fails_behind_nat(client: Host, srv, out: Path) -> None:
    got = _fetch(client, out, 4)  # DATA from a fresh port never passes the NAT
    assert got.returncode == 28, (got.returncode, got.stderr, srv.log)  # curl: timed out
    assert not out.exists() or out.stat().st_size == 0


def test_behind_nat_single_port_gets_through(nat, tmp_path):
    client, server = nat
    root = _root(tmp_path)
    out = tmp_path / "single.bin"
    with _serve(server, "bootstorm", root, True, tmp_path / "single") as srv:
        got = _fetch(client, out, 20)
        assert got.returncode == 0, (got.stderr, srv.log)
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(CONTENT).digest()
        # a windowed transfer too (RFC 7440: what UEFI asks for), every window from port 69
        win = tmp_path / "window.bin"
        got = subprocess.run(netns.ns_exec(client.ns, [
            sys.executable, "-m", "bootstorm", "get", SERVER, "boot.bin", "-o", str(win), "-q",
            "--blksize", "1468", "--windowsize", "8", "--timeout", "2"]),
            capture_output=True, text=True, timeout=30)
        assert got.returncode == 0, (got.stderr, srv.log)
        assert win.read_bytes() == CONTENT
        assert "windowsize=8" in srv.log, srv.log  # granted, not fallen back to lock-step


@pytest.mark.parametrize("kind", ["dnsmasq", "bootstorm"])
def test_behind_nat_a_fresh_port_does_not(nat, tmp_path, kind):
    """Without single-port, both servers answer from a fresh port and the NAT drops it:
    the failure single-port exists for (and proof that the NAT is really in the path).
    dnsmasq 2.90's own single-port mode cannot be the reference for the success: it sends
    with a garbled IP_PKTINFO source and fails with ENETUNREACH even on loopback."""
    client, server = nat
    with _serve(server, kind, _root(tmp_path), False, tmp_path / "fresh") as srv:
        _fails_behind_nat(client, srv, tmp_path / "fresh.bin")
