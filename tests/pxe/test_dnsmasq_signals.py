"""The signals dnsmasq's users send, on bootstorm started with dnsmasq's command line as a
user does (root, -k, log-facility=FILE): SIGUSR2 reopens the log file after logrotate moved
it (dnsmasq's log rotation), and the file belongs to the user root was given up to, as
dnsmasq makes it; SIGHUP re-reads the hosts and options files, as dnsmasq does, and not the
conf files; SIGUSR1 logs the counters."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile
import time
from pathlib import Path

from . import netns
from .conftest import _client_for
from .servers import bootstorm_cmd, dnsmasq_conf, start
from .test_privileges import CONTENT, _conf, _fetch, _root_only  # noqa: F401 (a fixture)


def _wait_for(path, text: str, count: int = 1, timeout: float = 5.0) -> str:
    """The file once it holds text count times, or as it is after timeout."""
    deadline = time.monotonic() + timeout
    while True:  # bounded by the deadline
        got = path.read_text() if path.exists() else ""
        if got.count(text) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def test_rotation_hangup_and_counters(lan_module, tmp_path, _root_only):
    logdir = Path(tempfile.mkdtemp(prefix="bs-log-"))  # under /tmp: reachable once root is gone,
    logdir.chmod(0o755)                                  # as /var/log is (tmp_path is not)
    log = logdir / "bootstorm.log"
    conf = _conf(tmp_path, f"log-facility={log}\n")
    nobody = pwd.getpwnam("nobody").pw_uid
    try:
        _rotate(lan_module, tmp_path, conf, log, nobody)
    finally:
        shutil.rmtree(logdir)


def _rotate(lan_module, tmp_path: Path, conf: Path, log: Path, nobody: int) -> None:
    logdir = log.parent
    pid = logdir / "bootstorm.pid"
    with start([*bootstorm_cmd(), f"--conf-file={conf}", "-k", f"--pid-file={pid}"], lan_module["srv"],
               name="bootstorm", workdir=tmp_path, ports=(69,)) as srv:
        assert "TFTP listening" in _wait_for(log, "TFTP listening"), (log.read_text(), srv.log)
        assert log.stat().st_uid == pid.stat().st_uid == nobody  # as dnsmasq makes them
        assert pid.read_text() == f"{srv.proc.pid}\n"
        assert _fetch(lan_module, tmp_path) == CONTENT
        assert "outcome=ok" in _wait_for(log, "outcome=ok")
        # logrotate: move the file, create the next one for the same owner, then SIGUSR2
        log.rename(logdir / "bootstorm.log.1")
        log.touch(mode=0o640)
        os.chown(log, nobody, -1)
        srv.proc.send_signal(signal.SIGUSR2)
        time.sleep(0.3)
        assert _fetch(lan_module, tmp_path) == CONTENT
        assert "outcome=ok" in _wait_for(log, "outcome=ok"), log.read_text()
        assert (logdir / "bootstorm.log.1").read_text().count("outcome=ok") == 1
        srv.proc.send_signal(signal.SIGHUP)  # no hosts or options file: nothing to read again
        assert "sighup nothing to re-read" in _wait_for(log, "sighup")
        srv.proc.send_signal(signal.SIGUSR1)
        assert "tftp-stats" in _wait_for(log, "tftp-stats")
        assert srv.alive(), log.read_text()
        assert _fetch(lan_module, tmp_path) == CONTENT  # still serving


def test_sighup_rereads_the_hosts_file_not_the_conf_file(lan_module, tmp_path):
    """dnsmasq's SIGHUP: dhcp-hostsfile read again (a dhcp-host=MAC,ignore line taken out,
    then put back: the client is answered, then not), the conf file not (an edit waits for
    a restart); a hosts file with an error changes nothing, and the log says where."""
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{netns.CLIENT_MAC},ignore\n")
    conf = dnsmasq_conf(tmp_path, f'dhcp-range=10.213.0.0,proxy\npxe-service=x86PC,"Boot",pxelinux\n'
                                  f"dhcp-hostsfile={hosts}\n")
    client = _client_for(lan_module)
    with start([*bootstorm_cmd(), f"--conf-file={conf}", "--no-daemon"], lan_module["srv"],
               name="bootstorm", workdir=tmp_path, ready_line="ProxyDHCP listening", ports=(67, 4011)) as srv:
        assert client.discover(0, expect=None, wait=0.4).replies == []  # ignored by the hosts file
        hosts.write_text("# emptied\n")
        srv.proc.send_signal(signal.SIGHUP)
        assert f"sighup re-read {hosts}" in _wait_for(srv.log_path, "sighup re-read", 1), srv.log
        menu = client.discover(0).reply["pxe"]["menu"]  # answered now
        assert [m["desc"] for m in menu] == ["Boot"], menu
        # the conf file edited, the host ignored again: only the hosts file counts
        conf.write_text(conf.read_text() + 'pxe-service=x86PC,"Other",other\n')
        hosts.write_text(f"{netns.CLIENT_MAC},ignore\n")
        srv.proc.send_signal(signal.SIGHUP)
        _wait_for(srv.log_path, "sighup re-read", 2)
        assert client.discover(0, expect=None, wait=0.4).replies == []
        hosts.write_text("")
        srv.proc.send_signal(signal.SIGHUP)
        _wait_for(srv.log_path, "sighup re-read", 3)
        menu = client.discover(0).reply["pxe"]["menu"]
        assert [m["desc"] for m in menu] == ["Boot"], menu  # not "Other": conf files wait
        # an error in the hosts file: the reason with file and line, the answers as before
        hosts.write_text("# fine\nnot-a-mac,ignore\n")
        srv.proc.send_signal(signal.SIGHUP)
        log = _wait_for(srv.log_path, "sighup-failed", 1)
        assert f"sighup-failed {hosts}:2:" in log and "answering as before" in log, log
        assert client.discover(0).reply["pxe"]["menu"]
        assert srv.alive()
