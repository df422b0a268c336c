"""Many transfers at once, clients that vanish, the transfer limit, and that every
transfer gives its file descriptors back."""
from __future__ import annotations

import os
import selectors
import signal
import socket
import time

import pytest

from tftp_harness import (HOST, OP_DATA, OP_ERROR, OP_OACK, RawClient, ack, atftp_get, curl_get,
                          make_file, rrq, sha256, parse)


class _Flow:
    __slots__ = ("sock", "options", "blksize", "window", "expected", "in_window", "buf",
                 "peer", "last_sent", "last_at", "done", "error", "retries")

    def __init__(self, options):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.setblocking(False)
        self.options = options
        self.blksize = 512
        self.window = 1
        self.expected = 1
        self.in_window = 0
        self.buf = bytearray()
        self.peer = None
        self.last_sent = None
        self.last_at = 0.0
        self.done = False
        self.error = None
        self.retries = 0


def run_many(server_addr, filename, options_list, max_seconds=45.0, rto=0.5):
    """Download `filename` once per entry of options_list, all at once, from one
    thread with a selector. Returns the flows (each .buf, .error, .done)."""
    sel = selectors.DefaultSelector()
    flows = []
    try:
        for options in options_list:
            f = _Flow(options)
            flows.append(f)
            sel.register(f.sock, selectors.EVENT_READ, f)
            f.last_sent = rrq(filename, "octet", options)
            f.sock.sendto(f.last_sent, server_addr)
            f.last_at = time.monotonic()
        pending = len(flows)
        deadline = time.monotonic() + max_seconds
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(0.05):
                f = key.data
                for _ in range(64):  # bounded drain per wakeup
                    try:
                        data, addr = f.sock.recvfrom(65536)
                    except BlockingIOError:
                        break
                    if f.done:
                        break
                    if f.peer is None:
                        f.peer = addr
                    elif addr != f.peer:
                        continue
                    op, num, payload = parse(data)
                    now = time.monotonic()
                    if op == OP_ERROR:
                        f.error = (num, payload)
                        f.done = True
                        pending -= 1
                        break
                    if op == OP_OACK:
                        if f.expected == 1:
                            f.blksize = int(payload.get("blksize", 512))
                            f.window = int(payload.get("windowsize", 1))
                            f.last_sent = ack(0)
                            f.sock.sendto(f.last_sent, f.peer)
                            f.last_at = now
                        continue
                    if op != OP_DATA:
                        continue
                    if num != f.expected & 0xFFFF:
                        if f.window > 1 and f.expected > 1:
                            f.last_sent = ack(f.expected - 1)
                            f.sock.sendto(f.last_sent, f.peer)
                            f.in_window = 0
                            f.last_at = now
                        continue
                    f.buf += payload
                    f.expected += 1
                    f.in_window += 1
                    last = len(payload) < f.blksize
                    if last or f.in_window >= f.window:
                        f.last_sent = ack(num)
                        f.sock.sendto(f.last_sent, f.peer)
                        f.in_window = 0
                        f.last_at = now
                    if last:
                        f.done = True
                        pending -= 1
                        break
            now = time.monotonic()
            for f in flows:  # the client's own retransmission timer
                if not f.done and now - f.last_at > rto:
                    f.retries += 1
                    f.sock.sendto(f.last_sent, f.peer or server_addr)
                    f.last_at = now
    finally:
        for f in flows:
            sel.unregister(f.sock)
            f.sock.close()
        sel.close()
    return flows


def test_500_concurrent_transfers(tftp_server, tmp_path):
    root = tmp_path / "root"
    data = make_file(root, "k40.bin", 40 * 1024 + 321)
    server = tftp_server(root)
    baseline = server.fd_count() + 1  # and the port lock-step transfers share, made by the first
    variants = [None, {"blksize": 1468}, {"blksize": 1468, "windowsize": 4},
                {"tsize": 0, "blksize": 8192, "windowsize": 2}]
    options = [variants[i % len(variants)] for i in range(500)]
    started = time.monotonic()
    flows = run_many(server.addr, "k40.bin", options, max_seconds=45)
    elapsed = time.monotonic() - started
    errors = [f.error for f in flows if f.error]
    assert not errors, errors[:5]
    unfinished = sum(not f.done for f in flows)
    assert unfinished == 0, f"{unfinished} of 500 transfers unfinished after {elapsed:.1f} s"
    want = sha256(data)
    bad = [i for i, f in enumerate(flows) if sha256(bytes(f.buf)) != want]
    assert not bad, f"{len(bad)} transfers with wrong content, e.g. {bad[:5]}"
    recs = server.wait_transfers(500, 10)
    assert len(recs) == 500
    assert {r["outcome"] for r in recs} == {"ok"}
    assert all(int(r["bytes"]) == len(data) for r in recs)
    # every transfer socket closed, the shared file fd released
    assert server.wait_fds(baseline, 5) == baseline


