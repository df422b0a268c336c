"""`--single-port` (dnsmasq tftp-single-port): every transfer from the listening port, so
that a NAT or firewall passing only the replies of the port a client asked reaches it.
Real clients, and raw ones that check where each reply comes from."""
from __future__ import annotations

import os
import signal
import socket

import pytest

from tftp_harness import (OP_DATA, OP_ERROR, OP_OACK, RawClient, ack, atftp_get,
                          bootstorm_get, busybox_get, curl_get, hpa_get, make_file, rrq, sha256,
                          sha256_file)
from test_load import run_many

SIZES = {"exact.bin": 3 * 512, "odd.bin": 200_000 + 7}

CLIENTS = {
    "curl-default": lambda p, n, o: curl_get(p, n, o),
    "curl-1468": lambda p, n, o: curl_get(p, n, o, blksize=1468),
    "tftp-hpa": lambda p, n, o: hpa_get(p, n, o),
    "atftp-default": lambda p, n, o: atftp_get(p, n, o, tsize=False),
    "atftp-1468-w4": lambda p, n, o: atftp_get(p, n, o, blksize=1468, windowsize=4),
    "busybox-1468": lambda p, n, o: busybox_get(p, n, o, blksize=1468),
    "bootstorm-get-1468-w8": lambda p, n, o: bootstorm_get(p, n, o, blksize=1468, windowsize=8),
}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    from conftest import _start, _stop_all
    root = tmp_path_factory.mktemp("single_root")
    files = {name: make_file(root, name, size) for name, size in SIZES.items()}
    servers = []
    server = _start(servers, root, "--single-port")
    yield server, root, files
    _stop_all(servers)


def client_of(server) -> RawClient:
    c = RawClient(server.addr)
    c.peer = server.addr  # the transfer's TID is the listening port itself
    return c


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("name", list(SIZES))
def test_real_clients(single, out_dir, client, name):
    server, _root, files = single
    before = len(server.transfers(file=name, outcome="ok"))
    result = CLIENTS[client](server.port, name, out_dir / "got")
    assert result.returncode == 0, (client, result.stdout, result.stderr)
    assert sha256_file(out_dir / "got") == sha256(files[name])
    recs = server.wait_transfers(before + 1, 5, file=name, outcome="ok")
    assert len(recs) == before + 1, server.transfers()[-3:]


@pytest.mark.parametrize("options", [None, {"blksize": 1468}, {"blksize": 1024, "windowsize": 4}])
def test_every_reply_comes_from_the_listening_port(single, options):
    server, _root, files = single
    with client_of(server) as c:
        c.send_rrq("odd.bin", options=options)
        blksize = (options or {}).get("blksize", 512)
        window = (options or {}).get("windowsize", 1)
        expected, got, sources = 1, bytearray(), set()
        if options:
            op, _num, oack, addr = c.recv(2)
            sources.add(addr)
            assert op == OP_OACK and int(oack["blksize"]) == blksize, oack
            c.send(ack(0))
        while True:  # lock-step or windowed, no loss on loopback
            for _ in range(window):
                op, num, payload, addr = c.recv(2)
                sources.add(addr)
                assert (op, num) == (OP_DATA, expected & 0xFFFF)
                got += payload
                expected += 1
                if len(payload) < blksize:
                    break
            c.send(ack((expected - 1) & 0xFFFF))
            if len(payload) < blksize:
                break
    assert sources == {server.addr}
    assert bytes(got) == files["odd.bin"]


def test_many_clients_at_once_and_no_socket_per_transfer(single):
    server, _root, files = single
    baseline = server.fd_count()
    variants = [None, {"blksize": 1468}, {"blksize": 1468, "windowsize": 4}]
    flows = run_many(server.addr, "odd.bin", [variants[i % 3] for i in range(150)], max_seconds=45)
    assert [f.error for f in flows if f.error] == []
    assert all(f.done and bytes(f.buf) == files["odd.bin"] for f in flows)
    assert {f.peer for f in flows} == {server.addr}
    # the transfers used the listening socket only: no descriptor came or went
    assert server.fd_count() == baseline


def test_retransmitted_rrq_and_a_client_starting_over(single):
    server, _root, files = single
    before = len(server.transfers(file="odd.bin"))
    with client_of(server) as c:
        c.send_rrq("odd.bin")
        c.send_rrq("odd.bin")  # the same request again: still one transfer
        assert c.expect(OP_DATA, 2)[0] == 1
        c.send(ack(1))
        assert c.expect(OP_DATA, 2)[0] == 2
        # the client starts over from the same port (a reboot): the old transfer is replaced
        c.send_rrq("odd.bin", options={"blksize": 1468})
        op, _num, oack, addr = c.recv(2)
        while op == OP_DATA:  # block 2 may still have been on its way
            op, _num, oack, addr = c.recv(2)
        assert (op, addr) == (OP_OACK, server.addr)
        got = c.download(first=(OP_OACK, 0, oack), max_seconds=20)
    assert sha256(got) == sha256(files["odd.bin"])
    recs = server.wait_transfers(before + 2, 5, file="odd.bin")[before:]
    assert sorted(r["outcome"] for r in recs) == ["ok", "replaced"], recs


def test_stranger_is_dropped_and_counted(single):
    server, _root, files = single
    with client_of(server) as c, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        c.send_rrq("exact.bin")
        num, first = c.expect(OP_DATA, 2)
        stranger.settimeout(1)
        stranger.sendto(ack(1), server.addr)  # an ACK from an address with no transfer
        with pytest.raises(socket.timeout):
            stranger.recv(600)
        got = c.download(first=(OP_DATA, num, first), max_seconds=20)
    assert got == files["exact.bin"]
    os.kill(server.pid, signal.SIGUSR1)
    stats = server.wait_events("tftp-stats", 1, 5)
    assert stats and int(stats[-1]["strangers"]) >= 1, stats


def test_a_wildcard_listener_answers_from_the_address_asked(tftp_server, tmp_path):
    """Bound to 0.0.0.0, the listening socket would answer from the address the route
    picks (127.0.0.1 here); a client that asked 127.0.0.2 must hear back from 127.0.0.2,
    or it takes the replies for a stranger's. (Loopback only: 127.0.0.0/8 is all local.)"""
    root = tmp_path / "root"
    data = make_file(root, "f.bin", 40_000)
    server = tftp_server(root, "--single-port", "--listen", "0.0.0.0")
    asked = ("127.0.0.2", server.port)
    for options in (None, {"blksize": 1468, "windowsize": 4}):
        with RawClient(asked) as c:
            c.peer = asked
            c.send_rrq("f.bin", options=options)
            op, num, payload, addr = c.recv(2)
            assert addr == asked
            got = c.download(first=(op, num, payload), max_seconds=20)
        assert got == data
    # the refusals come from the listening socket's own send: the same address
    with RawClient(asked) as c:
        c.send_rrq("missing.bin")
        assert c.recv(2)[3] == asked


def test_a_refusal_after_another_clients_icmp_error_still_goes_out(single):
    """The listener reports an ICMP error (here: A closed its port before its refusal came)
    once, to whichever send comes next: B's refusal must not be the one lost."""
    server, _root, _files = single
    with client_of(server) as b:
        for _ in range(5):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
                a.bind(("127.0.0.1", 0))
                a.sendto(rrq("missing-a.bin"), server.addr)
            b.send_rrq("missing-b.bin")  # A's port is closed: its refusal meets ICMP
            op, code, msg, addr = b.recv(2)
            assert (op, code, addr) == (OP_ERROR, 1, server.addr), (op, code, msg)
