"""The native transfer engine, driven with a fake clock over real loopback UDP sockets.

The test plays the client: it receives DATA on its own socket and sends ACKs/ERRORs to the
transfer's socket, then lets the engine read them (poll). Time only moves through
set_clock() + tick(), so retransmission and give-up behaviour is exact and fast.

The `rig` fixture runs each test twice: lock-step transfers on their own connected sockets,
and on one socket shared by all of them (Engine.share, as the server runs them).
"""
from __future__ import annotations

import errno
import gc
import os
import select
import socket
import struct
import sys
import time

import pytest

from bootstorm._native import tftp as native

LOCAL = "127.0.0.1"
DATA, ACK, ERROR, OACK = 3, 4, 5, 6
TICK = 10  # the engine's timer wheel resolution (ms)
IP_RECVERR = 11  # <linux/in.h>: a shared socket learns of closed client ports by its error queue


def big_rcvbuf(sock: socket.socket):
    try:
        sock.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE (root)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)


def port_is_free(port: int) -> bool:
    """Whether nothing is bound to 127.0.0.1:port any more (the engine closed it)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((LOCAL, port))
    except OSError as exc:
        assert exc.errno == errno.EADDRINUSE
        return False
    finally:
        s.close()
    return True


class Peer:
    """A UDP socket on loopback that the engine sends to. Every datagram the engine
    counts in packets_out is waited for (Rig.collect), so "nothing arrived" checks do
    not depend on how fast the kernel delivers on a loaded machine."""

    def __init__(self, rig: Rig, server=None, port: int = 0):
        self.rig = rig
        self.server = server
        self.queue: list[tuple[bytes, tuple]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        big_rcvbuf(self.sock)
        self.sock.bind((LOCAL, port))
        self.port = self.sock.getsockname()[1]
        rig.peers.append(self)

    def close(self):
        self.sock.close()

    def _take(self, data: bytes, src) -> bytes:
        if self.server is not None:
            assert src == self.server, "datagrams come from the transfer's own port (its TID)"
        return data

    def drain(self) -> int:
        """Move what the kernel holds into the queue, without waiting."""
        n = 0
        self.sock.setblocking(False)
        try:
            while True:
                self.queue.append(self.sock.recvfrom(70000))
                n += 1
        except BlockingIOError:
            pass
        self.rig.received += n
        return n

    def recv_raw(self, timeout: float = 1.0) -> bytes:
        if not self.queue:
            self.sock.settimeout(timeout)
            self.queue.append(self.sock.recvfrom(70000))
            self.rig.received += 1
        return self._take(*self.queue.pop(0))

    def recv(self, timeout: float = 1.0):
        return native.parse_reply(self.recv_raw(timeout))

    def pending(self) -> list[bytes]:
        """Every datagram the engine has sent to this peer so far and not yet read."""
        self.rig.collect()
        out = [self._take(d, src) for d, src in self.queue]
        self.queue.clear()
        return out

    def nothing(self):
        assert self.pending() == []


class Client(Peer):
    """The peer of one transfer: lock-step ones go on the rig's shared socket if it has
    one (or on `via`, another shared socket), the others on a socket of their own."""

    def __init__(self, rig: Rig, path, content: bytes, blksize: int, window: int, rto: int,
                 give_up: int, oack: bytes | None, size: int | None, mtime_ns: int | None,
                 early: list[tuple[Peer, bytes]], snapshot: bool, port: int = 0,
                 via: tuple[int, tuple] | None = None):
        super().__init__(rig, port=port)
        self.path = path
        self.content = content
        self.blksize = blksize
        path.write_bytes(content)
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        st = os.fstat(self.fd)
        server = None
        if via is None and rig.shared_fd is not None and (window == 1 or rig.share_windows):
            via = rig.shared_fd, rig.shared_addr
        if via is not None:
            sock, self.server = via  # nothing to connect: it sends to each peer by address
        else:
            server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            server.bind((LOCAL, 0))
            server.setblocking(False)
            sock, self.server = server.fileno(), server.getsockname()
        self.shared = server is None
        self.sock_fd = sock  # the transfer's socket, the engine's from here on
        for peer, pkt in early:  # queued on the bound socket before the engine connects it
            peer.sock.sendto(pkt, self.server)
        try:
            self.slot = rig.engine.start(
                sock, self.fd, socket.inet_aton(LOCAL), self.port,
                st.st_size if size is None else size,
                st.st_mtime_ns if mtime_ns is None else mtime_ns,
                blksize, window, rto, give_up, oack, content if snapshot else None)
        except BaseException:
            if server is not None:
                server.close()
            raise
        if server is not None:
            server.detach()  # the engine owns and closes it

    def close(self):
        super().close()
        os.close(self.fd)

    def data(self, block: int, timeout: float = 1.0) -> bytes:
        """Expect DATA with the given wire block number; return its payload."""
        op, num, payload = self.recv(timeout)
        assert (op, num) == (DATA, block & 0xffff)
        return payload

    def blocks(self, count: int) -> list[int]:
        got = []
        for _ in range(count):
            op, num, _ = self.recv()
            assert op == DATA
            got.append(num)
        return got

    # -- sending

    def send(self, pkt: bytes):
        self.sock.sendto(pkt, self.server)
        self.rig.pump()

    def ack(self, block: int):
        self.send(native.build_ack(block))

    def error(self, code: int, msg: str = "client gives up"):
        self.send(native.build_error(code, msg))

    def expected(self, block: int) -> bytes:
        return self.content[(block - 1) * self.blksize:block * self.blksize]


class Rig:
    def __init__(self, tmp_path, capacity: int = 4, gso=None, shared: bool | str = False):
        self.tmp_path = tmp_path
        self.done: list[tuple] = []
        self.engine = native.Engine(capacity, self.on_done, fake_clock=True, gso=gso)
        self.clients: list[Client] = []
        self.peers: list[Peer] = []
        self.received = 0  # datagrams the peers have taken from the kernel
        self.now = 0
        self.hook = None  # called from on_done, like the service's callback
        self.shared_fd = self.shared_addr = None  # the socket lock-step transfers share
        self.share_windows = shared == "single"  # windowed ones too (single-port mode)
        if shared:
            self.shared_fd, self.shared_addr = self.share()

    def share(self) -> tuple[int, tuple]:
        """Give the engine a socket to share, made as the server makes one per local
        address; returns its descriptor (now the engine's) and address."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            big_rcvbuf(s)
            s.bind((LOCAL, 0))
            s.setblocking(False)
            s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            self.engine.share(s.fileno())
        except BaseException:
            s.close()
            raise
        addr = s.getsockname()
        return s.detach(), addr

    def let_go(self, c: Client) -> bool:
        """Whether the engine did with an ended transfer's socket what it should: its own
        one is closed (the port is free); a shared one stays open for the others."""
        return port_is_free(c.server[1]) != c.shared

    def on_done(self, *args):
        self.done.append(args)
        if self.hook is not None:
            self.hook(*args)

    def transfer(self, content: bytes, *, blksize=512, window=1, rto=100, give_up=1000,
                 oack=None, begin=True, size=None, mtime_ns=None, early=(),
                 snapshot=False, port=0, via=None) -> Client:
        path = self.tmp_path / f"file{len(self.clients)}"
        c = Client(self, path, content, blksize, window, rto, give_up, oack, size, mtime_ns,
                   list(early), snapshot, port, via)
        self.clients.append(c)
        if begin:
            self.engine.begin(c.slot)
        return c

    def collect(self, timeout: float = 2.0):
        """Wait until every datagram the engine sent has reached its peer's queue."""
        end = time.monotonic() + timeout
        while self.received < self.engine.packets_out:
            left = end - time.monotonic()
            ready, _, _ = select.select([p.sock for p in self.peers], [], [], max(left, 0))
            if not ready:
                raise AssertionError(f"{self.engine.packets_out - self.received} datagrams "
                                     "sent by the engine never arrived")
            for p in self.peers:
                if p.sock in ready:
                    p.drain()

    def lost(self):
        """Take what arrived and write off the rest (a client's socket buffer overflowed)."""
        for p in self.peers:
            p.drain()
            p.queue.clear()
        self.received = self.engine.packets_out

    def pump(self):
        """Let the engine read what the clients sent (bounded wait)."""
        select.select([self.engine.fileno()], [], [], 1.0)
        self.engine.poll()

    def pump_until(self, timeout: float = 2.0, **counts: int):
        """Poll until the engine's counters reach these values (packets_out=n, ...): what
        the clients sent may take more than one wake-up to reach it."""
        end = time.monotonic() + timeout
        while short := {k: v for k, v in counts.items() if getattr(self.engine, k) < v}:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"counters never reached {short}: "
                                     f"{ {k: getattr(self.engine, k) for k in short} }")
            select.select([self.engine.fileno()], [], [], left)
            self.engine.poll()

    def at(self, ms: int):
        """Move the fake clock to ms and expire the timers."""
        assert ms >= self.now
        self.now = ms
        self.engine.set_clock(ms)
        self.engine.tick()

    def step_until(self, ms: int, client: Client):
        """Tick every TICK ms up to ms; return [(time, datagram)] the client got."""
        seen = []
        t = self.now
        while t < ms:
            t += TICK
            self.at(t)
            seen += [(t, d) for d in client.pending()]
        return seen

    def close(self):
        if self.engine is not None:
            self.engine.abort_all()
        for p in self.peers:
            p.close()


