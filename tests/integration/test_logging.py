"""The log lines a transfer leaves, in text and in JSON."""
from __future__ import annotations

import json
import os
import re
import signal

from tftp_harness import LISTEN_RE, OP_OACK, RawClient, error, make_file

TRANSFER_KEYS = {"client", "file", "bytes", "seconds", "blksize", "windowsize", "outcome",
                 "retransmits"}


def _three_transfers(server):
    """An ok download, a tsize probe and a refused request; returns the ok client's port."""
    with RawClient(server.addr) as c:
        c.send_rrq("f.bin", options={"blksize": 1024, "windowsize": 2})
        c.download(max_seconds=10)
        port = c.port
    with RawClient(server.addr) as c:
        c.send_rrq("f.bin", options={"tsize": 0})
        c.expect(OP_OACK, 2)
        c.send(error(8, "tsize only"))
    with RawClient(server.addr) as c:
        c.send_rrq("missing.bin")
        c.recv(2)
    return port


def test_text_log_line(tftp_server, tmp_path):
    root = tmp_path / "root"
    make_file(root, "f.bin", 5000)
    server = tftp_server(root)
    port = _three_transfers(server)
    server.wait_transfers(2, 5)
    lines = [l for l in server.snapshot() if " tftp-transfer " in l]
    rx = re.compile(r"^\S+ tftp-transfer client=127\.0\.0\.1:(\d+) file=(\S+) bytes=(\d+) "
                    r"seconds=([\d.]+) blksize=(\d+) windowsize=(\d+) outcome=(\S+) "
                    r"retransmits=(\d+)( error_code=(\d+))?$")
    m = rx.match(lines[0])
    assert m, lines[0]
    assert (int(m[1]), m[2], int(m[3]), int(m[5]), int(m[6]), m[7], m[9]) == \
        (port, "f.bin", 5000, 1024, 2, "ok", None)
    m = rx.match(lines[1])
    assert m, lines[1]
    assert (m[7], m[10]) == ("tsize-probe", "8")


def test_json_log_format(tftp_server, tmp_path):
    root = tmp_path / "root"
    make_file(root, "f.bin", 5000)
    server = tftp_server(root, "--log-format", "json")
    port = _three_transfers(server)
    server.wait_transfers(2, 5)
    assert server.stop() == 0
    records = []
    for line in server.snapshot():
        rec = json.loads(line)  # every line, the start-up announcement too, is one JSON object
        assert isinstance(rec, dict), line
        assert "event" in rec and "time" in rec, rec
        records.append(rec)
    listening = [r for r in records if r["event"] == "tftp-listening"]
    assert len(listening) == 1 and LISTEN_RE.search(listening[0]["message"]), records
    transfers = [r for r in records if r["event"] == "tftp-transfer"]
    assert len(transfers) == 2, records
    ok, probe = transfers
    assert TRANSFER_KEYS <= set(ok), ok
    assert "error_code" not in ok
    assert ok["client"] == f"127.0.0.1:{port}"
    assert (ok["file"], ok["bytes"], ok["blksize"], ok["windowsize"], ok["outcome"],
            ok["retransmits"]) == ("f.bin", 5000, 1024, 2, "ok", 0)
    assert isinstance(ok["seconds"], (int, float)) and 0 <= ok["seconds"] < 10
    assert TRANSFER_KEYS <= set(probe)
    assert (probe["outcome"], probe["error_code"]) == ("tsize-probe", 8)
    refused = [r for r in records if r["event"] == "tftp-refused"]
    assert len(refused) == 1 and refused[0]["code"] == 1, refused
    stats = [r for r in records if r["event"] == "tftp-stats"]
    assert len(stats) == 1, records  # written at SIGTERM
    assert stats[0]["transfers_ok"] == 2 and stats[0]["active"] == 0, stats


def test_sigusr1_logs_the_counters_and_serving_goes_on(tftp_server, tmp_path):
    root = tmp_path / "root"
    data = make_file(root, "f.bin", 5000)
    server = tftp_server(root)
    for expect_ok in (1, 2):
        with RawClient(server.addr) as c:
            c.send_rrq("f.bin")
            assert c.download(max_seconds=10) == data
        server.wait_transfers(expect_ok, 5)
        os.kill(server.pid, signal.SIGUSR1)
        stats = server.wait_events("tftp-stats", expect_ok, 5)
        assert len(stats) == expect_ok, server.snapshot()[-5:]
        assert (stats[-1]["transfers_ok"], stats[-1]["active"]) == (str(expect_ok), "0"), stats
    assert server.proc.poll() is None  # still serving


def test_sighup_and_sigusr2_are_survived(tftp_server, tmp_path):
    """The signals dnsmasq's users send it (SIGHUP: re-read hosts files; SIGUSR2: reopen
    the log file) kill a process that does not handle them: bootstorm says what it did and
    serves on (the log file's reopening: tests/pxe/test_dnsmasq_signals.py)."""
    root = tmp_path / "root"
    data = make_file(root, "f.bin", 5000)
    server = tftp_server(root)
    os.kill(server.pid, signal.SIGHUP)
    assert server.wait_events("sighup", 1, 5), server.snapshot()[-5:]
    os.kill(server.pid, signal.SIGUSR2)  # no log file of its own (stderr): nothing to reopen
    with RawClient(server.addr) as c:
        c.send_rrq("f.bin")
        assert c.download(max_seconds=10) == data
    assert server.wait_transfers(1, 5)
    assert server.proc.poll() is None
