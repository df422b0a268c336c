"""Started as root with dnsmasq's command line, bootstorm gives up root as dnsmasq does: it
becomes `user=` (default nobody) and `group=` (default dip, else the user's own group), with
no supplementary groups and only CAP_NET_ADMIN, once port 69 is bound and the TFTP root is
open; `--no-daemon` (dnsmasq's debug mode) stays root. Checked in /proc while it serves a
client on the other side of a veth pair."""
from __future__ import annotations

import grp
import os
import pwd
import subprocess
import time
from pathlib import Path

import pytest

from . import netns
from .conftest import _client_for
from .servers import bootstorm_cmd, bound_udp_ports, dnsmasq_conf, start

CONTENT = bytes((i * 7 + 3) & 0xFF for i in range(70_000))
CAP_NET_ADMIN = 1 << 12


@pytest.fixture(autouse=True)
def _root_only() -> None:
    """Root, or the test cannot run: a skip on a developer's machine, a failure under CI."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI is set but the tests do not run as root", pytrace=False)
        pytest.skip("giving up root needs root")


def _conf(tmp_path: Path, extra: str = "") -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.bin").write_bytes(CONTENT)
    root.chmod(0o755)  # searchable by nobody; tmp_path above it is not, nor need it be
    (root / "boot.bin").chmod(0o644)
    return dnsmasq_conf(tmp_path, f"port=0\nenable-tftp\ntftp-root={root}\n{extra}")


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _fetch(lan, tmp_path: Path) -> bytes:
    out = tmp_path / "got.bin"
    curl = netns.require_tool("curl")
    got = subprocess.run(lan["cli"].exec_argv([curl, "-sS", "--max-time", "10",
                                               f"tftp://{netns.SERVER_ADDR}/boot.bin", "-o", str(out)]),
                         capture_output=True, text=True, timeout=20)
    assert got.returncode == 0, got.stderr
    return out.read_bytes()


def _default_group(user: str) -> int:
    try:
        return grp.getgrnam("dip").gr_gid
    except KeyError:
        return pwd.getpwnam(user).pw_gid


def _serve(lan, tmp_path: Path, conf: Path, *flags: str, ports=(69,)):
    # --pid-file=: not dnsmasq's /var/run/dnsmasq.pid, which -k would write on this machine
    return start([*bootstorm_cmd(), f"--conf-file={conf}", "--pid-file=", *flags], lan["srv"],
                 name="bootstorm", workdir=tmp_path, ready_line="TFTP listening", ports=ports)


def test_keep_in_foreground_becomes_nobody(lan_module, tmp_path):
    """...and serves on: TFTP from the root opened before, ProxyDHCP on 67 and 4011."""
    conf = _conf(tmp_path, 'dhcp-range=10.213.0.0,proxy\npxe-service=x86PC,"Network Boot",pxelinux\n'
                           'pxe-service=x86-64_EFI,"UEFI",ipxe.efi\n')
    with _serve(lan_module, tmp_path, conf, "--keep-in-foreground", ports=(67, 4011, 69)) as srv:
        st = _status(srv.proc.pid)
        nobody = pwd.getpwnam("nobody").pw_uid
        assert st["Uid"].split() == [str(nobody)] * 4, (st, srv.log)
        assert st["Gid"].split() == [str(_default_group("nobody"))] * 4, st
        assert st["Groups"].strip() == "", st
        assert int(st["CapEff"], 16) == int(st["CapPrm"], 16) == CAP_NET_ADMIN, st
        group = grp.getgrgid(_default_group("nobody")).gr_name
        assert f"running as user nobody, group {group}, keeping CAP_NET_ADMIN only" in srv.log
        assert _fetch(lan_module, tmp_path) == CONTENT, srv.log
        assert "outcome=ok" in srv.log, srv.log
        client = _client_for(lan_module)
        offer = client.discover(0).reply
        assert offer["vendor_class"] == "PXEClient" and offer["pxe"]["menu"], (offer, srv.log)
        ack = client.request_4011(7, sport=4011).reply
        assert ack["msg_type"] == "ACK" and ack["file"] == "ipxe.efi", (ack, srv.log)


def test_user_and_group_lines(lan_module, tmp_path):
    """user=root keeps root but still changes the group, as in dnsmasq."""
    conf = _conf(tmp_path, "user=root\ngroup=nogroup\n")
    with _serve(lan_module, tmp_path, conf, "-k") as srv:
        st = _status(srv.proc.pid)
        assert st["Uid"].split() == ["0"] * 4, st
        assert st["Gid"].split() == [str(grp.getgrnam("nogroup").gr_gid)] * 4, st
        assert st["Groups"].strip() == "", st
        assert _fetch(lan_module, tmp_path) == CONTENT, srv.log


def test_no_daemon_stays_root(lan_module, tmp_path):
    with _serve(lan_module, tmp_path, _conf(tmp_path), "--no-daemon") as srv:
        st = _status(srv.proc.pid)
        assert st["Uid"].split() == ["0"] * 4, st
        assert int(st["CapEff"], 16) & CAP_NET_ADMIN and int(st["CapEff"], 16) != CAP_NET_ADMIN, st
        assert _fetch(lan_module, tmp_path) == CONTENT, srv.log


def test_unknown_user_is_refused_before_serving(lan_module, tmp_path):
    """dnsmasq: "unknown user or group"; nothing is bound (the check comes first). In the
    server's namespace, so that a server that did start would listen there only."""
    conf = _conf(tmp_path, "user=no-such-user-here\n")
    got = subprocess.run(lan_module["srv"].exec_argv([*bootstorm_cmd(), f"--conf-file={conf}", "-k", "--pid-file="]),
                         capture_output=True, text=True, timeout=10)
    assert got.returncode == 2, got
    assert "unknown user or group: no-such-user-here" in got.stderr, got.stderr
    assert "listening" not in got.stderr, got.stderr