@pytest.fixture(params=["own", "shared", "single"])
def rig(request, tmp_path):
    """Lock-step transfers on their own sockets, then on a shared one; then every transfer,
    windowed ones too, on a shared one (as in single-port mode)."""
    r = Rig(tmp_path, shared={"own": False, "shared": True, "single": "single"}[request.param])
    yield r
    r.close()


@pytest.fixture
def own_rig(tmp_path):
    """For what only a transfer's own, connected socket does."""
    r = Rig(tmp_path)
    yield r
    r.close()


@pytest.fixture
def make_rig(tmp_path):
    rigs = []

    def make(**kw):
        r = Rig(tmp_path, **kw)
        rigs.append(r)
        return r
    yield make
    for r in rigs:
        r.close()


def lockstep(c: Client, first: int = 1) -> bytes:
    """A RFC 1350 client: ACK every block until the short one."""
    out = bytearray()
    block = first
    while True:
        payload = c.data(block)
        out += payload
        c.ack(block)
        if len(payload) < c.blksize:
            return bytes(out)
        block += 1


def windowed(c: Client, window: int, wire_log: list | None = None, *, first: int = 0,
             windows: int = -1) -> bytes:
    """A RFC 7440 client: ACK the last block of each window (or the short one).
    first: the block acknowledged already; windows: how many windows to take (-1: all)."""
    out = bytearray()
    block = first
    while windows != 0:
        windows -= 1
        short = False
        for _ in range(window):
            op, num, payload = c.recv()
            assert op == DATA and num == (block + 1) & 0xffff, (num, block + 1)
            if wire_log is not None:
                wire_log.append(num)
            block += 1
            out += payload
            if len(payload) < c.blksize:
                short = True
                break
        c.ack(block)
        if short:
            return bytes(out)
    return bytes(out)


# ---------------------------------------------------------------- construction and API

def test_engine_constructor_and_api_errors(tmp_path):
    with pytest.raises(ValueError):
        native.Engine(0, print, fake_clock=True)
    real = native.Engine(1, print)
    with pytest.raises(RuntimeError):
        real.set_clock(5)
    e = native.Engine(2, print, fake_clock=True)
    assert e.active == 0 and isinstance(e.fileno(), int)
    with pytest.raises(ValueError):
        e.begin(0)
    with pytest.raises(ValueError):
        e.begin(-1)
    with pytest.raises(ValueError):
        e.begin(2)
    e.abort(0)  # nothing to abort: no callback, no error
    e.abort(99)
    s = e.stats()
    assert s["active"] == 0 and s["retransmits"] == 0 and s["packets_out"] == 0


@pytest.mark.parametrize("kw, exc", [
    (dict(peer=b"\x7f\x00\x00"), ValueError),
    (dict(blksize=7), ValueError),
    (dict(blksize=65465), ValueError),
    (dict(window=0), ValueError),
    (dict(window=65536), ValueError),
    (dict(oack=b"\x00\x06" + b"x" * 200), ValueError),
    (dict(sock=-1), OSError),
])
def test_start_rejects_bad_arguments(tmp_path, kw, exc):
    e = native.Engine(1, print, fake_clock=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        args = dict(sock=sock.fileno(), peer=socket.inet_aton(LOCAL), blksize=512, window=1,
                    oack=None)
        args.update(kw)
        with pytest.raises(exc):
            e.start(args["sock"], fd, args["peer"], 9, 10, 0, args["blksize"], args["window"],
                    100, 1000, args["oack"])
        assert e.active == 0
    finally:
        sock.close()
        os.close(fd)


@pytest.mark.parametrize("shared", [False, True])
def test_table_full(make_rig, shared):
    r = make_rig(capacity=1, shared=shared)
    r.transfer(b"x" * 10, begin=False)
    with pytest.raises(RuntimeError):
        r.transfer(b"y" * 10, begin=False)
    assert r.engine.active == 1


# ---------------------------------------------------------------- lock-step transfers

@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, 1024, 5000])
def test_lockstep_transfer_byte_exact(rig, size):
    content = os.urandom(size)
    c = rig.transfer(content)
    assert rig.engine.active == 1
    assert lockstep(c) == content
    c.nothing()
    assert rig.done == [(c.slot, "ok", 0, size, 0, 0)]
    assert rig.engine.active == 0
    assert rig.let_go(c)
    s = rig.engine.stats()
    blocks = size // 512 + 1
    assert s["transfers_ok"] == 1 and s["transfers_failed"] == 0 and s["retransmits"] == 0
    assert s["packets_out"] == blocks and s["packets_in"] == blocks
    assert s["bytes_out"] == size


def test_elapsed_ms_from_the_fake_clock(rig):
    rig.at(1000)
    c = rig.transfer(b"abc")
    assert c.data(1) == b"abc"
    rig.at(1030)
    c.ack(1)
    assert rig.done == [(c.slot, "ok", 0, 3, 0, 30)]


def test_small_blksize(rig):
    content = os.urandom(8 * 20 + 5)
    c = rig.transfer(content, blksize=8)
    assert lockstep(c) == content


def test_data_lost_is_retransmitted_on_timeout(rig):
    content = os.urandom(1500)
    c = rig.transfer(content, rto=100)
    assert c.data(1) == c.expected(1)
    c.ack(1)
    c.data(2)  # lost: the client never sees it
    rig.at(90)
    c.nothing()
    rig.at(100)
    assert c.data(2) == c.expected(2)
    c.nothing()
    assert rig.engine.stats()["retransmits"] == 1
    c.ack(2)
    assert c.data(3) == c.expected(3)
    c.ack(3)
    assert rig.done == [(c.slot, "ok", 0, 1500, 1, 100)]


def test_ack_lost_is_the_same_for_the_server(rig):
    content = os.urandom(700)
    c = rig.transfer(content)
    assert c.data(1) == c.expected(1)
    # the client's ACK 1 is lost: the server resends DATA 1, the client ACKs again
    rig.at(100)
    assert c.data(1) == c.expected(1)
    c.ack(1)
    assert c.data(2) == c.expected(2)
    c.ack(2)
    assert rig.done[0][1:] == ("ok", 0, 700, 1, 100)


def test_duplicate_ack_sends_nothing_sorcerers_apprentice(rig):
    c = rig.transfer(os.urandom(3000))
    c.data(1)
    c.ack(1)
    c.data(2)
    out = rig.engine.stats()["packets_out"]
    for _ in range(3):
        c.ack(1)  # duplicates (e.g. the client's own retransmissions)
    c.nothing()
    assert rig.engine.stats()["packets_out"] == out
    # the timer is not restarted into a burst either: one retransmission of DATA 2
    rig.at(100)
    assert c.data(2)
    c.nothing()
    c.ack(2)
    c.data(3)
    c.nothing()


def test_stale_ack_is_ignored(rig):
    c = rig.transfer(os.urandom(3000))
    for b in (1, 2, 3):
        c.data(b)
        c.ack(b)
    c.data(4)
    for stale in (0, 1, 2):
        c.ack(stale)
    c.nothing()
    assert rig.engine.active == 1
    # an ACK beyond what was sent is ignored too
    c.ack(9)
    c.nothing()
    c.ack(4)
    c.data(5)


def test_malformed_and_unexpected_datagrams_from_the_peer(rig):
    c = rig.transfer(os.urandom(1000))
    c.data(1)
    for pkt in (b"", b"\x00", b"\x00\x04\x00", b"\x00\x03\x00\x01data", b"\x00\x01f\x00octet\x00",
                b"\x00\x09\x00\x00", b"\x00\x04" + b"\x00" * 3000):  # last: cut by any receive buffer
        c.send(pkt)
    c.nothing()
    assert rig.engine.stats()["malformed"] == 7
    assert rig.engine.active == 1
    c.ack(1)
    c.data(2)


def test_datagram_from_another_port_gets_error_5_or_nothing(own_rig):
    """(On a shared socket: test_shared_stranger_is_dropped_silently.)"""
    rig = own_rig
    content = os.urandom(1200)
    stranger = Peer(rig)
    # queued before the engine connected the socket: ERROR 5, and an ERROR from a
    # stranger does not end the transfer either
    c = rig.transfer(content, early=[(stranger, native.build_ack(1)),
                                     (stranger, native.build_error(0, "go away"))])
    c.data(1)
    rig.pump()
    rig.pump()  # one datagram per socket and wake-up: the second one is the next wake-up's
    assert stranger.recv() == (ERROR, 5, "Unknown transfer ID")
    assert stranger.recv()[:2] == (ERROR, 5)
    # once connected, the kernel refuses strangers (ICMP): the engine never sees them
    stranger.sock.sendto(native.build_ack(1), c.server)
    rig.pump()
    stranger.nothing()
    c.nothing()  # the stranger's ACK 1 did not advance the transfer
    assert rig.engine.stats()["strangers"] == 2
    assert rig.engine.stats()["packets_in"] == 2
    assert rig.engine.active == 1
    c.ack(1)
    assert c.data(2) == c.expected(2)
    c.ack(2)
    assert c.data(3) == c.expected(3)
    c.ack(3)
    assert rig.done[0][1] == "ok"


# ---------------------------------------------------------------- windows (RFC 7440)

@pytest.mark.parametrize("gso", [False, pytest.param(True, marks=pytest.mark.skipif(
    not native.have_gso() and not os.environ.get("CI"), reason="no UDP GSO (runs, and fails, under CI)"))])
