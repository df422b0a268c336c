"""Which source serves a transfer: a snapshot in memory, or the open file (TftpServer)."""
import os

import pytest

from bootstorm.config import TftpConfig
from bootstorm.log import Log
from bootstorm.tftp import SNAPSHOT_AT_ONCE, TftpServer


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "root"
    root.mkdir()

    def make(**kw):
        s = TftpServer(TftpConfig(root=str(root), listen="127.0.0.1", port=0, **kw), Log("text", stream=open(os.devnull, "w")))
        servers.append(s)
        return s, root

    servers = []
    yield make
    for s in servers:
        s.close()


def write(root, name, size):
    data = os.urandom(size)
    (root / name).write_bytes(data)
    return data


def source(s, name):
    return s._open(s.rootfd, s.config.root, name, False, "127.0.0.1")


def test_small_file_is_a_snapshot_at_once_and_kept_when_idle(server):
    s, root = server()
    data = write(root, "pxelinux.0", 40 * 1024)
    a = source(s, "pxelinux.0")
    assert a.content == data and a.fd == -1 and s.memory_bytes == len(data)
    b = source(s, "pxelinux.0")
    assert b is a and a.users == 2
    s._release(a)
    s._release(b)
    assert a.users == 0 and list(s.idle.values()) == [a]
    # the next client, later, reuses it without reading the file again
    c = source(s, "pxelinux.0")
    assert c is a and not s.idle
    s._release(c)


def test_big_file_from_the_page_cache_first_then_a_snapshot(server):
    s, root = server()
    data = write(root, "vmlinuz", SNAPSHOT_AT_ONCE + 4096)
    first = source(s, "vmlinuz")
    assert first.content is None and first.fd >= 0
    second = source(s, "vmlinuz")
    assert second.content == data and second is not first
    s._release(first)  # the open file ends with its transfer; the snapshot stays
    assert s.files[first.key] is second
    with pytest.raises(OSError):
        os.fstat(first.fd)
    s._release(second)
    assert s.stats()["open_files"] == 0 and s.stats()["snapshots"] == 1


def test_changed_file_gets_a_new_snapshot(server):
    s, root = server()
    write(root, "boot.ipxe", 1000)
    a = source(s, "boot.ipxe")
    s._release(a)
    new = write(root, "boot.ipxe.new", 1200)
    os.replace(root / "boot.ipxe.new", root / "boot.ipxe")
    b = source(s, "boot.ipxe")
    assert b is not a and b.content == new


def test_idle_snapshots_make_room_oldest_first(server):
    s, root = server(memory_total_max=3 * 100_000, memory_file_max=100_000)
    for name in "abcd":
        write(root, name, 100_000)
    a, b, c = (source(s, n) for n in "abc")
    for x in (a, b, c):
        s._release(x)
    d = source(s, "d")  # the budget is full: the least recently used idle one goes
    assert d.content is not None and a.key not in s.files and b.key in s.files
    assert s.memory_bytes == 300_000
    # in use, a snapshot is never evicted: over the budget the file is read per window
    e = [source(s, n) for n in "bcd"]
    write(root, "e", 100_000)
    f = source(s, "e")
    assert f.content is None and f.fd >= 0
    for x in e + [f, d]:
        s._release(x)


def test_an_internal_error_costs_one_request_only(server):
    import io
    import socket

    s, _root = server()
    s.log = Log("text", stream=io.StringIO())
    from bootstorm.log import RateLimited
    s._log_internal = RateLimited(s.log, "tftp-internal-error", 10)
    s._log_refused = RateLimited(s.log, "tftp-refused", 10)
    served = []

    def request(data, client, local_ip, local, ifindex):
        if b"boom" in data:
            raise KeyError("a bug")
        served.append(data)

    s._request = request
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(2)
    try:
        for name in (b"a", b"boom", b"c"):
            c.sendto(b"\x00\x01" + name + b"\x00octet\x00", s.address)
        s._on_requests()
        reply, _ = c.recvfrom(600)
    finally:
        c.close()
    assert [d[2:-7] for d in served] == [b"a", b"c"]
    assert reply == b"\x00\x05\x00\x00internal server error\x00"
    assert s.requests_refused == 1
    assert " tftp-internal-error KeyError: 'a bug' client=127.0.0.1:" in s.log.stream.getvalue()


def test_a_small_shared_buffer_is_reported(server, monkeypatch):
    """Without CAP_NET_ADMIN the shared port's receive buffer stops at net.core.rmem_max:
    the operator is told once, with what to raise (here: a forced size the kernel refuses,
    and more than any rmem_max this machine or CI has)."""
    import io

    from bootstorm import tftp, udp
    s, _root = server()
    s.log = Log("text", stream=(out := io.StringIO()))
    monkeypatch.setattr(udp, "SO_RCVBUFFORCE", -1)  # as if not allowed: the plain option
    monkeypatch.setattr(tftp, "SHARED_BUFFER", 1 << 30)
    fd = s._shared_socket("127.0.0.1")
    assert s._shared_socket("127.0.0.1") == fd  # made once
    lines = [line for line in out.getvalue().splitlines() if "tftp-buffer-small" in line]
    assert len(lines) == 1 and "net.core.rmem_max" in lines[0], out.getvalue()
