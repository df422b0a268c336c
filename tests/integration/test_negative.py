"""Refusals, the path jail, option negotiation edge cases and protocol corner cases,
mostly over raw UDP sockets where no client can express the case."""
from __future__ import annotations

import os
import signal
import socket
import time

import pytest

from tftp_harness import (OP_DATA, OP_ERROR, OP_OACK, OP_WRQ, RawClient, RemoteError, ack,
                          error, hpa_get, hpa_put, make_file, sha256, sha256_file, tree_snapshot)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "root"
    r.mkdir()
    return r


def refused(server, filename, options=None, mode="octet", opcode=1):
    """Send one request; return (code, message) of the ERROR that must come back from
    the listening port (a refusal never opens a transfer port)."""
    with RawClient(server.addr) as c:
        c.send_rrq(filename, mode, options, opcode)
        op, code, msg, addr = c.recv(2.0)
        assert op == OP_ERROR, (op, code, msg)
        assert addr == server.addr
        return code, msg


def fetch_raw(server, filename, options=None, mode="octet"):
    """Download over a raw socket: (first reply (op, num, payload), content)."""
    with RawClient(server.addr) as c:
        c.send_rrq(filename, mode, options)
        op, num, payload, addr = c.recv(2.0)
        if op == OP_ERROR:
            raise RemoteError(num, payload)
        assert addr[1] != server.port, "transfers must come from a fresh port (TID)"
        return (op, num, payload), c.download(first=(op, num, payload), max_seconds=20)


# ---------------------------------------------------------------- the path jail

def test_missing_file_error_1(tftp_server, root):
    server = tftp_server(root)
    code, msg = refused(server, "no/such/file")
    assert code == 1, msg
    assert refused(server, "nothing-here")[0] == 1
    # refusals are logged, and never counted as transfers
    assert server.wait_line(r"tftp-refused .*code=1", 2)
    assert server.transfers() == []


def test_traversal_error_2(tftp_server, tmp_path, root):
    (tmp_path / "secret").write_bytes(b"outside the root\n")
    make_file(root, "sub/inside", 10)
    server = tftp_server(root)
    for name in ("../secret", "sub/../../secret", "..\\secret", "sub/../../root/../secret"):
        code, msg = refused(server, name)
        assert code == 2, (name, code, msg)


def test_absolute_path_resolves_inside_root(tftp_server, root):
    server = tftp_server(root)
    # without root/etc/passwd, /etc/passwd is simply not found (never the host's)
    code, msg = refused(server, "/etc/passwd")
    assert code == 1, msg
    content = b"root:x:0:0:this is the TFTP root's passwd, not the host's:/root:/bin/sh\n"
    os.makedirs(root / "etc")
    (root / "etc" / "passwd").write_bytes(content)
    _, got = fetch_raw(server, "/etc/passwd")
    assert got == content
    _, got = fetch_raw(server, "//etc//passwd")
    assert got == content


def test_absolute_path_of_the_root_itself(tftp_server, root):
    """A client that sends the server's own absolute path gets the file (dnsmasq)."""
    data = make_file(root, "pxe/f.bin", 700)
    server = tftp_server(root)
    assert fetch_raw(server, f"{root}/pxe/f.bin")[1] == data


def test_symlink_out_of_root_error_2(tftp_server, tmp_path, root):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret")
    os.symlink(outside, root / "abs-link")  # absolute target outside
    os.symlink("../outside.bin", root / "rel-link")  # relative target outside
    os.symlink(str(tmp_path), root / "dir-link")  # a directory outside
    server = tftp_server(root)
    for name in ("abs-link", "rel-link", "dir-link/outside.bin"):
        code, msg = refused(server, name)
        assert code == 2, (name, code, msg)


def test_symlink_inside_root_is_served(tftp_server, root):
    """A relative symlink that stays inside the root is a normal file (as in dnsmasq)."""
    data = make_file(root, "images/real.bin", 3000)
    os.symlink("images/real.bin", root / "alias.bin")
    server = tftp_server(root)
    _, got = fetch_raw(server, "alias.bin")
    assert sha256(got) == sha256(data)


def test_directory_error_0(tftp_server, root):
    os.makedirs(root / "pxelinux.cfg")
    server = tftp_server(root)
    for name in ("pxelinux.cfg", "pxelinux.cfg/", "/", "."):
        code, msg = refused(server, name)
        assert code == 0, (name, code, msg)