@pytest.mark.parametrize("size", [0, 100, 512 * 4, 512 * 4 + 1, 512 * 37 + 100])
@pytest.mark.parametrize("snapshot", [False, True])
@pytest.mark.parametrize("shared", [False, "single"])
def test_windowed_transfer_byte_exact(make_rig, gso, size, snapshot, shared):
    r = make_rig(gso=gso, shared=shared)
    content = os.urandom(size)
    c = r.transfer(content, window=4, snapshot=snapshot)
    assert windowed(c, 4) == content
    c.nothing()
    assert r.done == [(c.slot, "ok", 0, size, 0, 0)]
    assert r.engine.stats()["retransmits"] == 0


@pytest.mark.parametrize("gso", [False, pytest.param(True, marks=pytest.mark.skipif(
    not native.have_gso() and not os.environ.get("CI"), reason="no UDP GSO (runs, and fails, under CI)"))])
@pytest.mark.parametrize("snapshot", [False, True])
@pytest.mark.parametrize("shared", [False, "single"])
def test_big_window_spans_several_send_batches(make_rig, gso, snapshot, shared):
    # 200 blocks in one window: more than the 64 segments of one sendmmsg/GSO batch
    r = make_rig(gso=gso, shared=shared)
    content = os.urandom(1024 * 450 + 3)
    c = r.transfer(content, blksize=1024, window=200, snapshot=snapshot)
    assert windowed(c, 200) == content
    assert r.done[0][1:4] == ("ok", 0, len(content))


def test_window_end_ack_sends_next_window(rig):
    content = os.urandom(512 * 10)
    c = rig.transfer(content, window=4)
    assert [c.data(b) for b in (1, 2, 3, 4)] == [c.expected(b) for b in (1, 2, 3, 4)]
    c.nothing()
    c.ack(4)
    assert c.blocks(4) == [5, 6, 7, 8]
    c.nothing()
    c.ack(8)
    assert c.blocks(3) == [9, 10, 11]  # 11 is the empty final block
    c.nothing()
    c.ack(11)
    assert rig.done == [(c.slot, "ok", 0, 5120, 0, 0)]


def test_gap_in_window_resends_from_the_block_after_the_ack(rig):
    content = os.urandom(512 * 12)
    c = rig.transfer(content, window=4)
    assert c.blocks(4) == [1, 2, 3, 4]
    c.ack(2)  # the client missed 3: it acknowledges what it has in order
    got = [c.recv() for _ in range(4)]
    assert [(op, n) for op, n, _ in got] == [(DATA, 3), (DATA, 4), (DATA, 5), (DATA, 6)]
    assert [p for _, _, p in got] == [c.expected(b) for b in (3, 4, 5, 6)]
    c.nothing()
    assert rig.engine.stats()["retransmits"] == 2  # 3 and 4 again
    c.ack(6)
    assert c.blocks(4) == [7, 8, 9, 10]


def test_window_timeout_resends_the_whole_window(rig):
    c = rig.transfer(os.urandom(512 * 12), window=4, rto=100)
    assert c.blocks(4) == [1, 2, 3, 4]
    rig.at(100)
    assert c.blocks(4) == [1, 2, 3, 4]
    c.nothing()
    assert rig.engine.stats()["retransmits"] == 4
    c.ack(4)
    assert c.blocks(4) == [5, 6, 7, 8]


def test_window_capped_at_the_last_block(rig):
    c = rig.transfer(os.urandom(600), window=8)
    assert c.blocks(2) == [1, 2]
    c.nothing()
    c.ack(2)
    assert rig.done[0][1:4] == ("ok", 0, 600)


def test_rollover_block_numbers_wrap_65535_to_0(make_rig):
    r = make_rig(gso=False)
    blksize, window = 8, 48  # 65535 falls inside a window
    content = os.urandom(blksize * 65600 + 5)
    c = r.transfer(content, blksize=blksize, window=window)
    wire = []
    assert windowed(c, window, wire) == content
    assert len(wire) == 65601
    i = wire.index(65535)
    assert i == 65534
    assert wire[i - 1:i + 4] == [65534, 65535, 0, 1, 2]
    assert wire[-1] == 65601 - 65536
    assert r.done == [(c.slot, "ok", 0, len(content), 0, 0)]


def test_rollover_retransmit_and_gap_ack_across_the_wrap(make_rig):
    r = make_rig(gso=False)
    blksize, window = 8, 48
    content = os.urandom(blksize * 65600 + 5)
    c = r.transfer(content, blksize=blksize, window=window)
    out = bytearray(windowed(c, window, windows=1365))  # acked up to 65520
    # the window 65521..65568 (wire 65521..65535, 0..32) is lost once
    assert c.blocks(window) == [b & 0xffff for b in range(65521, 65569)]
    r.at(100)
    got = [c.recv() for _ in range(window)]
    assert [n for _, n, _ in got] == [b & 0xffff for b in range(65521, 65569)]
    assert b"".join(p for _, _, p in got) == content[65520 * 8:65568 * 8]
    # the client has everything up to wire 0 (absolute 65536): ACK 0 mid-window
    out += b"".join(p for _, _, p in got[:16])
    c.ack(0)
    assert c.blocks(window) == [b & 0xffff for b in range(65537, 65537 + window)]
    c.ack(0)  # a duplicate ACK 0 after the wrap: nothing (and not 65536 blocks ahead)
    c.nothing()
    r.at(300)  # that window lost too: resent from 65537 (300: see the backed-off timer test)
    out += windowed(c, window, first=65536)
    assert bytes(out) == content
    assert r.done == [(c.slot, "ok", 0, len(content), 48 + 32 + 48, 300)]


# ---------------------------------------------------------------- timers

def test_exponential_backoff_then_give_up(rig):
    c = rig.transfer(os.urandom(2000), rto=100, give_up=2000)
    c.data(1)
    seen = rig.step_until(5000, c)
    times = [t for t, _ in seen]
    assert [native.parse_reply(d)[:2] for _, d in seen] == [(DATA, 1)] * len(seen)
    # 1x, 2x, 4x, 8x the rto between retransmissions
    assert times[:4] == [100, 300, 700, 1500]
    assert len(rig.done) == 1
    slot, outcome, code, nbytes, retransmits, elapsed = rig.done[0]
    assert (slot, outcome, code, nbytes) == (c.slot, "timeout", 0, 0)
    assert retransmits == len(seen) == 4
    # abandoned exactly when give_up passes without progress, not at a later backoff
    assert elapsed == 2000
    assert rig.engine.active == 0
    assert rig.let_go(c)
    assert rig.engine.stats()["transfers_failed"] == 1
    c.nothing()  # a timed-out transfer sends no ERROR


def test_last_block_never_acknowledged_is_told_apart(rig):
    """Every block sent and all but the last acknowledged: the client most likely has the
    file (its last ACK was lost, or it never sends one; dnsmasq logs such a transfer as
    sent). It still ends as a failure, but its outcome says which kind, unlike a client
    that went silent midway."""
    c = rig.transfer(os.urandom(1500), rto=100, give_up=500)  # 3 blocks of 512
    for block in (1, 2):
        c.data(block)
        c.ack(block)
    c.data(3)
    rig.step_until(2000, c)
    assert [d[:4] for d in rig.done] == [(c.slot, "last-unacked", 0, 1024)]
    assert rig.engine.stats()["transfers_failed"] == 1 and rig.let_go(c)


def test_silent_before_the_last_block_is_a_timeout(rig):
    c = rig.transfer(os.urandom(1500), rto=100, give_up=500)
    c.data(1)
    c.ack(1)
    c.data(2)
    rig.step_until(2000, c)
    assert [d[:4] for d in rig.done] == [(c.slot, "timeout", 0, 512)]


def test_last_block_unacknowledged_then_port_closed(rig):
    """The client took the last block and went (its ACK lost): the resend meets ICMP port
    unreachable, and the outcome says the last block was the only one outstanding."""
    c = rig.transfer(os.urandom(1500), rto=100)
    for block in (1, 2):
        c.data(block)
        c.ack(block)
    c.data(3)
    _client_gone(rig, c)
    rig.at(rig.now + 100)
    rig.received = rig.engine.packets_out
    rig.pump()
    assert [d[:4] for d in rig.done] == [(c.slot, "last-unacked", 0, 1024)]


def test_windowed_last_window_unacknowledged_is_a_timeout(rig):
    """In a window the client may lack any of its blocks: only lock-step's last block is
    told apart."""
    c = rig.transfer(os.urandom(512 * 6), window=4, rto=100, give_up=500)
    assert c.blocks(4) == [1, 2, 3, 4]
    c.ack(4)
    assert c.blocks(2) == [5, 6]
    rig.step_until(2000, c)
    assert [d[:4] for d in rig.done] == [(c.slot, "timeout", 0, 2048)]


@pytest.mark.parametrize("window", [1, 4])
def test_blocks_that_never_left_count_as_unsent(own_rig, window):
    """A failed send is loss to the engine, and what it failed to send counts as not sent:
    an ACK for such a block is no progress, and its first sending later is no
    retransmission. The socket shut for writing fails every send (EPIPE)."""
    c = own_rig.transfer(os.urandom(512 * 8), window=window, rto=100, give_up=300, begin=False)
    s = socket.socket(fileno=os.dup(c.sock_fd))
    s.shutdown(socket.SHUT_WR)
    s.close()
    own_rig.engine.begin(c.slot)
    assert own_rig.engine.stats()["send_errors"] == 1
    c.ack(window)  # the end of a window that never left
    own_rig.step_until(2000, c)
    assert [d[:5] for d in own_rig.done] == [(c.slot, "timeout", 0, 0, 0)]
    stats = own_rig.engine.stats()
    assert stats["retransmits"] == 0 and stats["send_errors"] >= 2 and stats["packets_out"] == 0