def test_a_pid_file_that_cannot_be_written_stops_the_start(lan_module, tmp_path):
    """As dnsmasq: the reason, and no server (dnsmasq's default is /var/run/dnsmasq.pid)."""
    pid = tmp_path / "no-such-dir" / "dnsmasq.pid"
    got = subprocess.run(lan_module["srv"].exec_argv([*bootstorm_cmd(), f"--conf-file={_conf(tmp_path)}",
                                                      "-k", f"--pid-file={pid}"]),
                         capture_output=True, text=True, timeout=10)
    assert got.returncode == 2, got
    assert f"cannot write pid file {pid}: No such file or directory" in got.stderr, got.stderr


def test_without_k_the_start_returns_once_serving_or_failed(lan_module, tmp_path):
    """dnsmasq without -k or -d: the command returns 0 when the daemon serves (port bound,
    pid file written), and non-zero with the reason when it fails first."""
    err = tmp_path / "stderr"
    pid = tmp_path / "bootstorm.pid"
    daemon = None
    try:
        with open(err, "w") as f:  # a file, not a pipe: the daemon keeps it open
            got = subprocess.run(lan_module["srv"].exec_argv(
                [*bootstorm_cmd(), f"--conf-file={_conf(tmp_path)}", f"--pid-file={pid}"]),
                stdout=f, stderr=f, timeout=20)
        assert got.returncode == 0, err.read_text()
        daemon = int(pid.read_text())
        assert 69 in bound_udp_ports(lan_module["srv"].ns)  # serving when the command returned
        assert _fetch(lan_module, tmp_path) == CONTENT
    finally:
        if daemon:
            os.kill(daemon, 15)
            for _ in range(100):  # bounded: 5 s for it to go, port 69 free for the next test
                if not os.path.exists(f"/proc/{daemon}"):
                    break
                time.sleep(0.05)
    (tmp_path / "again").mkdir()
    with open(err, "w") as f:
        got = subprocess.run(lan_module["srv"].exec_argv(
            [*bootstorm_cmd(), f"--conf-file={_conf(tmp_path / 'again')}", f"--pid-file={tmp_path}/no/p"]),
            stdout=f, stderr=f, timeout=20)
    assert got.returncode == 1, err.read_text()
    assert "cannot write pid file" in err.read_text()
