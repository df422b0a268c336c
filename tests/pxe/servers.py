"""Start and stop servers inside a test namespace: dnsmasq (the reference) and bootstorm.

``start(cmd, host)`` runs any command in ``host``'s namespace with its output in a log
file, and waits until it is ready: a line on its output matching ``ready_line`` (for
bootstorm: ``ProxyDHCP listening``) and/or the UDP ports in ``ports`` bound there
(polled with ``ss -uln`` in the namespace; how we know dnsmasq is ready).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from .netns import IFNAME, Host, run

READY_TIMEOUT = 10.0
BOOTSTORM_READY = "ProxyDHCP listening"


def bound_udp_ports(ns: str) -> set[int]:
    cp = run(["ip", "netns", "exec", ns, "ss", "-H", "-uln"], check=False)
    ports = set()
    for line in cp.stdout.splitlines():
        cols = line.split()
        # State Recv-Q Send-Q Local:Port Peer:Port  (ss -H drops the header)
        for col in cols[3:4]:
            m = re.search(r":(\d+)$", col)
            if m:
                ports.add(int(m.group(1)))
    return ports


@dataclass
class Server:
    """A running server process in a namespace."""

    name: str
    argv: list[str]
    host: Host
    proc: subprocess.Popen
    log_path: Path
    workdir: Path
    _log: object = field(repr=False, default=None)

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        if self._log:
            self._log.close()
            self._log = None
        return self.proc.returncode

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start(cmd: Sequence[str], host: Host, *, name: str | None = None, workdir: Path | str | None = None,
          ready_line: str | None = None, ports: Iterable[int] = (), timeout: float = READY_TIMEOUT,
          env: dict[str, str] | None = None) -> Server:
    """Start ``cmd`` in ``host``'s namespace; return once it is ready (or raise with its log)."""
    name = name or Path(cmd[0]).name
    wd = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix=f"bs-{name}-"))
    log_path = wd / f"{name}.log"
    log = open(log_path, "wb")
    argv = ["ip", "netns", "exec", host.ns, *cmd]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            cwd=wd, env={**os.environ, **(env or {})}, start_new_session=True)
    srv = Server(name=name, argv=list(cmd), host=host, proc=proc, log_path=log_path, workdir=wd, _log=log)
    want = set(ports)
    deadline = time.monotonic() + timeout
    pat = re.compile(ready_line) if ready_line else None
    while True:
        if proc.poll() is not None:
            srv.stop()
            raise RuntimeError(f"{name} exited with {proc.returncode} before it was ready:\n{srv.log}")
        ok = True
        if pat is not None and not pat.search(srv.log):
            ok = False
        if ok and want and not want <= bound_udp_ports(host.ns):
            ok = False
        if ok:
            return srv
        if time.monotonic() > deadline:
            srv.stop()
            raise RuntimeError(f"{name} not ready after {timeout}s (waiting for "
                               f"{ready_line or ''} ports {sorted(want)}):\n{srv.log}")
        time.sleep(0.05)


# --- dnsmasq -------------------------------------------------------------------------
def dnsmasq_conf(workdir: Path, body: str, *, interface: str = IFNAME) -> Path:
    """Write a dnsmasq conf file: ``body`` plus the lines every test instance needs
    (its own lease file, no DNS files, only our interface)."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "dnsmasq.conf"
    conf.write_text(
        f"interface={interface}\n"
        "bind-interfaces\n"
        "no-resolv\nno-hosts\n"
        f"dhcp-leasefile={workdir / 'leases'}\n"
        "log-dhcp\n"
        + body.strip() + "\n"
    )
    return conf


def dnsmasq_argv(conf: Path, exe: str | None = None) -> list[str]:
    """FACTS.md's reference command line for PXE tests (exe: another dnsmasq build)."""
    return [exe or shutil.which("dnsmasq") or "/usr/sbin/dnsmasq", "--no-daemon", "--port=0", "--pid-file=",
            f"--conf-file={conf}"]


def start_dnsmasq(host: Host, body: str, *, workdir: Path, ports: Iterable[int] = (67, 4011),
                  name: str = "dnsmasq") -> Server:
    """dnsmasq in ``host``'s namespace with the conf ``body``; ready when ``ports`` are bound."""
    conf = dnsmasq_conf(workdir, body)
    return start(dnsmasq_argv(conf), host, name=name, workdir=workdir, ports=ports)


def bootstorm_cmd() -> list[str]:
    """How to run bootstorm: its console script as installed, else the checkout's module."""
    exe = shutil.which("bootstorm")
    return [exe] if exe else [sys.executable, "-m", "bootstorm"]


def start_bootstorm(host: Host, *, conf_file: Path | None = None, toml: Path | None = None,
                    body: str | None = None, workdir: Path, extra: Sequence[str] = (),
                    ports: Iterable[int] = (67, 4011)) -> Server:
    """bootstorm by its contract: ``bootstorm --conf-file=F --no-daemon`` (dnsmasq syntax, in
    the debug mode the dnsmasq reference runs in: both keep root, where ``-k`` would make both
    give it up, tests/pxe/test_privileges.py) or ``bootstorm serve --config F.toml``; ready
    on ``ProxyDHCP listening``.
    ``body`` writes the conf file exactly as :func:`start_dnsmasq` does for dnsmasq
    (same header lines), so both servers read the same file."""
    if body is not None:
        conf_file = dnsmasq_conf(workdir, body)
    base = bootstorm_cmd()
    if conf_file is not None:
        argv = [*base, f"--conf-file={conf_file}", "--no-daemon", *extra]
    elif toml is not None:
        argv = [*base, "serve", "--config", str(toml), *extra]
    else:
        raise ValueError("conf_file or toml")
    return start(argv, host, name="bootstorm", workdir=workdir, ready_line=BOOTSTORM_READY, ports=ports)