def test_backoff_capped_at_8_s(rig):
    c = rig.transfer(os.urandom(100), rto=1000, give_up=60000)
    c.data(1)
    seen = rig.step_until(40000, c)
    times = [t for t, _ in seen]
    assert times == [1000, 3000, 7000, 15000, 23000, 31000, 39000]


def test_progress_resets_backoff_and_give_up(rig):
    c = rig.transfer(os.urandom(2000), rto=100, give_up=900)
    c.data(1)
    assert [t for t, _ in rig.step_until(290, c)] == [100]  # next timer: 300
    c.ack(1)  # at 290: progress; DATA 2 due again at 390 (after the old timer at 300)
    c.data(2)
    # back to 1x rto, doubling again; give-up counts from the progress at 290, so the
    # timeout at 990 (990 ms after the start) still retransmits, and at 1190 it gives up
    assert [t for t, _ in rig.step_until(1180, c)] == [390, 590, 990]
    assert rig.done == []
    rig.at(1190)
    assert rig.done == [(c.slot, "timeout", 0, 512, 4, 1190)]




def test_deadline_earlier_than_the_backed_off_timer_still_fires(rig):
    """After backoff the rto is 4x; progress resets it to 1x. The retransmission of the
    next block must come 1x rto after it was sent, not when the old, backed-off timer
    would have fired."""
    c = rig.transfer(os.urandom(2000), rto=100, give_up=5000)
    c.data(1)
    assert [t for t, _ in rig.step_until(310, c)] == [100, 300]  # next timer: 700
    c.ack(1)  # at 310: rto back to 100, DATA 2 sent, due again at 410
    c.data(2)
    seen = rig.step_until(700, c)
    assert seen and seen[0][0] == 410, [t for t, _ in seen]


def test_large_initial_rto_is_not_shortened_by_the_backoff_cap(rig):
    """RFC 2349 timeout up to 255 s: the backoff must not bring a 20 s rto down to 8 s."""
    c = rig.transfer(os.urandom(100), rto=20000, give_up=100000)
    c.data(1)
    times = [t for t, _ in rig.step_until(45000, c)]
    assert times[0] == 20000
    assert times[1] - times[0] >= 20000, times  # not [20000, 28000, 36000, 44000]


def test_timer_wheel_rotation_long_rto(rig):
    # 7 s is more than one rotation of the 5.12 s wheel
    c = rig.transfer(b"z" * 10, rto=7000, give_up=100000)
    c.data(1)
    assert [t for t, _ in rig.step_until(6990, c)] == []
    assert rig.step_until(7000, c) and rig.engine.stats()["retransmits"] == 1


def test_clock_jump_beyond_a_wheel_rotation(rig):
    c = rig.transfer(b"z" * 10, rto=100, give_up=100000)
    c.data(1)
    rig.at(60000)  # a stall of a minute: one catch-up, one retransmission
    assert c.data(1) == b"z" * 10
    c.nothing()
    rig.at(60190)
    c.nothing()
    rig.at(60200)
    c.data(1)


# ---------------------------------------------------------------- OACK (RFC 2347)

def test_oack_then_ack_0_then_data(rig):
    content = os.urandom(3000)
    _, window, _, oack = native.negotiate({"blksize": "1024", "tsize": "0"}, len(content))
    c = rig.transfer(content, blksize=1024, oack=oack)
    assert c.recv_raw() == oack == b"\x00\x06blksize\x001024\x00tsize\x003000\x00"
    c.nothing()
    c.ack(0)
    assert lockstep(c) == content
    assert rig.done == [(c.slot, "ok", 0, 3000, 0, 0)]


def _client_gone(rig, c):
    """The client closes its port (it gave up, or its machine rebooted)."""
    rig.peers.remove(c)
    c.sock.close()


def test_closed_client_port_ends_the_transfer_at_once(rig):
    c = rig.transfer(os.urandom(1500), rto=100)
    c.data(1)
    _client_gone(rig, c)
    rig.at(100)  # the retransmission meets ICMP port unreachable: on the connected socket,
    # or in the error queue of the shared one
    rig.received = rig.engine.packets_out  # that datagram reached nobody
    rig.pump()
    assert rig.done == [(c.slot, "unreachable", 0, 0, 1, 100)]  # not 30 s of backoff later
    assert rig.engine.active == 0
    assert rig.let_go(c)
    rig.at(1000)  # no timer left behind


def test_closed_client_port_noticed_by_the_next_send(own_rig):
    """(On a shared socket: test_shared_closed_client_port_is_read_from_the_error_queue.)"""
    rig = own_rig
    oack = b"\x00\x06tsize\x00100\x00"
    c = rig.transfer(b"q" * 100, oack=oack, rto=100)
    assert c.recv_raw() == oack
    _client_gone(rig, c)
    rig.at(100)  # resent; the ICMP error waits on the socket, unread
    rig.received = rig.engine.packets_out
    rig.at(300)  # the next send reports it
    assert rig.done == [(c.slot, "unreachable", 0, 0, 1, 300)]
    assert rig.let_go(c)


def test_oack_lost_is_resent_on_timeout(rig):
    oack = b"\x00\x06tsize\x00100\x00"
    c = rig.transfer(b"q" * 100, oack=oack, rto=100)
    assert c.recv_raw() == oack  # lost
    rig.at(100)
    assert c.recv_raw() == oack
    c.nothing()
    assert rig.engine.stats()["retransmits"] == 1
    rig.at(300)
    assert c.recv_raw() == oack
    c.ack(0)
    assert c.data(1) == b"q" * 100
    c.ack(1)
    assert rig.done == [(c.slot, "ok", 0, 100, 2, 300)]


def test_oack_nonzero_ack_is_ignored(rig):
    c = rig.transfer(b"q" * 100, oack=b"\x00\x06tsize\x00100\x00")
    c.recv_raw()
    c.ack(1)
    c.nothing()
    assert rig.engine.stats()["malformed"] == 1
    c.ack(0)
    c.data(1)
    c.ack(0)  # a duplicate ACK 0 once sending: nothing
    c.nothing()


def test_oack_with_window(rig):
    content = os.urandom(512 * 9)
    c = rig.transfer(content, window=4, oack=b"\x00\x06windowsize\x004\x00")
    c.recv_raw()
    c.ack(0)
    assert windowed(c, 4) == content


def test_oack_given_up(rig):
    c = rig.transfer(b"q", oack=b"\x00\x06tsize\x001\x00", rto=100, give_up=250)
    assert c.recv_raw()[:2] == b"\x00\x06"
    seen = rig.step_until(1000, c)
    assert [t for t, _ in seen] == [100]  # resent at 100; given up at 250
    assert rig.done == [(c.slot, "timeout", 0, 0, 1, 250)]


def test_error_8_after_oack_is_a_tsize_probe(rig):
    c = rig.transfer(b"q" * 100, oack=b"\x00\x06tsize\x00100\x00")
    c.recv_raw()
    c.error(8, "tsize only")
    assert rig.done == [(c.slot, "tsize-probe", 8, 0, 0, 0)]
    assert rig.engine.active == 0
    s = rig.engine.stats()
    assert s["transfers_ok"] == 1 and s["transfers_failed"] == 0
    c.nothing()  # no answer to an ERROR
    assert rig.let_go(c)


def test_other_error_after_oack_is_a_client_error(rig):
    c = rig.transfer(b"q" * 100, oack=b"\x00\x06tsize\x00100\x00")
    c.recv_raw()
    c.error(0, "no thanks")
    assert rig.done == [(c.slot, "client-error", 0, 0, 0, 0)]


# ---------------------------------------------------------------- endings

def test_client_error_ends_the_transfer(rig):
    c = rig.transfer(os.urandom(3000))
    c.data(1)
    c.ack(1)
    c.data(2)
    rig.at(50)
    c.error(8, "changed my mind")  # code 8 after DATA is not a tsize probe
    assert rig.done == [(c.slot, "client-error", 8, 512, 0, 50)]
    assert rig.engine.active == 0
    s = rig.engine.stats()
    assert s["transfers_failed"] == 1 and s["transfers_ok"] == 0
    c.nothing()
    assert rig.let_go(c)
    rig.at(1000)
    c.nothing()  # no timer left behind


def test_file_truncated_mid_transfer(rig):
    content = os.urandom(3000)
    c = rig.transfer(content)
    c.data(1)
    c.ack(1)
    c.data(2)
    os.truncate(c.path, 1000)
    c.ack(2)
    assert c.recv() == (ERROR, 0, "file changed during transfer")
    assert rig.done == [(c.slot, "file-changed", 0, 1024, 0, 0)]
    assert rig.engine.active == 0
    assert rig.let_go(c)


def test_file_truncated_noticed_on_retransmission(rig):
    c = rig.transfer(os.urandom(3000), rto=100)
    c.data(1)
    os.truncate(c.path, 10)
    rig.at(100)
    assert c.recv() == (ERROR, 0, "file changed during transfer")
    assert rig.done == [(c.slot, "file-changed", 0, 0, 0, 100)]


def test_file_rewritten_same_size(rig):
    import time
    content = os.urandom(3000)
    c = rig.transfer(content)
    c.data(1)
    time.sleep(0.02)  # past the coarse mtime granularity
    with open(c.path, "r+b") as f:
        f.write(b"new content")
    # checks passed within the same millisecond are shared by the file's transfers
    rig.now += 1
    rig.engine.set_clock(rig.now)
    c.ack(1)
    assert c.recv()[:2] == (ERROR, 0)
    assert rig.done[0][1] == "file-changed"


