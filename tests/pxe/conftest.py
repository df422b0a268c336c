"""Fixtures for ProxyDHCP tests in network namespaces.

* ``netns_required`` — skips (or, with ``CI`` set, fails) when root/netns is missing.
* ``lan`` / ``lan_module`` — the two-host segment ``srv`` 10.213.0.1 + ``cli``
  (10.213.0.50 and relay 10.213.0.254); ``lan_with_dhcp`` adds ``dhcp`` 10.213.0.2 on a bridge.
* ``client`` / ``client_module`` — a :class:`~.simulator.Client` in ``cli``.
* ``tftp_root`` — a directory with a few NBP files of known content (``NBP_FILES``).
* ``servers`` — a factory: ``servers.dnsmasq(lan["srv"], body)`` or
  ``servers.bootstorm(lan["srv"], conf_file=...)``; everything is stopped at teardown.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import netns
from .servers import Server, start_bootstorm, start_dnsmasq
from .simulator import Client

# Files every TFTP root gets: distinct, non-trivial contents so a byte-exact check means something.
NBP_FILES = {
    "pxelinux.0": bytes(range(256)) * 97 + b"pxelinux-end",
    "ipxe.efi": b"MZ" + bytes((i * 7) & 0xFF for i in range(70000)),
    "bootx64.efi": b"MZ-bootx64" * 3000,
    "grubaa64.efi": b"MZ-grubaa64" * 2000,
    "undionly.kpxe": b"undionly" * 5000,
    "boot.ipxe": b"#!ipxe\nchain http://10.213.0.1/menu.ipxe\n",
}


@pytest.fixture(scope="session")
def netns_required() -> None:
    netns.require()


def _client_for(lan: netns.Lan) -> Client:
    return Client(lan["cli"].ns, mac=lan["cli"].mac, server=netns.SERVER_ADDR,
                  addr=netns.CLIENT_ADDR, relay=netns.RELAY_ADDR)


@pytest.fixture
def lan(netns_required):
    with netns.pxe_lan() as segment:
        yield segment


@pytest.fixture(scope="module")
def lan_module(netns_required):
    with netns.pxe_lan() as segment:
        yield segment


@pytest.fixture
def lan_with_dhcp(netns_required):
    """srv + dhcp + cli on one bridge; cli has no address until it leases one."""
    with netns.pxe_lan(with_dhcp=True, client_addrs=[]) as segment:
        yield segment


@pytest.fixture
def client(lan) -> Client:
    return _client_for(lan)


@pytest.fixture(scope="module")
def client_module(lan_module) -> Client:
    return _client_for(lan_module)


def make_tftp_root(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, data in NBP_FILES.items():
        (path / name).write_bytes(data)
    return path


@pytest.fixture
def tftp_root(tmp_path) -> Path:
    return make_tftp_root(tmp_path / "tftp")


class ServerFactory:
    """Starts servers in namespaces and stops every one of them at teardown."""

    def __init__(self, base: Path):
        self.base = base
        self.running: list[Server] = []
        self._n = 0

    def _workdir(self, name: str) -> Path:
        self._n += 1
        wd = self.base / f"{name}-{self._n}"
        wd.mkdir(parents=True)
        return wd

    def dnsmasq(self, host: netns.Host, body: str, *, ports=(67, 4011), name: str = "dnsmasq") -> Server:
        srv = start_dnsmasq(host, body, workdir=self._workdir(name), ports=ports, name=name)
        self.running.append(srv)
        return srv

    def bootstorm(self, host: netns.Host, **kw) -> Server:
        srv = start_bootstorm(host, workdir=self._workdir("bootstorm"), **kw)
        self.running.append(srv)
        return srv

    def stop_all(self) -> None:
        while self.running:
            self.running.pop().stop()


@pytest.fixture
def servers(tmp_path):
    f = ServerFactory(tmp_path / "servers")
    yield f
    f.stop_all()


@pytest.fixture(scope="module")
def servers_module(tmp_path_factory):
    f = ServerFactory(tmp_path_factory.mktemp("servers"))
    yield f
    f.stop_all()
