"""Busy-polling in Engine.poll(spin_us): with the real clock, over loopback UDP. The test is
the client and stays silent (or sends before poll), so what each poll() does is decided by
the engine's rules, not by how fast this machine runs: spin only while lock-step transfers
run, give way to a watched fd or a single-port request, back off after spins that catch
nothing.
That a spin catches ACKs from a real client is shown in tests/integration/test_load.py."""
from __future__ import annotations

import os
import select
import socket

import pytest

from bootstorm._native import tftp as native

LOCAL = "127.0.0.1"
SPIN_MISSES_MAX, SPIN_SKIP = 4, 32  # tftp.pyx: spins in a row that catch nothing, then polls without
SPIN_US = 200  # short: a silent client makes every spin last this long


def udp(bind: bool = True) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if bind:
        s.bind((LOCAL, 0))
    s.setblocking(False)
    return s


def serve(engine, sock: int, fd: int, client: socket.socket, window: int = 1) -> None:
    """Start a transfer of the file fd to client on sock, and send its first window."""
    st = os.fstat(fd)
    engine.begin(engine.start(sock, fd, socket.inet_aton(LOCAL), client.getsockname()[1],
                              st.st_size, st.st_mtime_ns, 512, window, 5000, 30000))


@pytest.fixture
def file_fd(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(os.urandom(512 * 100))
    fd = os.open(path, os.O_RDONLY)
    yield fd
    os.close(fd)


@pytest.fixture
def rig(file_fd):
    """A real-clock engine serving one lock-step transfer to a silent client."""
    engine = native.Engine(4, lambda *a: None)
    client, server = udp(), udp()
    addr = server.getsockname()
    serve(engine, server.detach(), file_fd, client)  # the socket is the engine's now
    client.settimeout(2)
    assert native.parse_reply(client.recv(600))[:2] == (3, 1)  # DATA 1
    yield engine, client, addr
    engine.abort_all()
    client.close()


def test_no_spin_while_no_transfer_runs():
    engine = native.Engine(2, lambda *a: None)
    engine.poll(1000)
    assert engine.stats()["spins"] == 0


def test_no_spin_for_windowed_transfers(file_fd):
    """A window's ACK wakes the process once per window: not worth spinning for."""
    engine = native.Engine(4, lambda *a: None)
    client, server = udp(), udp()
    try:
        addr = server.getsockname()
        serve(engine, server.detach(), file_fd, client, window=4)
        client.sendto(native.build_ack(4), addr)  # the window's ACK wakes the process
        engine.poll(1000)
        assert engine.stats()["spins"] == 0
        assert engine.stats()["packets_in"] == 1
    finally:
        engine.abort_all()
        client.close()


def test_no_spin_when_a_wake_up_finds_several_datagrams(file_fd):
    """A storm: a wake-up that finds more than one ACK is paid for already."""
    engine = native.Engine(4, lambda *a: None)
    pairs = [(udp(), udp()) for _ in range(2)]
    try:
        for client, server in pairs:
            addr = server.getsockname()
            serve(engine, server.detach(), file_fd, client)
            client.sendto(native.build_ack(1), addr)
        engine.poll(1000)
        stats = engine.stats()
        assert (stats["packets_in"], stats["spins"]) == (2, 0), stats
    finally:
        engine.abort_all()
        for client, _server in pairs:
            client.close()


def test_no_spin_when_off(rig):
    engine, _client, _server = rig
    engine.poll(0)
    assert engine.stats()["spins"] == 0


def test_far_client_spins_then_backs_off(rig):
    """As the service calls it: an ACK wakes the process, poll() serves it and spins, and the
    next ACK (this client's) comes only after the spin. Reading the ACK that woke it is no
    catch; after SPIN_MISSES_MAX such spins the next SPIN_SKIP polls sleep at once."""
    engine, client, server = rig
    block = 1
    for polls, spins in ((SPIN_MISSES_MAX, SPIN_MISSES_MAX), (SPIN_SKIP, SPIN_MISSES_MAX),
                         (1, SPIN_MISSES_MAX + 1)):
        for _ in range(polls):
            client.sendto(native.build_ack(block), server)  # what wakes the process
            engine.poll(SPIN_US)
            block += 1
            assert native.parse_reply(client.recv(600))[:2] == (3, block)  # served all the same
        stats = engine.stats()
        assert (stats["spins"], stats["spin_hits"]) == (spins, 0), stats


def test_spin_gives_way_to_a_watched_fd(rig):
    engine, client, server = rig
    listener, other = udp(), udp()
    try:
        engine.watch(listener.fileno())
        other.sendto(b"\x00\x01f\x00octet\x00", listener.getsockname())  # a request waits
        select.select([listener], [], [], 2)
        # the engine's own fd stays quiet: uvloop wakes the listener's reader, not the engine
        assert select.select([engine.fileno()], [], [], 0)[0] == []
        client.sendto(native.build_ack(1), server)  # what wakes the engine
        engine.poll(1000)
        stats = engine.stats()
        assert (stats["spins"], stats["spin_yields"]) == (1, 1)
        assert listener.recv(600)  # left for its own reader
    finally:
        listener.close()
        other.close()


def test_spin_reads_what_is_ready_before_giving_way(rig):
    """An ACK and a watched fd ready together: the ACK is served (DATA 2), then the spin
    ends for the other fd."""
    engine, client, server = rig
    listener, other = udp(), udp()
    try:
        engine.watch(listener.fileno())
        client.sendto(native.build_ack(1), server)
        other.sendto(b"x", listener.getsockname())
        engine.poll(1000)
        assert native.parse_reply(client.recv(600))[:2] == (3, 2)
        assert engine.stats()["spin_yields"] == 1
    finally:
        listener.close()
        other.close()


def test_spin_gives_way_to_a_single_port_request(file_fd):
    """Single-port: requests arrive among the ACKs on the shared socket; one ends the spin
    so that the service admits it."""
    engine = native.Engine(4, lambda *a: None)
    shared = udp()
    shared.setsockopt(socket.IPPROTO_IP, 8, 1)  # IP_PKTINFO, as the listening socket has
    client, newcomer = udp(), udp()
    try:
        mine = os.dup(shared.fileno())
        engine.share(mine, requests=True)
        serve(engine, mine, file_fd, client)
        client.sendto(native.build_ack(1), shared.getsockname())
        newcomer.sendto(b"\x00\x01f\x00octet\x00", shared.getsockname())
        engine.poll(1000)
        assert engine.stats()["spin_yields"] == 1
        assert [r[1][1] for r in engine.take_requests()] == [newcomer.getsockname()[1]]
    finally:
        engine.abort_all()
        engine.close()
        for s in (shared, client, newcomer):
            s.close()


def test_watch_rejects_a_bad_fd():
    engine = native.Engine(1, lambda *a: None)
    with pytest.raises(OSError):
        engine.watch(-1)


def test_a_failed_constructor_closes_no_descriptor():
    """Engine(0) raises before its epoll sets exist: its clean-up must not close fd 0."""
    saved = os.dup(0)
    try:
        with pytest.raises(ValueError):
            native.Engine(0, lambda *a: None)
        os.fstat(0)  # EBADF if the engine closed it
    finally:
        os.dup2(saved, 0)
        os.close(saved)