def test_mtime_mismatch_at_begin(rig):
    c = rig.transfer(b"abc", mtime_ns=1)
    assert c.recv()[:2] == (ERROR, 0)
    assert rig.done == [(c.slot, "file-changed", 0, 0, 0, 0)]


def test_size_mismatch_at_begin(rig):
    c = rig.transfer(b"abc", size=4)
    assert c.recv()[:2] == (ERROR, 0)
    assert rig.done[0][1] == "file-changed"


def test_abort_one(rig):
    a = rig.transfer(os.urandom(2000))
    b = rig.transfer(os.urandom(2000))
    a.data(1)
    b.data(1)
    rig.engine.abort(a.slot)
    assert a.recv() == (ERROR, 0, "transfer aborted by server")
    assert rig.done == [(a.slot, "aborted", 0, 0, 0, 0)]
    assert rig.engine.active == 1
    b.ack(1)
    b.data(2)
    rig.engine.abort(a.slot)  # already ended: nothing
    assert len(rig.done) == 1


def test_abort_all(rig):
    clients = [rig.transfer(os.urandom(1000)) for _ in range(3)]
    for c in clients:
        c.data(1)
    clients[0].ack(1)
    clients[0].data(2)
    assert rig.engine.active == 3
    rig.at(40)
    rig.engine.abort_all()
    assert rig.engine.active == 0
    assert sorted(rig.done) == sorted([
        (clients[0].slot, "aborted", 0, 512, 0, 40),
        (clients[1].slot, "aborted", 0, 0, 0, 40),
        (clients[2].slot, "aborted", 0, 0, 0, 40),
    ])
    for c in clients:
        assert c.recv() == (ERROR, 0, "transfer aborted by server")
        assert rig.let_go(c)
    assert rig.engine.stats()["transfers_failed"] == 3
    rig.engine.abort_all()
    assert len(rig.done) == 3


@pytest.mark.parametrize("shared", [False, True])
def test_concurrent_transfers_and_slot_reuse(make_rig, shared):
    r = make_rig(capacity=2, shared=shared)
    a = r.transfer(os.urandom(1500))
    b = r.transfer(os.urandom(1500), window=2)  # on its own socket, beside a shared one
    assert (a.shared, b.shared) == (shared, False)
    assert r.engine.active == 2
    assert {a.slot, b.slot} == {0, 1}
    a.data(1)
    a.ack(1)
    assert b.blocks(2) == [1, 2]
    b.ack(2)
    assert lockstep_from(a, 2) == a.content[512:]
    assert r.done[0][:2] == (a.slot, "ok")
    # a's slot is free again: a new transfer takes it while b goes on
    c = r.transfer(os.urandom(100))
    assert c.slot == a.slot
    assert r.engine.active == 2
    assert c.data(1) == c.content
    assert b.blocks(1) == [3]  # 1500 = 2 * 512 + 476
    b.nothing()
    b.ack(3)
    c.ack(1)
    assert [d[1] for d in r.done] == ["ok", "ok", "ok"]
    assert r.engine.active == 0


def test_on_done_aborting_another_transfer_during_tick(rig):
    a = rig.transfer(b"a" * 100, rto=100, give_up=100)
    b = rig.transfer(b"b" * 100, rto=100, give_up=100)
    a.data(1)
    b.data(1)

    def hook(slot, outcome, *rest):
        if len(rig.done) == 1:  # the first to time out ends the other one
            rig.engine.abort(b.slot if slot == a.slot else a.slot)
    rig.hook = hook
    rig.at(100)  # both time out in the same wheel slot
    # once per transfer (which outcome the second one gets depends on the order; a timeout
    # of these one-block files, sent and never acknowledged, is logged last-unacked)
    assert sorted(d[0] for d in rig.done) == sorted([a.slot, b.slot])
    assert {d[1] for d in rig.done} <= {"aborted", "last-unacked"}
    assert rig.engine.active == 0
    slots = [rig.transfer(b"x", begin=False).slot for _ in range(3)]
    assert len(set(slots)) == 3 and rig.engine.active == 3


def test_huge_window_stale_ack_0_is_not_progress(make_rig):
    # reachable with the default window-bytes-max (256 KiB) and blksize 8
    blksize, window, _, oack = native.negotiate({"blksize": "8", "windowsize": "65535"}, 1,
                                                window_bytes_max=256 * 1024)
    assert blksize == 8
    r = make_rig(gso=False)
    c = r.transfer(os.urandom(8 * 70000), blksize=8, window=window, oack=oack)
    assert c.recv_raw() == oack
    c.ack(0)
    r.lost()  # (partly dropped by the socket buffer: it does not matter here)
    c.ack(window)
    r.lost()  # blocks window+1 .. 2*window in flight
    out = r.engine.packets_out
    c.ack(0)  # the client's retransmitted ACK 0 of the OACK, arriving late
    assert r.engine.packets_out == out, "DATA sent after a stale ACK"
    # not: DATA 65537.. as if all of window+1 .. 65536 had been acknowledged
    assert c.pending() == [], f"window {window}"


def lockstep_from(c: Client, first: int) -> bytes:
    return lockstep(c, first)


# ---------------------------------------------------------------- shared sockets

@pytest.fixture
def shared_rig(tmp_path):
    r = Rig(tmp_path, capacity=8, shared=True)
    yield r
    r.close()


def start_on(r: Rig, c: Client, fd: int | None = None, window: int = 1,
             port: int | None = None) -> int:
    """engine.start for c's file and address (or another port) on a shared socket (the
    rig's by default), past the harness: for what start() must refuse, or a client that
    asks again."""
    st = os.fstat(c.fd)
    return r.engine.start(r.shared_fd if fd is None else fd, c.fd, socket.inet_aton(LOCAL),
                          c.port if port is None else port, st.st_size, st.st_mtime_ns,
                          c.blksize, window, 100, 1000)


def lockstep_all(r: Rig, clients: list[Client], refill=()) -> dict[Client, bytes]:
    """RFC 1350 clients side by side. Each round every running one takes its next block,
    then all of them ACK before the engine looks, so it reads the ACKs together and sends
    the DATA they cause together. Each client that ends makes room for the next content
    of refill, started at once. Returns what each client (refills too) received."""
    refill = list(refill)
    got = {c: bytearray() for c in clients}
    block = dict.fromkeys(clients, 1)
    running = list(clients)
    for _ in range(10000):
        if not running:
            break
        ended = []
        for c in running:
            payload = c.data(block[c])
            got[c] += payload
            if len(payload) < c.blksize:
                ended.append(c)
        for c in running:
            c.sock.sendto(native.build_ack(block[c]), c.server)
            block[c] += 1
        r.pump_until(packets_in=r.engine.packets_in + len(running),
                     packets_out=r.engine.packets_out + len(running) - len(ended))
        running = [c for c in running if c not in ended]
        for _ in ended[:len(refill)]:
            c = r.transfer(refill.pop(0))
            got[c], block[c] = bytearray(), 1
            running.append(c)
    assert not running and not refill
    return {c: bytes(b) for c, b in got.items()}


def peer_bucket(port: int, mask: int) -> int:
    """The engine's peer table bucket of 127.0.0.1:port (tftp.pyx peer_hash), to make
    clients collide on purpose; were the hash to change, the test using it would still
    hold, only be less pointed."""
    addr = int.from_bytes(socket.inet_aton(LOCAL), sys.byteorder)  # s_addr as stored
    nport = int.from_bytes(port.to_bytes(2, "big"), sys.byteorder)  # sin_port as stored
    h = (addr * 2654435761 ^ nport * 40503) & 0xffffffff
    return (h ^ (h >> 16)) & mask


def ports_in_buckets(buckets: list[int], mask: int) -> list[int]:
    """A free loopback port (below the ephemeral range) for each bucket wanted."""
    pools: dict[int, list[int]] = {b: [] for b in buckets}
    for port in range(20000, 32768):
        b = peer_bucket(port, mask)
        if b in pools and len(pools[b]) < buckets.count(b) and port_is_free(port):
            pools[b].append(port)
        if all(len(p) == buckets.count(b) for b, p in pools.items()):
            return [pools[b].pop(0) for b in buckets]
    raise AssertionError("not enough free ports")


def test_share_rejects_what_it_cannot_take():
    """A socket the engine did not take stays the caller's to close, so share() must fail
    before keeping anything."""
    e = native.Engine(1, print, fake_clock=True)
    with pytest.raises(OSError):
        e.share(-1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOCAL, 0))
    e.share(s.fileno())
    fd = s.detach()  # the engine's now
    with pytest.raises(OSError):
        e.share(fd)  # already shared: not a second entry for the same socket
    for _ in range(15):  # up to 16 in all (local addresses of the server)
        assert e.can_share
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((LOCAL, 0))
        e.share(s.fileno())
        s.detach()
    assert not e.can_share
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as extra:  # still the caller's
        with pytest.raises(RuntimeError):
            e.share(extra.fileno())


