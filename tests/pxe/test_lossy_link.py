"""TFTP over a lossy link, with real clients: every file arrives byte-exact.

Two namespaces joined by a veth pair; nftables drops a random 1 in LOSS of the transfers'
datagrams each way as they arrive (DATA, OACK and ERROR from the transfer ports in the
client's namespace, ACKs to them in the server's), so no sender hears of it, as on a real
link; the requests to port 69 pass, so each client's first try starts a transfer. A window
sent as one UDP GSO send crosses the veth pair as one packet and is lost whole: the burst
loss of a full switch queue. The server resends after --retransmit-timeout 0.2 s, so a
transfer that loses a dozen datagrams still ends in seconds; the clients keep their own
timers. curl runs with --tftp-no-options: otherwise it asks for a `timeout` derived from its
--max-time (2 s for 8 s; RFC 2349), which the server honours, so each loss costs that long.
What is checked: the bytes, the outcome the server logs, and that the loss really was in the
path (the rules' counters, and the server's retransmissions).
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from . import netns
from .servers import bootstorm_cmd, start

LOSS = 10  # 1 in LOSS datagrams of the transfers dropped, each way
# lock-step clients: 59 blocks of 512 or 21 of 1468; windowed: 205 blocks, 26 windows of 8
FILES = {"small.bin": os.urandom(30_000), "big.bin": os.urandom(300_000)}
SERVER = netns.SERVER_ADDR


@pytest.fixture(scope="module")
def lossy(netns_required, tmp_path_factory):
    """(client host, server process, nft, server host): bootstorm behind a lossy link."""
    nft = netns.require_tool("nft")
    work = tmp_path_factory.mktemp("lossy")
    root = work / "root"
    root.mkdir()
    for name, data in FILES.items():
        (root / name).write_bytes(data)
    with netns.pxe_lan() as lan:
        srv_host = lan["srv"]
        for host, counter in ((lan["cli"], "data"), (srv_host, "acks")):
            netns.run(host.exec_argv([nft, (
                f"add table inet loss ; add counter inet loss {counter} ; "
                "add chain inet loss in { type filter hook input priority 0 ; }")]))
        server = start([*bootstorm_cmd(), "serve", "--tftp-root", str(root), "--listen", SERVER,
                        "--retransmit-timeout", "0.2"], srv_host, name="bootstorm", workdir=work,
                       ready_line=rf"listening on {re.escape(SERVER)}:69\b", ports=(69,))
        with server:
            yield lan["cli"], server, nft, srv_host


def _lose(cli, srv_host, nft: str, acks: bool) -> None:
    """Drop 1 in LOSS of what the transfer ports send as it reaches the client, and (acks) of
    what they receive. Both on arrival: the sender never hears of it, as on a real link."""
    netns.run(cli.exec_argv([nft, "flush chain inet loss in ; add rule inet loss in udp sport != 69 "
                                  f'numgen random mod {LOSS} == 0 counter name "data" drop']))
    rules = "flush chain inet loss in"
    if acks:
        rules += f' ; add rule inet loss in udp dport != 69 numgen random mod {LOSS} == 0 counter name "acks" drop'
    netns.run(srv_host.exec_argv([nft, rules]))


# name: (file, ACKs lost too, argv for the output path). atftp 0.8.0's client loses only
# DATA: it aborts on a resent OACK (its ACK 0 lost), and it answers a resent window only once
# (that answer lost too, it waits for its own 5 s timer), whatever the server.
CLIENTS = {
    "curl-512": ("small.bin", True, lambda out: ["curl", "-sS", "--max-time", "60", "--tftp-no-options",
                                                 f"tftp://{SERVER}/small.bin", "-o", out]),
    "tftp-hpa": ("small.bin", True, lambda out: ["tftp", SERVER, "-m", "octet", "-c", "get", "small.bin", out]),
    "busybox-1468": ("small.bin", True, lambda out: ["busybox", "tftp", "-b", "1468", "-g", "-r", "small.bin",
                                                   "-l", out, SERVER]),
    "atftp-w8": ("big.bin", False, lambda out: ["atftp", "--option", "blksize 1468", "--option",
                                                "windowsize 8", "-g", "-r", "big.bin", "-l", out,
                                                SERVER, "69"]),
    "bootstorm-get-w16": ("big.bin", True, lambda out: [sys.executable, "-m", "bootstorm", "get", SERVER,
                                                        "big.bin", "-o", out, "-q", "--blksize", "1468",
                                                        "--windowsize", "16"]),
}


def _records(server, event: str, count: int, timeout: float = 10.0) -> list[dict[str, str]]:
    """The server's log lines of one event (tftp-transfer, tftp-stats) as dicts, once there
    are count of them or timeout has passed."""
    deadline = time.monotonic() + timeout
    while True:
        recs = [dict(re.findall(r"(\w+)=(\S+)", line)) for line in server.log.splitlines()
                if f" {event} " in line]
        if len(recs) >= count or time.monotonic() > deadline:
            return recs
        time.sleep(0.05)


@pytest.mark.parametrize("client", list(CLIENTS))
def test_file_arrives_whole_over_a_lossy_link(lossy, tmp_path, client):
    cli, server, nft, srv_host = lossy
    name, acks, make_argv = CLIENTS[client]
    _lose(cli, srv_host, nft, acks)
    argv = make_argv(str(tmp_path / "out.bin"))
    argv[0] = argv[0] if argv[0] == sys.executable else netns.require_tool(argv[0])
    before = len(_records(server, "tftp-transfer", 0, 0))
    got = subprocess.run(cli.exec_argv(argv), stdin=subprocess.DEVNULL, capture_output=True,
                         timeout=90)
    assert got.returncode == 0, (client, got.stdout[-500:], got.stderr[-500:], server.log[-2000:])
    assert (tmp_path / "out.bin").read_bytes() == FILES[name]
    # the server's account of it: ok, or (its last ACK lost, and the client gone when the
    # last block was resent) last-unacked; for a window, whose last blocks the server cannot
    # know arrived, unreachable too. Never another failure while the client was there.
    rec = _records(server, "tftp-transfer", before + 1)[before:]
    assert len(rec) == 1 and rec[0]["file"] == name, (rec, server.log[-2000:])
    allowed = ("ok", "last-unacked", "unreachable") if "-w" in client else ("ok", "last-unacked")
    assert rec[0]["outcome"] in allowed, rec[0]


def test_the_loss_was_in_the_path(lossy):
    """After the clients above (pytest runs this module's tests in order): datagrams were
    dropped each way, and the server resent what was lost."""
    cli, server, nft, srv = lossy
    drops = {}
    for host in (cli, srv):
        listed = netns.run(host.exec_argv([nft, "list", "counters", "table", "inet", "loss"])).stdout
        drops.update((name, int(n)) for name, n in re.findall(r"counter (\w+) \{\s*packets (\d+)", listed))
    assert set(drops) == {"acks", "data"} and min(drops.values()) > 0, drops
    os.kill(server.proc.pid, signal.SIGUSR1)
    stats = _records(server, "tftp-stats", 1, 5)[-1]
    assert int(stats["retransmits"]) > 0 and int(stats["transfers_ok"]) > 0, stats
    assert int(stats["active"]) == 0, stats
