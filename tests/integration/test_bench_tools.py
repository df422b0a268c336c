"""The benchmark's load generator is itself checked: bench/selftest_loadgen.py runs it against
a deliberately lossy in-process server (gaps, duplicates, rollover, a stray TID) and exits 1
when any transfer arrives short or wrong."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.peers import free_udp_port
from bench.tftp import build_tools, run_loadgen
from tftp_harness import require

ROOT = Path(__file__).resolve().parents[2]


def test_loadgen_selftest():
    p = subprocess.run([sys.executable, "-m", "bench.selftest_loadgen"], cwd=ROOT,
                       capture_output=True, text=True, timeout=240)
    lines = p.stdout.splitlines()
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(lines) == 7 and all(line.startswith("ok ") for line in lines), p.stdout


@pytest.mark.parametrize("mode", [[], ["--shared"]], ids=["socket-per-transfer", "shared"])
def test_nullserver_serves_a_storm(tmp_path, mode):
    """The benchmark's bounds are servers too: a storm of lock-step transfers (and a windowed
    one, and curl's request without options) from nullserver, per-transfer sockets or one
    shared socket, arrives whole; more transfers than its 8192 slots, so freed slots are
    taken again."""
    tools = build_tools()
    data = os.urandom(3 * 1468 + 7)  # a short last block
    (tmp_path / "f").write_bytes(data)
    port = free_udp_port()
    server = subprocess.Popen([str(tools["nullserver"]), "--port", str(port), "--root", str(tmp_path),
                               "--max-seconds", "60", *mode], stderr=subprocess.PIPE, text=True)
    try:
        assert "listening" in server.stderr.readline()
        for window in (None, 4):
            res = run_loadgen(port, name="f", size=len(data), verify=tmp_path / "f", concurrency=50,
                              transfers=9000, blksize=1468, windowsize=window, max_seconds=30)
            assert (res["transfers_ok"], res["transfers_failed"]) == (9000, 0), res
        # no options at all (DATA 1 at once, no OACK), from a client that is not ours
        got = subprocess.run([require("curl"), "-sS", "--max-time", "10", f"tftp://127.0.0.1:{port}/f"],
                             capture_output=True, timeout=20)
        assert got.returncode == 0 and got.stdout == data, got.stderr
    finally:
        server.kill()
        server.wait(5)