def test_shared_many_concurrent_transfers_byte_exact(make_rig):
    """50 clients on one socket at once, then 50 more taking the slots the first ones
    leave as their sizes make them end: every ACK must reach its own transfer through the
    peer table, however often its runs were cut and mended, and all DATA comes from the
    one address."""
    r = make_rig(capacity=64, shared=True)
    sizes = [i * 7919 % 4000 for i in range(100)]  # 1 to 8 blocks, ending in mixed order
    first = [r.transfer(os.urandom(n)) for n in sizes[:50]]
    assert all(c.server == r.shared_addr for c in first)
    assert r.engine.active == 50
    got = lockstep_all(r, first, refill=[os.urandom(n) for n in sizes[50:]])
    assert len(got) == 100
    for c, data in got.items():
        assert data == c.content
        c.nothing()
    assert {c.slot for c in got} == {c.slot for c in first}  # reused, none beyond
    assert r.engine.active == 0
    assert sorted(d[1:] for d in r.done) == sorted(("ok", 0, n, 0, 0) for n in sizes)
    s = r.engine.stats()
    assert s["packets_out"] == r.received == s["packets_in"] == sum(n // 512 + 1 for n in sizes)
    assert s["bytes_out"] == sum(sizes)
    assert s["strangers"] == s["malformed"] == s["retransmits"] == s["send_errors"] == 0
    assert not port_is_free(r.shared_addr[1])


def test_shared_peer_table_collisions_and_removal(make_rig):
    """Clients whose addresses share one run of the engine's peer table (linear probing,
    wrapping round its end), ending in each way and from each place in the run: the
    entries after the hole must move so a lookup still meets them, or their ACKs would be
    dropped as strangers' (or reach another transfer)."""
    r = make_rig(capacity=8, shared=True)  # a table of 16 buckets
    # the first 8 fill buckets 14, 15, 0 .. 5 (homes 14, 15 and 0); 5 more take the
    # slots that the ended ones leave
    ports = ports_in_buckets([14, 14, 15, 14, 0, 15, 0, 14, 14, 15, 0, 14, 15], mask=15)
    spare = ports[8:]
    clients = [r.transfer(os.urandom(8 * 40 + 3), blksize=8, port=p) for p in ports[:8]]
    got = {c: bytearray() for c in clients}
    nxt = dict.fromkeys(clients, 1)

    def step_all():
        """Every running client takes its next block and ACKs it: the DATA that answers
        is its own next block (Client.data checks its number, the end its content)."""
        for c in list(nxt):
            got[c] += c.data(nxt[c])
            c.ack(nxt[c])
            nxt[c] += 1

    def next_client(gone: Client) -> Client:
        """Another colliding client takes the slot (its entry: the end of the run)."""
        del nxt[gone]
        c = r.transfer(os.urandom(8 * 40 + 3), blksize=8, port=spare.pop(0))
        assert c.slot == gone.slot
        got[c], nxt[c] = bytearray(), 1
        step_all()
        return c

    step_all()
    # the run, by bucket: 14 [0], 15 [1], 0 [2], 1 [3] .. 5 [7]; homes as listed above
    head, past_wrap, before_wrap, middle = (clients[i] for i in (0, 3, 2, 6))
    r.engine.abort(head.slot)  # the head: every other entry moves up
    assert native.parse_reply(head.pending()[-1]) == (ERROR, 0, "transfer aborted by server")
    next_client(head)
    past_wrap.error(0)  # home 14, now in bucket 0: the client gives up
    past_wrap.pending()
    next_client(past_wrap)
    r.engine.replace(before_wrap.slot)  # home 15, in 15: the one from 15 after it comes
    before_wrap.pending()               # back across the wrap, the one from 0 stays
    next_client(before_wrap)
    got[middle] += lockstep(middle, nxt[middle])  # home 0, in bucket 1: completes
    newest = next_client(middle)
    r.engine.abort(newest.slot)  # the end of the run
    newest.pending()
    next_client(newest)
    for c in list(nxt):
        got[c] += lockstep(c, nxt[c])
    for c, data in got.items():
        assert data == (c.content if c not in (head, past_wrap, before_wrap, newest)
                        else c.content[:len(data)])
    outcomes = sorted(d[1] for d in r.done)
    assert outcomes == sorted(["aborted", "client-error", "replaced", "aborted"] + ["ok"] * 9)
    s = r.engine.stats()
    assert s["strangers"] == s["malformed"] == s["retransmits"] == 0
    assert r.engine.active == 0


def test_shared_stranger_is_dropped_silently(shared_rig):
    """A shared socket is not connected, so the kernel lets strangers in: the engine drops
    them unanswered (an ERROR 5 could reach a new request of a client that reused its
    port), counts them, and the transfer is not disturbed."""
    rig = shared_rig
    c = rig.transfer(os.urandom(1200))
    assert c.data(1) == c.expected(1)
    stranger = Peer(rig, server=rig.shared_addr)
    stranger.sock.sendto(native.build_ack(1), rig.shared_addr)
    rig.pump_until(strangers=1)
    stranger.nothing()
    c.nothing()  # the stranger's ACK 1 did not advance the transfer
    s = rig.engine.stats()
    assert (s["strangers"], s["packets_in"], s["packets_out"]) == (1, 1, 1)
    # nor does its ERROR end it; malformed or not, a stranger's datagram is a stranger's
    stranger.sock.sendto(native.build_error(0, "go away"), rig.shared_addr)
    stranger.sock.sendto(b"\x00", rig.shared_addr)
    rig.pump_until(strangers=3)
    stranger.nothing()
    c.nothing()
    s = rig.engine.stats()
    assert (s["strangers"], s["packets_in"], s["malformed"]) == (3, 3, 0)
    assert rig.engine.active == 1 and rig.done == []
    c.ack(1)
    assert lockstep_from(c, 2) == c.content[512:]
    assert rig.done == [(c.slot, "ok", 0, 1200, 0, 0)]
    assert rig.engine.stats()["strangers"] == 3


def test_shared_datagram_from_an_ended_transfer_is_a_stranger(shared_rig):
    """The client of a transfer that ended is a stranger to the shared socket: its late
    ACK (a retransmission of its own) and its ERROR go unanswered."""
    rig = shared_rig
    c = rig.transfer(os.urandom(700))
    assert lockstep(c) == c.content
    assert rig.done == [(c.slot, "ok", 0, 700, 0, 0)]
    before = rig.engine.stats()
    c.ack(2)
    c.error(0, "late")
    rig.pump_until(strangers=before["strangers"] + 2)
    c.nothing()
    s = rig.engine.stats()
    assert s["packets_in"] == before["packets_in"] + 2
    assert s["malformed"] == before["malformed"] and s["transfers_failed"] == 0
    assert len(rig.done) == 1


def test_shared_start_rejects_a_second_transfer_of_a_client(shared_rig):
    """The peer's address is how the shared socket tells its transfers apart, so a client
    has at most one on it."""
    rig = shared_rig
    a = rig.transfer(os.urandom(1200))
    with pytest.raises(ValueError):
        start_on(rig, a)
    assert rig.engine.active == 1
    assert lockstep(a) == a.content  # the first one goes on, alone
    assert rig.done[-1] == (a.slot, "ok", 0, 1200, 0, 0)
    # once it ended, the same client may ask again (a new request from the same port)
    slot = start_on(rig, a)
    rig.engine.begin(slot)
    assert lockstep(a) == a.content
    assert rig.done[-1] == (slot, "ok", 0, 1200, 0, 0)
    assert rig.engine.stats()["strangers"] == 0


def test_shared_sockets_keep_their_clients_apart(shared_rig):
    """Two shared sockets (two local addresses of the server): a client's datagram to the
    one its transfer is not on is a stranger's there, though the engine knows the client."""
    rig = shared_rig
    fd2, addr2 = rig.share()
    a = rig.transfer(os.urandom(1200))
    b = rig.transfer(os.urandom(1200), via=(fd2, addr2))
    assert a.server == rig.shared_addr != b.server == addr2
    a.data(1)
    b.data(1)
    a.sock.sendto(native.build_ack(1), addr2)
    rig.pump_until(strangers=1)
    a.nothing()
    b.nothing()
    # one table of clients for every shared socket: one transfer on any of them
    with pytest.raises(ValueError):
        start_on(rig, a, fd=fd2)
    a.ack(1)
    b.ack(1)
    assert lockstep_from(a, 2) == a.content[512:]
    assert lockstep_from(b, 2) == b.content[512:]
    assert sorted(d[1] for d in rig.done) == ["ok", "ok"]
    assert rig.engine.stats()["strangers"] == 1


def test_shared_socket_outlives_its_transfers_and_goes_with_the_engine(make_rig):
    """However its transfers end, the shared socket stays for the next ones; the
    engine closes it when it goes."""
    r = make_rig(shared=True)
    port = r.shared_addr[1]
    ino = os.fstat(r.shared_fd).st_ino
    a = r.transfer(os.urandom(600))
    assert lockstep(a) == a.content
    b = r.transfer(os.urandom(600))
    b.data(1)
    r.engine.abort(b.slot)
    assert b.recv()[:2] == (ERROR, 0)
    c = r.transfer(os.urandom(600), rto=100, give_up=100)
    c.data(1)
    r.at(100)
    assert [d[1] for d in r.done] == ["ok", "aborted", "timeout"]
    assert r.engine.active == 0
    assert os.fstat(r.shared_fd).st_ino == ino and not port_is_free(port)
    d = r.transfer(os.urandom(1000))  # it still carries new transfers
    assert d.server == r.shared_addr
    assert lockstep(d) == d.content
    r.engine.abort_all()
    assert not port_is_free(port)
    r.engine = None  # the rig held the only reference
    gc.collect()
    assert port_is_free(port)
    try:
        assert os.fstat(r.shared_fd).st_ino != ino  # the number was taken again
    except OSError as exc:
        assert exc.errno == errno.EBADF


@pytest.mark.parametrize("n, blksize", [(40, 8192), (80, 512)])
def test_shared_acks_read_together_data_sent_together(make_rig, n, blksize):
    """Every client ACKs before the engine looks: it reads the ACKs by recvmmsg (80 are
    more than one batch of 64) and sends the DATA they cause by sendmmsg (40 blocks of
    8 KiB are more than one send batch of 256 KiB holds). Each client gets exactly its
    own next block, and the counters say what arrived."""
    r = make_rig(capacity=n, shared=True)
    clients = [r.transfer(os.urandom(blksize * 2 + i), blksize=blksize) for i in range(n)]
    for c in clients:
        assert c.data(1) == c.expected(1)
    for block in (1, 2):
        before = r.engine.stats()
        for c in clients:
            c.sock.sendto(native.build_ack(block), c.server)
        r.pump_until(packets_out=before["packets_out"] + n)
        for c in clients:
            assert c.pending() == [b"\x00\x03" + (block + 1).to_bytes(2, "big")
                                   + c.expected(block + 1)]
        s = r.engine.stats()
        assert s["packets_out"] - before["packets_out"] == n == s["packets_in"] - before["packets_in"]
        assert s["bytes_out"] - before["bytes_out"] == sum(len(c.expected(block + 1)) for c in clients)
        assert r.received == s["packets_out"]
    for c in clients:
        c.sock.sendto(native.build_ack(3), c.server)
    r.pump_until(transfers_ok=n)
    for c in clients:
        c.nothing()
    assert sorted(d[1:4] for d in r.done) == sorted(("ok", 0, blksize * 2 + i) for i in range(n))
    s = r.engine.stats()
    assert s["send_errors"] == s["retransmits"] == s["strangers"] == s["malformed"] == 0
    assert s["packets_out"] == 3 * n and s["bytes_out"] == sum(blksize * 2 + i for i in range(n))


def test_shared_closed_client_port_ends_only_its_transfer(shared_rig):
    """ICMP port unreachable for one client lands on the socket all of them share (its
    error queue): it ends that client's transfer, and the ECONNREFUSED it leaves on the
    socket for the next send does not cost the others theirs."""
    rig = shared_rig
    a, b, c = (rig.transfer(os.urandom(1500), rto=100) for _ in range(3))
    for x in (a, b, c):
        x.data(1)
    _client_gone(rig, b)
    rig.at(100)  # all three resent; b's meets ICMP port unreachable
    rig.received += 1  # b's reached nobody
    rig.pump()
    assert rig.done == [(b.slot, "unreachable", 0, 0, 1, 100)]
    assert rig.engine.stats()["send_errors"] == 0
    for x in (a, c):
        assert x.data(1) == x.expected(1)  # the retransmission
        x.ack(1)
    assert lockstep_from(a, 2) == a.content[512:]
    assert lockstep_from(c, 2) == c.content[512:]
    assert sorted(d[1] for d in rig.done) == ["ok", "ok", "unreachable"]
    assert rig.engine.active == 0 and rig.let_go(b)


def test_shared_closed_client_port_is_read_from_the_error_queue(shared_rig):
    """On a shared socket the ECONNREFUSED a send meets may be about any of its clients,
    so the send is made again; the transfer ends when the engine reads the error queue
    (its next poll), not at that send as on a connected socket."""
    rig = shared_rig
    oack = b"\x00\x06tsize\x00100\x00"
    c = rig.transfer(b"q" * 100, oack=oack, rto=100)
    assert c.recv_raw() == oack
    _client_gone(rig, c)
    rig.at(100)
    rig.received = rig.engine.packets_out
    rig.at(300)  # the error waiting on the socket does not stop this one
    rig.received = rig.engine.packets_out
    assert rig.done == [] and rig.engine.stats()["send_errors"] == 0
    rig.pump()
    assert rig.done == [(c.slot, "unreachable", 0, 0, 2, 300)]
    assert rig.engine.active == 0 and rig.let_go(c)
    rig.at(1000)  # no timer left behind


def test_shared_on_done_starting_a_transfer_while_draining(shared_rig):
    """The service may start a transfer from its callback; one started while the engine
    reads the shared socket has its first DATA queued with the batch's replies, and it
    must leave with them."""
    rig = shared_rig
    a = rig.transfer(b"a" * 100)
    a.data(1)
    later = []

    def hook(*done):
        if not later:
            later.append(rig.transfer(os.urandom(700)))
    rig.hook = hook
    a.ack(1)  # ends a while draining
    b, = later
    assert rig.done[0] == (a.slot, "ok", 0, 100, 0, 0)
    assert b.slot == a.slot and b.server == rig.shared_addr
    assert lockstep(b) == b.content
    assert rig.done[1] == (b.slot, "ok", 0, 700, 0, 0)


# ---------------------------------------------------------------- single-port mode

def requests_rig(tmp_path) -> Rig:
    """A rig whose shared socket is also the listening one (single-port mode): IP_PKTINFO
    on, as udp.listening_socket sets it, and shared with requests=True."""
    r = Rig(tmp_path, capacity=4)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    big_rcvbuf(s)
    s.setsockopt(socket.IPPROTO_IP, 8, 1)  # IP_PKTINFO
    s.bind((LOCAL, 0))
    s.setblocking(False)
    r.engine.share(s.fileno(), requests=True)
    r.shared_addr = s.getsockname()
    r.shared_fd = s.detach()
    r.share_windows = True
    return r


def wait_requests(r: Rig, n: int, timeout: float = 2.0) -> list[tuple]:
    """Poll until the engine has kept n requests (bounded); returns them."""
    got = []
    end = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < end:
        select.select([r.engine.fileno()], [], [], max(0.0, end - time.monotonic()))
        r.engine.poll()
        got += r.engine.take_requests()
    return got


def test_requests_on_the_shared_socket_go_to_take_requests(tmp_path):
    """RRQ and WRQ among the ACKs are kept whole for Python, with the client's address and
    the interface and local address they came in on; anything else from an address with no
    transfer is a stranger's."""
    r = requests_rig(tmp_path)
    try:
        p = Peer(r)
        rrq = native.build_request(1, "boot/pxelinux.0", options={"blksize": "1468"})
        wrq = native.build_request(2, "upload.bin")
        for pkt in (rrq, native.build_ack(3), wrq):
            p.sock.sendto(pkt, r.shared_addr)
        got = wait_requests(r, 2)
        assert got == [(rrq, (LOCAL, p.port), socket.if_nametoindex("lo"), socket.inet_aton(LOCAL)),
                       (wrq, (LOCAL, p.port), socket.if_nametoindex("lo"), socket.inet_aton(LOCAL))]
        assert r.engine.take_requests() == []  # taken once
        r.pump_until(strangers=1)  # the ACK
        p.nothing()  # and nobody was answered by the engine
    finally:
        r.close()


def test_a_request_from_a_client_with_a_transfer_is_still_a_request(tmp_path):
    """A client that starts over from the same port sends its RRQ where its ACKs go: it
    must reach Python (which replaces the old transfer), not the transfer as a bad ACK."""
    r = requests_rig(tmp_path)
    try:
        c = r.transfer(os.urandom(2000))
        assert c.data(1) == c.expected(1)
        rrq = native.build_request(1, "again.bin")
        c.send(rrq)
        assert [req[:2] for req in wait_requests(r, 1)] == [(rrq, (LOCAL, c.port))]
        assert r.engine.stats()["malformed"] == 0
        c.ack(1)  # the transfer itself is untouched
        assert c.data(2) == c.expected(2)
    finally:
        r.close()


def test_a_long_request_arrives_cut_at_2048_bytes(tmp_path):
    """A request longer than the engine's buffer comes cut, and Python refuses it as too
    long (over 1024 bytes) rather than never seeing it."""
    r = requests_rig(tmp_path)
    try:
        p = Peer(r)
        rrq = native.build_request(1, "x" * 3000)
        p.sock.sendto(rrq, r.shared_addr)
        assert [(len(d), d) for d, *_ in wait_requests(r, 1)] == [(2048, rrq[:2048])]
    finally:
        r.close()


def test_one_socket_takes_requests():
    e = native.Engine(1, print, fake_clock=True)
    a, b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    for s in (a, b):
        s.bind((LOCAL, 0))
    e.share(a.detach(), requests=True)
    with pytest.raises(RuntimeError):
        e.share(b.fileno(), requests=True)
    b.close()  # still the caller's


@pytest.mark.parametrize("gso", [False, pytest.param(True, marks=pytest.mark.skipif(
    not native.have_gso() and not os.environ.get("CI"), reason="no UDP GSO (runs, and fails, under CI)"))])
@pytest.mark.parametrize("window", [1, 4])
def test_a_wildcard_shared_socket_answers_from_local_ip4(tmp_path, gso, window):
    """Single-port mode on a listener bound to 0.0.0.0: the route would pick 127.0.0.1 as
    the source, but the client asked 127.0.0.2, and only replies from there are its
    transfer's. The OACK, DATA sent at once, DATA sent in a batch and the ERROR all carry it."""
    done = []
    e = native.Engine(2, lambda *a: done.append(a), fake_clock=True, gso=gso)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    s.setblocking(False)
    port = s.getsockname()[1]
    sfd = s.detach()
    e.share(sfd)
    content = os.urandom(512 * 6 + 5)
    path = tmp_path / "f"
    path.write_bytes(content)
    fd = os.open(path, os.O_RDONLY)
    asked = ("127.0.0.2", port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind((LOCAL, 0))
        client.settimeout(2)

        def take(block):
            data, src = client.recvfrom(70000)
            assert src == asked and native.parse_reply(data)[:2] == (DATA, block & 0xffff)
            return data[4:]

        st = os.fstat(fd)
        oack = b"\x00\x06windowsize\x00" + str(window).encode() + b"\x00"
        slot = e.start(sfd, fd, socket.inet_aton(LOCAL), client.getsockname()[1], st.st_size,
                       st.st_mtime_ns, 512, window, 100, 1000, oack, None,
                       socket.inet_aton("127.0.0.2"))
        e.begin(slot)  # the OACK: sent at once
        data, src = client.recvfrom(70000)
        assert (data, src) == (oack, asked)
        client.sendto(native.build_ack(0), asked)
        got = bytearray()
        for block in range(1, 5):  # DATA released by ACKs: sent in the drain's batch
            if (block - 1) % window == 0:
                select.select([e.fileno()], [], [], 2)
                e.poll()
            got += take(block)
            if block % window == 0:
                client.sendto(native.build_ack(block), asked)
        select.select([e.fileno()], [], [], 2)
        e.poll()
        rest = range(5, 5 + min(window, 3))  # blocks 5..7 (7 the short last one) or 5
        assert b"".join(take(b) for b in rest) == content[2048:2048 + 512 * len(rest)]
        e.set_clock(200)  # no ACK: the timer resends at once, not in a batch
        e.tick()
        assert b"".join(take(b) for b in rest) == content[2048:2048 + 512 * len(rest)]
        e.abort(slot)  # the ERROR too
        while True:
            data, src = client.recvfrom(70000)
            assert src == asked
            if native.parse_reply(data)[0] == ERROR:
                break
    os.close(fd)
    assert got == content[:2048]
    assert done and done[0][1] == "aborted"


# ---------------------------------------------------------------- a shared socket's errors

def _shared_engine(gso=False, on_done=lambda *a: None):
    """An engine with one shared socket (IP_RECVERR, as the server sets it): (engine, fd,
    address)."""
    e = native.Engine(8, on_done, fake_clock=True, gso=gso)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOCAL, 0))
    s.setblocking(False)
    s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
    e.share(s.fileno())
    addr = s.getsockname()
    return e, s.detach(), addr