@pytest.mark.parametrize("stop_after", ["data1", "oack"])
def test_silent_client_abandoned(tftp_server, tmp_path, stop_after):
    root = tmp_path / "root"
    make_file(root, "f.bin", 50_000)
    server = tftp_server(root, "--give-up-timeout", "2", "--retransmit-timeout", "0.2")
    # a lock-step transfer holds no descriptor of its own: the 50 kB file is a snapshot in
    # memory and the port is the one all lock-step transfers share, made by the first
    baseline = server.fd_count() + 1
    with RawClient(server.addr) as c:
        started = time.monotonic()
        if stop_after == "oack":
            c.send_rrq("f.bin", options={"blksize": 1024})
            c.expect(OP_OACK, 2)
        else:
            c.send_rrq("f.bin")
            num, _ = c.expect(OP_DATA, 2)
            assert num == 1
        assert server.fd_count() == baseline
        # go silent; the server retransmits (0.2, 0.4, 0.8 s, ...) then gives up
        repeats = 0
        while time.monotonic() - started < 6 and not server.transfers():
            try:
                op, num, _, _ = c.recv(0.1)
                repeats += 1
            except socket.timeout:
                pass
        rec = server.wait_transfers(1, 6 - (time.monotonic() - started))
        gave_up = time.monotonic() - started
    assert rec and rec[0]["outcome"] == "timeout", rec
    assert 1.8 <= gave_up <= 5.0, gave_up
    assert int(rec[0]["retransmits"]) >= 2, rec
    assert repeats >= 2  # the retransmissions really went out
    assert server.wait_fds(baseline, 3) == baseline
    os.kill(server.pid, signal.SIGUSR1)  # and its slot is free
    stats = server.wait_events("tftp-stats", 1, 5)
    assert stats and (stats[0]["active"], stats[0]["transfers_failed"]) == ("0", "1"), stats


def test_max_transfers_limit(tftp_server, tmp_path):
    root = tmp_path / "root"
    data = make_file(root, "f.bin", 20_000)
    server = tftp_server(root, "--max-transfers", "2")
    a, b, c = (RawClient(server.addr) for _ in range(3))
    try:
        firsts = []
        for cl in (a, b):
            cl.send_rrq("f.bin")
            num, payload = cl.expect(OP_DATA, 2)
            assert num == 1
            firsts.append(payload)
        # two transfers running: the third is refused from the listening port
        c.send_rrq("f.bin")
        op, code, msg, addr = c.recv(2)
        assert (op, code) == (OP_ERROR, 0), (op, code, msg)
        assert addr == server.addr
        assert "busy" in msg
        # the two running transfers are unaffected
        got_a = a.download(first=(OP_DATA, 1, firsts[0]), max_seconds=20)
        got_b = b.download(first=(OP_DATA, 1, firsts[1]), max_seconds=20)
        assert sha256(got_a) == sha256(data)
        assert sha256(got_b) == sha256(data)
    finally:
        for cl in (a, b, c):
            cl.close()
    recs = server.wait_transfers(2, 5)
    assert [r["outcome"] for r in recs] == ["ok", "ok"]
    # once they are done, new requests are served again
    with RawClient(server.addr) as d:
        d.send_rrq("f.bin")
        assert sha256(d.download(max_seconds=20)) == sha256(data)