def test_special_file_error_2(tftp_server, root):
    os.mkfifo(root / "fifo")
    server = tftp_server(root)
    code, msg = refused(server, "fifo")  # must not block the server on open()
    assert code == 2, msg
    # and the server still serves afterwards
    data = make_file(root, "after.bin", 700)
    assert fetch_raw(server, "after.bin")[1] == data


# ---------------------------------------------------------------- write requests

def test_wrq_refused_tftp_hpa_put(tftp_server, tmp_path, root):
    local = tmp_path / "upload.bin"
    local.write_bytes(os.urandom(3000))
    before = tree_snapshot(tmp_path)
    server = tftp_server(root)
    result = hpa_put(server.port, local, "upload.bin")
    # tftp-hpa reports the ERROR on its output; its exit status means nothing
    assert b"Error code 4" in result.stdout + result.stderr, (result.stdout, result.stderr)
    assert tree_snapshot(tmp_path) == before  # nothing written anywhere
    assert not (root / "upload.bin").exists()


def test_wrq_refused_raw(tftp_server, tmp_path, root):
    before = tree_snapshot(tmp_path)
    server = tftp_server(root)
    code, msg = refused(server, "new.bin", opcode=OP_WRQ)
    assert code == 4, msg
    code, msg = refused(server, "../escape.bin", opcode=OP_WRQ, options={"blksize": 1468})
    assert code == 4, msg
    time.sleep(0.1)
    assert tree_snapshot(tmp_path) == before
    assert server.transfers() == []


# ---------------------------------------------------------------- option negotiation

def test_blksize_below_minimum_error_8(tftp_server, root):
    make_file(root, "f.bin", 100)
    server = tftp_server(root)
    code, msg = refused(server, "f.bin", {"blksize": 4})
    assert code == 8, msg


def test_blksize_above_maximum_capped(tftp_server, root):
    data = make_file(root, "f.bin", 200_000)
    server = tftp_server(root)
    (op, _, opts), got = fetch_raw(server, "f.bin", {"blksize": 70000})
    assert op == OP_OACK
    granted = int(opts["blksize"])
    assert 512 <= granted <= 65464, opts
    assert got == data
    rec = server.wait_transfers(1, 5)[0]
    assert int(rec["blksize"]) == granted


def test_blksize_max_option(tftp_server, root):
    data = make_file(root, "f.bin", 5000)
    server = tftp_server(root, "--blksize-max", "1024")
    (op, _, opts), got = fetch_raw(server, "f.bin", {"blksize": 1468, "tsize": 0})
    assert op == OP_OACK and opts == {"blksize": "1024", "tsize": "5000"}
    assert got == data


def test_window_bytes_max_option(tftp_server, root):
    data = make_file(root, "f.bin", 50_000)
    server = tftp_server(root, "--window-bytes-max", "4096")
    (op, _, opts), got = fetch_raw(server, "f.bin", {"blksize": 1024, "windowsize": 64})
    assert op == OP_OACK and opts == {"blksize": "1024", "windowsize": "4"}
    assert got == data


def test_unknown_option_ignored(tftp_server, root):
    data = make_file(root, "f.bin", 1500)
    server = tftp_server(root)
    # only unknown options: no OACK at all, DATA 1 at 512 bytes (RFC 2347)
    (op, num, payload), got = fetch_raw(server, "f.bin", {"x-frobnicate": "yes"})
    assert (op, num, len(payload)) == (OP_DATA, 1, 512)
    assert got == data
    # unknown next to known ones: the OACK carries only the known ones
    (op, _, opts), got = fetch_raw(server, "f.bin", {"x-frobnicate": "yes", "blksize": 1000,
                                                     "multicast": ""})
    assert op == OP_OACK and opts == {"blksize": "1000"}
    assert got == data


def test_no_blocksize_ignores_blksize(tftp_server, root, tmp_path):
    data = make_file(root, "f.bin", 3000)
    server = tftp_server(root, "--no-blocksize")
    (op, num, payload), got = fetch_raw(server, "f.bin", {"blksize": 1468})
    assert (op, num, len(payload)) == (OP_DATA, 1, 512)
    assert got == data
    (op, _, opts), got = fetch_raw(server, "f.bin", {"blksize": 1468, "tsize": 0})
    assert op == OP_OACK and opts == {"tsize": "3000"}
    assert got == data
    # blksize 4 is ignored too rather than refused
    (op, num, payload), got = fetch_raw(server, "f.bin", {"blksize": 4})
    assert (op, len(payload)) == (OP_DATA, 512)
    # a real client that insists on blksize still works (busybox notes the quirk: with
    # -b and no OACK it falls back to 512, which is right here)
    out = tmp_path / "hpa.out"
    assert hpa_get(server.port, "f.bin", out).returncode == 0
    assert sha256_file(out) == sha256(data)