def _lockstep_on(e, fd, content, local_ip4=None):
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind((LOCAL, 0))
    c.settimeout(1)
    slot = e.start(fd, -1, socket.inet_aton(LOCAL), c.getsockname()[1], len(content), 0,
                   512, 1, 1000, 10000, None, content, local_ip4)
    e.begin(slot)
    return c


def test_shared_one_undeliverable_peer_does_not_drop_the_rest_of_a_batch():
    """A datagram the kernel refuses (here: a source address that is not the machine's,
    EINVAL; in the field a firewall's EPERM or a route's EHOSTUNREACH) is lost alone: the
    DATA queued after it in the same sendmmsg, for other clients, still goes. The refused
    one is the first DATA of a transfer started while the batch fills (as the server starts
    one from the end of another, in on_done)."""
    content = os.urandom(512 * 10)
    started = []

    def on_done(*_):  # C's end starts A, whose DATA 1 then leads the batch
        started.append(_lockstep_on(e, fd, content, socket.inet_aton("10.255.255.1")))

    e, fd, addr = _shared_engine(on_done=on_done)
    c = _lockstep_on(e, fd, b"x" * 100)  # one block
    b = _lockstep_on(e, fd, content)
    try:
        assert native.parse_reply(c.recv(600))[:2] == (DATA, 1)
        assert native.parse_reply(b.recv(600))[:2] == (DATA, 1)
        c.sendto(native.build_ack(1), addr)  # read first: A's DATA 1 is queued before ...
        b.sendto(native.build_ack(1), addr)  # ... B's DATA 2, in one sendmmsg
        end = time.monotonic() + 2
        while e.packets_in < 2 and time.monotonic() < end:
            select.select([e.fileno()], [], [], 0.1)
            e.poll()
        assert native.parse_reply(b.recv(600))[:2] == (DATA, 2)
        assert len(started) == 1 and e.send_errors == 1  # A's DATA 1, nothing else
        assert e.stats()["send_calls"] == 3  # C's and B's DATA 1, then the batch
        # A's DATA 1 never left: an ACK for it is no progress, and no DATA 2 is tried
        started[0].sendto(native.build_ack(1), addr)
        end = time.monotonic() + 2
        while e.packets_in < 3 and time.monotonic() < end:
            select.select([e.fileno()], [], [], 0.1)
            e.poll()
        assert e.packets_in == 3 and e.send_errors == 1
    finally:
        e.abort_all()
        for s in (c, b, *started):
            s.close()


