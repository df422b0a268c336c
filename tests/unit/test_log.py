"""Log lines: held lines and preformatted text are written exactly as event() writes them."""
from __future__ import annotations

import io
import json

import pytest

from bootstorm import log as logmod
from bootstorm._native import dhcp
from bootstorm.log import Log
from bootstorm.policy import Answer
from bootstorm.proxydhcp import ProxyDhcpServer


class CountingStream(io.StringIO):
    """A stream that is not line-buffered: Log flushes it after each write it makes."""

    def __init__(self):
        super().__init__()
        self.flushes = 0

    def flush(self):
        self.flushes += 1


def test_text_is_the_line_event_writes():
    a, b = Log(stream=io.StringIO()), Log(stream=io.StringIO())
    a.event("dhcp-reply", "OFFER", interface="eth0", arch=7, to="10.0.0.1:68")
    b.text("dhcp-reply OFFER interface=eth0 arch=7 to=10.0.0.1:68")
    assert a.stream.getvalue() == b.stream.getvalue()
    assert a.stream.getvalue().endswith(" dhcp-reply OFFER interface=eth0 arch=7 to=10.0.0.1:68\n")


def test_held_lines_leave_in_one_write_at_the_end_of_the_block():
    s = CountingStream()
    log = Log(stream=s)
    with log:
        for i in range(5):
            log.event("x", str(i))
        log.text("y z")
        assert s.getvalue() == "" and s.flushes == 0
    assert s.flushes == 1
    assert [line.split(" ", 1)[1] for line in s.getvalue().splitlines()] == ["x 0", "x 1", "x 2", "x 3", "x 4", "y z"]
    log.event("after")  # not held any more: written at once
    assert s.flushes == 2 and s.getvalue().endswith(" after\n")


def test_held_writes_stay_within_a_pipe_write():
    writes = []
    s = CountingStream()
    s.write = lambda text: writes.append(text)
    log = Log(stream=s)
    with log:
        for i in range(200):
            log.event("dhcp-reply", "x" * 50, n=i)
    assert all(len(w) <= logmod.HELD_WRITE_MAX for w in writes) and len(writes) > 1
    lines = "".join(writes).splitlines()
    assert [int(line.rsplit("=", 1)[1]) for line in lines] == list(range(200))


def _reply_line(fmt: str) -> str:
    server = ProxyDhcpServer.__new__(ProxyDhcpServer)
    server.log = Log(fmt, stream=io.StringIO())
    raw = bytearray(300)
    raw[0:3] = b"\x01\x01\x06"
    raw[28:34] = bytes.fromhex("525400123456")
    raw[236:240] = dhcp.MAGIC_COOKIE
    raw[240:250] = bytes((53, 1, 1, 93, 2, 0, 7, 255, 0, 0))
    pkt = dhcp.parse(bytes(raw))
    server._log_reply(pkt, Answer(2, 0, file="bootx64.efi".encode()), "eth0", ("255.255.255.255", 68))
    return server.log.stream.getvalue()


def test_reply_line_text_and_json_carry_the_same_fields():
    text = _reply_line("text").split(" ", 1)[1]
    reference = Log(stream=io.StringIO())
    reference.event("dhcp-reply", "OFFER", interface="eth0", mac="52:54:00:12:34:56", arch=7,
                    request="DISCOVER", file="bootx64.efi", to="255.255.255.255:68")
    assert text == reference.stream.getvalue().split(" ", 1)[1]
    record = json.loads(_reply_line("json"))
    del record["time"]
    assert record == {"event": "dhcp-reply", "interface": "eth0", "mac": "52:54:00:12:34:56", "arch": 7,
                      "request": "DISCOVER", "file": "bootx64.efi", "to": "255.255.255.255:68",
                      "message": "OFFER"}


def _transfer_line(fmt: str, code: int) -> str:
    """The line TftpServer._on_done writes for one ended transfer."""
    from bootstorm.tftp import TftpServer, _Transfer

    server = TftpServer.__new__(TftpServer)
    server.log = Log(fmt, stream=io.StringIO())
    server.transfers = [_Transfer(("10.0.0.7", 2070), "pxelinux.0", 1468, 4, None, b"")]
    server.by_client = {("10.0.0.7", 2070): 0}
    server._release = lambda src: None
    server._on_done(0, "client-error" if code else "ok", code, 26758, 2, 1234)
    return server.log.stream.getvalue()


@pytest.mark.parametrize("code", [0, 3])
def test_transfer_line_text_and_json_carry_the_same_fields(code):
    fields = dict(client="10.0.0.7:2070", file="pxelinux.0", bytes=26758, seconds=1.234,
                  blksize=1468, windowsize=4, outcome="client-error" if code else "ok",
                  retransmits=2)
    if code:
        fields["error_code"] = code
    reference = Log(stream=io.StringIO())
    reference.event("tftp-transfer", **fields)
    assert _transfer_line("text", code).split(" ", 1)[1] == reference.stream.getvalue().split(" ", 1)[1]
    record = json.loads(_transfer_line("json", code))
    del record["time"]
    assert record == {"event": "tftp-transfer", **fields}


class _Batch:
    def __init__(self, batch):
        self.batch = batch

    def receive(self):
        return self.batch


def test_an_internal_error_costs_one_request_and_is_counted_and_logged():
    server = ProxyDhcpServer.__new__(ProxyDhcpServer)
    server.log = Log(stream=io.StringIO())
    server.log_dhcp = True
    server.counters = {"received": 0, "malformed": 0, "internal_errors": 0}
    server._log_malformed = logmod.RateLimited(server.log, "dhcp-malformed", 10)
    server._log_internal = logmod.RateLimited(server.log, "dhcp-internal-error", 10)
    server.sockets = [object(), object()]
    src = ("10.0.0.5", 68)
    server.receivers = [_Batch([(b"first", src, 2, b"\0" * 4), (b"boom", src, 2, b"\0" * 4),
                                (b"third", src, 2, b"\0" * 4)]), None]
    handled = []

    def handle(sock, data, *rest):
        if data == b"boom":
            raise KeyError("a bug")
        handled.append(data)

    server._handle = handle
    server._on_readable(server.sockets[0])
    assert handled == [b"first", b"third"]
    assert server.counters == {"received": 3, "malformed": 0, "internal_errors": 1}
    line = server.log.stream.getvalue()
    assert " dhcp-internal-error KeyError: 'a bug' client=10.0.0.5:68\n" in line, line


def test_with_log_holds_the_block_and_writes_it_even_when_it_raises():
    s = CountingStream()
    log = Log(stream=s)
    with pytest.raises(ValueError):
        with log:
            log.event("a")
            log.event("b")
            assert s.getvalue() == ""
            raise ValueError
    assert [line.split(" ", 1)[1] for line in s.getvalue().splitlines()] == ["a", "b"]
    assert s.flushes == 1