def test_lowercase_maps_names(tftp_server, root):
    data = make_file(root, "pxelinux.0", 2000)
    make_file(root, "boot/grub/grub.cfg", 10)
    plain = tftp_server(root)
    assert refused(plain, "PXELINUX.0")[0] == 1
    server = tftp_server(root, "--lowercase")
    assert fetch_raw(server, "PXELINUX.0")[1] == data
    assert fetch_raw(server, "PxeLinux.0")[1] == data
    assert len(fetch_raw(server, "BOOT\\GRUB\\Grub.CFG")[1]) == 10
    # the log keeps the name as the client sent it
    names = {r["file"] for r in server.wait_transfers(3, 5)}
    assert "PXELINUX.0" in names


def test_backslash_path(tftp_server, root):
    data = make_file(root, "sub/file", 1234)
    server = tftp_server(root)
    assert fetch_raw(server, "sub\\file")[1] == data
    assert fetch_raw(server, "\\sub\\file")[1] == data


def test_malformed_requests(tftp_server, root):
    make_file(root, "f.bin", 10)
    server = tftp_server(root)
    assert refused(server, "f.bin", mode="mail")[0] == 4  # unsupported mode
    assert refused(server, "f.bin", {"blksize": 1000, "BLKSIZE": 1000})[0] == 8  # duplicate
    with RawClient(server.addr) as c:
        c.send(b"\x00\x01f.bin\x00octet", server.addr)  # no final NUL
        op, code, _, _ = c.recv(2)
        assert (op, code) == (OP_ERROR, 4)
        # not a request at all: dropped, never answered
        c.send(ack(1), server.addr)
        c.send(b"\x00", server.addr)
        with pytest.raises(socket.timeout):
            c.recv(0.3)
    # the server is still fine
    assert len(fetch_raw(server, "f.bin")[1]) == 10


def test_mode_is_case_insensitive(tftp_server, root):
    data = make_file(root, "f.bin", 600)
    server = tftp_server(root)
    assert fetch_raw(server, "f.bin", mode="OCTET")[1] == data


# ---------------------------------------------------------------- transfer IDs

def test_stranger_on_the_shared_port_is_dropped_and_the_transfer_goes_on(tftp_server, root):
    """A lock-step transfer's port is shared: a datagram from an address and port with no
    transfer there is counted and gets no answer (an ERROR 5 could be taken by a client that
    reused its port as the answer to its next request)."""
    data = make_file(root, "f.bin", 20 * 512 + 7)
    # the client waits a second for the stranger's answer before it ACKs: a longer first
    # retransmission timeout than that keeps "no retransmission" below a fact, not a race
    server = tftp_server(root, "--retransmit-timeout", "5")
    with RawClient(server.addr) as c, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        c.send_rrq("f.bin")
        num, first = c.expect(OP_DATA, 2)
        assert num == 1
        stranger.settimeout(1)
        stranger.connect(c.peer)
        stranger.send(ack(1))
        with pytest.raises(socket.timeout):
            stranger.recv(600)
        # the client's transfer is untouched and completes byte-exact
        got = c.download(first=(OP_DATA, 1, first), max_seconds=20)
    assert sha256(got) == sha256(data)
    rec = server.wait_transfers(1, 5)[0]
    assert (rec["outcome"], rec["retransmits"]) == ("ok", "0")
    os.kill(server.pid, signal.SIGUSR1)
    stats = server.wait_events("tftp-stats", 1, 5)
    assert stats and stats[0]["strangers"] == "1", stats


