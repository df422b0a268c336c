"""The signals dnsmasq's users send, on bootstorm started with dnsmasq's command line as a
user does (root, -k, log-facility=FILE): SIGUSR2 reopens the log file after logrotate moved
it (dnsmasq's log rotation), and the file belongs to the user root was given up to, as
dnsmasq makes it; SIGHUP, which dnsmasq answers by re-reading its hosts and options files,
is logged and survived (bootstorm reads them once); SIGUSR1 logs the counters."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile
import time
from pathlib import Path

from .test_privileges import CONTENT, _bootstorm, _conf, _fetch, _root_only  # noqa: F401 (a fixture)
from .servers import start


def _wait_for(path, text: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:  # bounded by the deadline
        got = path.read_text() if path.exists() else ""
        if text in got or time.monotonic() > deadline:
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
    with start([*_bootstorm(), f"--conf-file={conf}", "-k", f"--pid-file={pid}"], lan_module["srv"],
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
        srv.proc.send_signal(signal.SIGHUP)
        assert "nothing is re-read" in _wait_for(log, "sighup")
        srv.proc.send_signal(signal.SIGUSR1)
        assert "tftp-stats" in _wait_for(log, "tftp-stats")
        assert srv.alive(), log.read_text()
        assert _fetch(lan_module, tmp_path) == CONTENT  # still serving
