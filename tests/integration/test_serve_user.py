"""`bootstorm serve --user`: started as root, every worker gives root up once the port is
bound (dnsmasq's user=), keeps only CAP_NET_ADMIN, and serves on; asked without root, it is
refused with a reason instead of ignored."""
from __future__ import annotations

import os
import pwd
import socket
import subprocess
import sys

import pytest

from tftp_harness import bootstorm_get, make_file, wait_until

CAP_NET_ADMIN = 1 << 12


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_worker_becomes_the_user(tftp_server, tmp_path):
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI is set but the tests do not run as root", pytrace=False)
        pytest.skip("giving up root needs root")
    root = tmp_path / "root"
    root.mkdir(mode=0o755)
    root.chmod(0o755)  # searchable by nobody (tmp_path above it need not be)
    data = make_file(root, "f.bin", 300_000)
    (root / "f.bin").chmod(0o644)
    srv = tftp_server(root, "--user", "nobody", "--workers", "2", "--tftp-port", str(_free_port()))
    assert srv.wait_line(r"running as user nobody, group \S+, keeping CAP_NET_ADMIN only", 5)
    with open(f"/proc/{srv.pid}/task/{srv.pid}/children") as f:
        pids = [srv.pid, *map(int, f.read().split())]
    assert len(pids) == 2, pids
    nobody = str(pwd.getpwnam("nobody").pw_uid)
    for pid in pids:
        st = _status(pid)
        assert st["Uid"].split() == [nobody] * 4, (pid, st)
        assert int(st["CapEff"], 16) == int(st["CapPrm"], 16) == CAP_NET_ADMIN, (pid, st)
    for i in range(4):  # the kernel spreads them over both workers; each must serve
        out = tmp_path / f"got{i}"
        assert bootstorm_get(srv.port, "f.bin", out, blksize=1468).returncode == 0
        assert out.read_bytes() == data
    assert wait_until(lambda: len(srv.transfers(outcome="ok")) == 4, 5), srv.snapshot()


@pytest.mark.parametrize("args, message", [
    (["--group", "nogroup"], "--group goes with --user"),
    (["--user", "no-such-user-x"], "unknown user or group: no-such-user-x"),
])
def test_refused_before_serving(tmp_path, args, message):
    if os.geteuid() != 0 and "--user" in args:
        message = "--user needs bootstorm started as root"
    got = subprocess.run([sys.executable, "-m", "bootstorm", "serve", "--tftp-root", str(tmp_path),
                          "--listen", "127.0.0.1", "--tftp-port", "0", *args],
                         capture_output=True, text=True, timeout=20)
    assert got.returncode == 2, got
    assert message in got.stderr, got.stderr
