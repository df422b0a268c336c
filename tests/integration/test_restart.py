"""A client that starts over from the same address and port (a PXE ROM after a reboot, or a
reused ephemeral port) is served at once; only an RRQ repeated before anything got through
counts as a retransmission."""
from __future__ import annotations

import os
import signal
import time

from tftp_harness import OP_DATA, RawClient, ack, make_file, sha256


def test_new_request_from_the_same_port_replaces_a_dead_transfer(tftp_server, tmp_path):
    root = tmp_path / "root"
    old = make_file(root, "old.bin", 40 * 512)
    new = make_file(root, "new.bin", 3 * 512 + 7)
    server = tftp_server(root)
    with RawClient(server.addr) as c:
        c.send_rrq("old.bin")
        num, payload = c.expect(OP_DATA, 2)
        assert (num, payload) == (1, old[:512])
        c.send(ack(1))
        c.expect(OP_DATA, 2)  # block 2 arrives; the client "reboots" without ACKing it
        # the same socket (address and port) asks again, for another file
        c.peer = None
        c.send_rrq("new.bin")
        got = c.download(max_seconds=10)
        assert sha256(got) == sha256(new)
    records = server.wait_transfers(2, 5)
    assert sorted(r["outcome"] for r in records) == ["ok", "replaced"], records
    replaced = next(r for r in records if r["outcome"] == "replaced")
    assert replaced["file"] == "old.bin"


def test_rrq_repeated_before_any_data_is_a_retransmission(tftp_server, tmp_path):
    root = tmp_path / "root"
    data = make_file(root, "f.bin", 2000)
    server = tftp_server(root)
    with RawClient(server.addr) as c:
        for _ in range(3):
            c.send_rrq("f.bin")
        got = c.download(max_seconds=10)
        assert sha256(got) == sha256(data)
    records = server.wait_transfers(1, 5)
    assert [r["outcome"] for r in server.transfers()] == ["ok"], records


def test_other_request_from_a_port_whose_transfer_never_started(tftp_server, tmp_path):
    """A transfer still waiting for its first ACK (a client that vanished after the OACK)
    does not capture the next client that happens to get the same port."""
    root = tmp_path / "root"
    make_file(root, "empty.bin", 0)
    data = make_file(root, "k40.bin", 40 * 1024)
    server = tftp_server(root)
    with RawClient(server.addr) as c:
        c.send_rrq("empty.bin", options={"tsize": "0"})
        c.expect(6, 2)  # OACK; this client never answers it
        c.peer = None
        c.send_rrq("k40.bin", options={"blksize": "1468", "tsize": "0"})
        op, num, payload, _addr = c.recv(2)
        assert op == 6 and payload.get("tsize") == str(len(data)), (op, payload)
        c.send(ack(0))
        got = c.download(blksize=1468, max_seconds=10)
        assert sha256(got) == sha256(data)
    assert sorted(r["outcome"] for r in server.wait_transfers(2, 5)) == ["ok", "replaced"]


def test_a_finished_transfer_is_not_replaced_by_the_next_request_read_first(tftp_server, tmp_path):
    """A client that ends a transfer and at once asks again from the same port (PXE firmware
    fetching its next file; a load generator reusing its socket): its last ACK goes to the
    transfer's port, the new request to port 69, and the server may read the request first.
    The transfer still ends `ok`, not `replaced` (which counts as failed). The server is
    stopped while the client sends both, the request first, so that it reads it first."""
    root = tmp_path / "root"
    first = make_file(root, "first.bin", 3 * 512 + 7)
    second = make_file(root, "second.bin", 600)
    server = tftp_server(root)
    with RawClient(server.addr) as c:
        c.send_rrq("first.bin")
        for block in (1, 2, 3, 4):
            num, payload = c.expect(OP_DATA, 2)
            assert (num, payload) == (block, first[(block - 1) * 512:block * 512])
            if block < 4:
                c.send(ack(block))
        transfer = c.peer
        time.sleep(0.2)  # the server gives up busy-polling for the ACK and sleeps
        os.kill(server.pid, signal.SIGSTOP)
        try:
            c.peer = None
            c.send_rrq("second.bin")
            c.send(ack(4), transfer)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        assert sha256(c.download(max_seconds=10)) == sha256(second)
    records = server.wait_transfers(2, 5)
    assert [(r["file"], r["outcome"], r["bytes"]) for r in records] == [
        ("first.bin", "ok", str(len(first))), ("second.bin", "ok", str(len(second)))], records