def test_fds_back_after_mixed_outcomes(tftp_server, tmp_path):
    """ok, refused, client error, tsize probe, netascii (memfd) and vanished-client
    transfers all give their descriptors back."""
    root = tmp_path / "root"
    data = make_file(root, "f.bin", 30_000)
    (root / "t.txt").write_bytes(b"a\nb\rc\n" * 1000)
    server = tftp_server(root)
    baseline = server.fd_count() + 1  # and the port lock-step transfers share, made by the first
    for _ in range(3):
        with RawClient(server.addr) as c:
            c.send_rrq("f.bin", options={"blksize": 1468})
            assert c.download(max_seconds=10) == data
        with RawClient(server.addr) as c:
            c.send_rrq("t.txt", mode="netascii")
            assert len(c.download(max_seconds=10)) == 6000 + 3000
        with RawClient(server.addr) as c:
            c.send_rrq("missing")
            assert c.recv(2)[0] == OP_ERROR
        with RawClient(server.addr) as c:
            c.send_rrq("f.bin", options={"tsize": 0})
            c.expect(OP_OACK, 2)
            c.send(b"\x00\x05\x00\x08abort\x00")
        with RawClient(server.addr) as c:
            c.send_rrq("f.bin")
            c.expect(OP_DATA, 2)
            c.send(b"\x00\x05\x00\x00bye\x00")
        with RawClient(server.addr) as c:  # closes its port after DATA 1: ICMP on the resend
            c.send_rrq("f.bin")
            c.expect(OP_DATA, 2)
    recs = server.wait_transfers(15, 8)
    assert sorted({r["outcome"] for r in recs}) == ["client-error", "ok", "tsize-probe", "unreachable"]
    assert server.wait_fds(baseline, 3) == baseline


@pytest.mark.parametrize("single_port", [False, True])
def test_two_workers_share_the_port(tftp_server, tmp_path, single_port):
    """--workers 2: SO_REUSEPORT spreads the requests over both processes (the kernel hashes
    the client's address and port); each worker's counters come on SIGUSR1. In single-port
    mode a client's ACKs hash to the worker that took its request, as its RRQ did."""
    root = tmp_path / "root"
    data = make_file(root, "k40.bin", 40 * 1024 + 321)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    server = tftp_server(root, "--workers", "2", "--tftp-port", str(port),
                         *(["--single-port"] if single_port else []))
    flows = run_many(server.addr, "k40.bin", [None, {"blksize": 1468, "windowsize": 4}] * 20,
                     max_seconds=30)
    assert [f.error for f in flows if f.error] == []
    assert all(f.done and bytes(f.buf) == data for f in flows)
    assert ({f.peer for f in flows} == {server.addr}) == single_port
    server.wait_transfers(40, 10)
    os.kill(server.pid, signal.SIGUSR1)  # the lead passes it on to the other worker
    stats = server.wait_events("tftp-stats", 2, 5)
    assert len(stats) == 2, server.snapshot()[-5:]
    served = sorted(int(s["transfers_ok"]) for s in stats)
    assert sum(served) == 40 and served[0] > 0, served  # 40 client ports: both workers got some


@pytest.mark.parametrize("client", ["curl", "atftp-w8"])
@pytest.mark.parametrize("spin_us", ["1000", "0"])
def test_busy_poll_catches_a_real_clients_acks(tftp_server, tmp_path, spin_us, client):
    """curl's lock-step ACKs over loopback come within a millisecond: a server that busy-polls
    for one finds some of them spinning (the counters SIGUSR1 logs) and serves the file
    byte-exact; with --busy-poll-us 0 it never spins, nor for atftp's windows of 8."""
    root = tmp_path / "root"
    data = make_file(root, "big.bin", 1_500_000)
    server = tftp_server(root, "--busy-poll-us", spin_us)
    out = tmp_path / "out"
    if client == "curl":
        result = curl_get(server.port, "big.bin", out, blksize=1468)
    else:
        result = atftp_get(server.port, "big.bin", out, blksize=1468, windowsize=8)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == data
    assert server.wait_transfers(1, 5)[0]["outcome"] == "ok"
    os.kill(server.pid, signal.SIGUSR1)
    stats = server.wait_events("tftp-stats", 1, 5)[0]
    if spin_us == "0" or client != "curl":
        assert (stats["spins"], stats["spin_hits"]) == ("0", "0"), stats
    else:
        assert int(stats["spins"]) > 0 and int(stats["spin_hits"]) > 0, stats