def test_stranger_on_a_windowed_transfer_port_is_refused(tftp_server, root):
    """A windowed transfer has its own port, connected to its client: the kernel answers a
    stranger with ICMP port unreachable, which a connected socket sees as ECONNREFUSED."""
    data = make_file(root, "f.bin", 20 * 512 + 7)
    server = tftp_server(root)
    with RawClient(server.addr) as c, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        c.send_rrq("f.bin", options={"windowsize": 2})
        num, oack = c.expect(OP_OACK, 2)
        stranger.settimeout(2)
        stranger.connect(c.peer)
        stranger.send(ack(1))
        with pytest.raises(ConnectionRefusedError):
            stranger.recv(600)
        got = c.download(first=(OP_OACK, num, oack), max_seconds=20)
    assert sha256(got) == sha256(data)
    rec = server.wait_transfers(1, 5)[0]
    assert (rec["outcome"], rec["windowsize"], rec["retransmits"]) == ("ok", "2", "0"), rec


def test_client_that_vanishes_frees_its_transfer(tftp_server, root):
    make_file(root, "f.bin", 20 * 512 + 7)
    server = tftp_server(root, "--retransmit-timeout", "0.2")
    with RawClient(server.addr) as c:
        c.send_rrq("f.bin")
        assert c.expect(OP_DATA, 2)[0] == 1
    # the client's port is closed: the first retransmission meets ICMP port unreachable on
    # the connected socket, and the transfer ends then, not after the 30 s give-up timeout
    rec = server.wait_transfers(1, 5)[0]
    assert (rec["outcome"], rec["bytes"], rec["retransmits"]) == ("unreachable", "0", "1"), rec
    assert float(rec["seconds"]) < 2, rec


def test_retransmitted_rrq_starts_one_transfer(tftp_server, root):
    data = make_file(root, "f.bin", 5000)
    server = tftp_server(root)
    with RawClient(server.addr) as c:
        port = c.port
        c.send_rrq("f.bin", options={"blksize": 1024})
        c.send_rrq("f.bin", options={"blksize": 1024})
        c.send_rrq("f.bin", options={"blksize": 1024})
        got = c.download(max_seconds=20)
        # no second transfer port ever speaks to this client
        tid = c.peer
        extra = []
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            try:
                _, _, _, addr = c.recv(0.1)
            except socket.timeout:
                continue
            extra.append(addr)
        assert all(a == tid for a in extra), extra
    assert got == data
    server.wait_transfers(1, 5)
    time.sleep(0.3)
    recs = server.transfers(client=f"127.0.0.1:{port}")
    assert len(recs) == 1, recs
    assert recs[0]["outcome"] == "ok"


def test_uefi_tsize_probe(tftp_server, root):
    data = make_file(root, "bootx64.efi", 100_000)
    server = tftp_server(root)
    with RawClient(server.addr) as c:
        c.send_rrq("bootx64.efi", options={"tsize": 0, "blksize": 1468, "windowsize": 4})
        op, _, opts, addr = c.recv(2)
        assert op == OP_OACK
        assert opts == {"tsize": "100000", "blksize": "1468", "windowsize": "4"}
        c.send(error(8, "User aborted the transfer"))
        probe_port = c.port
    rec = server.wait_transfers(1, 5)
    assert rec and rec[0]["outcome"] == "tsize-probe", rec
    assert rec[0]["client"] == f"127.0.0.1:{probe_port}"
    assert rec[0].get("error_code") == "8"
    with RawClient(server.addr) as c:
        c.send_rrq("bootx64.efi", options={"blksize": 1468, "windowsize": 4})
        got = c.download(max_seconds=20)
    assert sha256(got) == sha256(data)
    recs = server.wait_transfers(2, 5)
    assert [r["outcome"] for r in recs] == ["tsize-probe", "ok"]


def test_client_error_mid_transfer(tftp_server, root):
    make_file(root, "f.bin", 10_000)
    server = tftp_server(root)
    with RawClient(server.addr) as c:
        c.send_rrq("f.bin")
        c.expect(OP_DATA, 2)
        c.send(ack(1))
        c.expect(OP_DATA, 2)
        c.send(error(3, "disk full"))
    rec = server.wait_transfers(1, 5)[0]
    assert rec["outcome"] == "client-error" and rec["error_code"] == "3", rec
    assert rec["bytes"] == "512"


def test_tsize_of_served_file(tftp_server, root):
    make_file(root, "f.bin", 123_457)
    server = tftp_server(root)
    with RawClient(server.addr) as c:
        c.send_rrq("f.bin", options={"tsize": 0})
        op, _, opts, _ = c.recv(2)
        assert op == OP_OACK and opts == {"tsize": "123457"}
        c.send(error(0, "done"))