def _forge_icmp(code: int, sport: int, dport: int) -> None:
    """ICMP destination unreachable (code) about a UDP datagram 127.0.0.1:sport ->
    127.0.0.1:dport, delivered to 127.0.0.1 (raw socket: root)."""
    def csum(b: bytes) -> int:
        b += b"\0" * (len(b) % 2)
        s = sum(struct.unpack(f"!{len(b) // 2}H", b))
        s = (s >> 16) + (s & 0xFFFF)
        return ~(s + (s >> 16)) & 0xFFFF
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, 17, 0,
                     socket.inet_aton(LOCAL), socket.inet_aton(LOCAL))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    body = struct.pack("!BBHI", 3, code, 0, 0) + ip + struct.pack("!HHHH", sport, dport, 8, 0)
    body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as r:
        r.sendto(body, (LOCAL, 0))


@pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"),
                    reason="forging ICMP needs a raw socket (root; runs, and fails, under CI)")
@pytest.mark.parametrize("code", [1, 0, 13])  # host and network unreachable, prohibited
def test_shared_an_icmp_error_about_one_client_costs_no_other_clients_send(code):
    """With IP_RECVERR an unconnected socket reports an ICMP error (a LAN client that went
    away: host unreachable) once, to whichever call comes next. Neither a send at once nor
    a batch of DATA for other clients may be what pays for it."""
    e, fd, addr = _shared_engine()
    content = os.urandom(4000)
    clients = [_lockstep_on(e, fd, content) for _ in range(3)]
    try:
        for c in clients:
            assert native.parse_reply(c.recv(600))[:2] == (DATA, 1)
        _forge_icmp(code, addr[1], 9)  # about a datagram to port 9: nobody's transfer
        late = _lockstep_on(e, fd, content)  # sent at once, right after
        assert native.parse_reply(late.recv(600))[:2] == (DATA, 1)
        _forge_icmp(code, addr[1], 9)
        for c in clients:  # now the batch of one wake-up
            c.sendto(native.build_ack(1), addr)
        end = time.monotonic() + 2
        while e.packets_in < 3 and time.monotonic() < end:
            select.select([e.fileno()], [], [], 0.1)
            e.poll()
        for c in clients:
            assert native.parse_reply(c.recv(600))[:2] == (DATA, 2)
        assert (e.send_errors, e.transfers_failed) == (0, 0)
        late.close()
    finally:
        e.abort_all()
        for c in clients:
            c.close()


def test_close_frees_the_shared_ports_at_once():
    """The service's close() must free its ports now, not when the collector gets to the
    engine (a cycle with its on_done; gc.freeze() in serve keeps it alive for good)."""
    e, fd, addr = _shared_engine()
    assert not port_is_free(addr[1])
    e.close()
    assert port_is_free(addr[1])
    with pytest.raises(OSError):
        os.fstat(fd)  # closed, and not again at deallocation (the number may be reused)
    del e
    gc.collect()


@pytest.mark.parametrize("gso", [False, pytest.param(True, marks=pytest.mark.skipif(
    not native.have_gso() and not os.environ.get("CI"), reason="no UDP GSO (runs, and fails, under CI)"))])
@pytest.mark.parametrize("blksize,calls", [(32496, 10 + 9), (32497, 2 + 2), (65464, 2 + 2)])
@pytest.mark.parametrize("snapshot", [False, True])
@pytest.mark.parametrize("shared", [False, "single"])
def test_window_of_blocks_too_big_for_gso(make_rig, gso, blksize, calls, snapshot, shared):
    # 32496 + 4 header bytes: two fit one GSO send (65000 bytes), so a window of 20 leaves
    # in 10 sends; from 32497 on GSO cannot join two, and a window goes by sendmmsg, 16
    # blocks a call (BIG_BLOCKS): windows of 20 and 18 blocks take two calls each
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    big_rcvbuf(probe)  # as the client's: a whole window must fit (its kernel buffers too)
    room = probe.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    probe.close()
    if room < 20 * (blksize + 8192) and not os.environ.get("CI"):
        pytest.skip("a client socket cannot hold the window: run as root (SO_RCVBUFFORCE)")
    r = make_rig(gso=gso, shared=shared)
    content = os.urandom(blksize * 37 + 5)
    c = r.transfer(content, blksize=blksize, window=20, snapshot=snapshot)
    assert windowed(c, 20) == content
    c.nothing()
    assert r.done == [(c.slot, "ok", 0, len(content), 0, 0)]
    stats = r.engine.stats()
    assert stats["packets_out"] == 38 and stats["retransmits"] == 0 and stats["send_errors"] == 0
    assert stats["bytes_out"] == len(content)
    assert stats["send_calls"] == calls
