"""Start and stop the TFTP servers compared by the benchmark, and measure their CPU time.

Every server runs on 127.0.0.1 only, fresh for each measurement, serving a given root.
CPU time is the utime+stime of the server *and every process it forked*:

* preferred: a cgroup v2 directory (``/sys/fs/cgroup/unified`` on this hybrid host, or
  ``/sys/fs/cgroup`` on a pure v2 host) - ``cpu.stat`` ``usage_usec`` includes tasks that
  already exited, so tftpd-hpa's per-transfer children are counted exactly;
* else a cgroup v1 ``cpuacct`` directory (``cpuacct.usage``, same property);
* else ``/proc``: utime+stime+cutime+cstime of the main process plus the live descendants.
  Limitation: a child that exited but was not yet reaped (or whose parent does not wait for
  it) is missed, and a descendant that lives across both samples is only counted while alive.

The process is put into its cgroup by a ``sh`` wrapper that writes its own pid to
``cgroup.procs`` before ``exec``-ing the server, so no child can escape it.

Only processes started here are ever signalled (by pid, from our own cgroup or process tree).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import pin

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOOPBACK = "127.0.0.1"


# ----------------------------------------------------------------------------- cpu accounting
def _cgroup_v2_root() -> Path | None:
    for cand in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
        if (cand / "cgroup.controllers").exists() and os.access(cand, os.W_OK):
            return cand
    return None


def _cgroup_v1_cpuacct() -> Path | None:
    for cand in (Path("/sys/fs/cgroup/cpuacct"), Path("/sys/fs/cgroup/cpu,cpuacct")):
        if (cand / "cpuacct.usage").exists() and os.access(cand, os.W_OK):
            return cand
    return None


class CpuMeter:
    """CPU seconds of one process tree, by cgroup if possible, else by /proc."""

    def __init__(self, tag: str):
        self.kind = "proc"
        self.dir: Path | None = None
        name = f"bootstorm-bench-{tag}-{os.getpid()}-{int(time.monotonic() * 1000)}"
        for kind, root in (("cgroup2", _cgroup_v2_root()), ("cpuacct", _cgroup_v1_cpuacct())):
            if root is None:
                continue
            try:
                d = root / name
                d.mkdir()
                self.kind, self.dir = kind, d
                break
            except OSError:
                continue
        self.pid: int | None = None

    def wrap(self, argv: list[str]) -> list[str]:
        if self.dir is None:
            return argv
        procs = self.dir / "cgroup.procs"
        return ["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh", *argv]

    def seconds(self) -> float:
        if self.kind == "cgroup2":
            for line in (self.dir / "cpu.stat").read_text().splitlines():
                k, v = line.split()
                if k == "usage_usec":
                    return int(v) / 1e6
            return 0.0
        if self.kind == "cpuacct":
            return int((self.dir / "cpuacct.usage").read_text()) / 1e9
        return proc_tree_seconds(self.pid) if self.pid else 0.0

    def split(self) -> tuple[float, float] | None:
        """(user, system) CPU seconds, where the cgroup tells them apart (cgroup v2)."""
        if self.kind != "cgroup2":
            return None
        d = dict(line.split() for line in (self.dir / "cpu.stat").read_text().splitlines())
        return int(d.get("user_usec", 0)) / 1e6, int(d.get("system_usec", 0)) / 1e6

    def pids(self) -> list[int]:
        if self.dir is not None:
            try:
                return [int(x) for x in (self.dir / "cgroup.procs").read_text().split()]
            except OSError:
                return []
        return _descendants(self.pid) if self.pid else []

    def close(self) -> None:
        if self.dir is None:
            return
        for _ in range(50):  # bounded: 5 s
            try:
                self.dir.rmdir()
                return
            except OSError:
                time.sleep(0.1)

    @property
    def note(self) -> str:
        if self.kind == "proc":
            return ("/proc sum of the process tree: children that exited unreaped are missed")
        return f"{self.kind} ({self.dir})"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        s = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()  # fields from 3 (state) on


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        f = _stat_fields(int(p.name))
        if f:
            children.setdefault(int(f[1]), []).append(int(p.name))
    out, todo = [], [pid]
    while todo and len(out) < 100000:
        q = todo.pop()
        out.append(q)
        todo.extend(children.get(q, ()))
    return out


def proc_tree_seconds(pid: int) -> float:
    """User + system time of pid, its live descendants and the children it reaped (/proc)."""
    total = 0
    for i, q in enumerate(_descendants(pid)):
        f = _stat_fields(q)
        if not f:
            continue
        # utime stime cutime cstime are fields 14..17 -> indexes 11..14 here
        total += int(f[11]) + int(f[12])
        if i == 0:
            total += int(f[13]) + int(f[14])  # reaped children of the main process
    return total / CLK_TCK


# ----------------------------------------------------------------------------- readiness
def udp_bound(addr: str, port: int) -> bool:
    """Is something bound to UDP addr:port (or 0.0.0.0:port)?"""
    want = {_hexaddr(addr, port), _hexaddr("0.0.0.0", port)}
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1] in want for line in lines if line.strip())


def _hexaddr(addr: str, port: int) -> str:
    a = bytes(int(x) for x in addr.split("."))
    return f"{int.from_bytes(a, 'little'):08X}:{port:04X}"


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- peers
class Peer:
    """One server under test.  Subclasses define argv(); the rest is shared."""

    name = "?"
    fixed_port: int | None = None  # a peer that cannot listen elsewhere (dnsmasq: 69)
    windowsize = False  # does it negotiate RFC 7440 windowsize?
    ready_line: re.Pattern | None = None

    def __init__(self):
        self.proc: subprocess.Popen | None = None
        self.meter: CpuMeter | None = None
        self.port: int | None = None
        self._log: list[str] = []
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()

    # -- to override
    @classmethod
    def available(cls) -> tuple[bool, str]:
        raise NotImplementedError

    def argv(self, root: str, port: int) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    # -- shared
    def start(self, root: str, port: int | None = None, timeout: float = 20.0) -> int:
        if self.proc is not None:
            raise RuntimeError(f"{self.name} already running")
        port = self.fixed_port or port or free_udp_port()
        if udp_bound(LOOPBACK, port):
            raise RuntimeError(f"{self.name}: UDP port {port} is already in use on {LOOPBACK}")
        self.port = port
        self.meter = CpuMeter(self.name)
        argv = self.meter.wrap(self.argv(root, port))
        self._log = []
        self._ready.clear()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=self.env(),
            start_new_session=True,
            preexec_fn=pin.server(),
        )
        self.meter.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self._reader.join(1)
                self._cleanup()
                raise RuntimeError(f"{self.name} exited with {rc}: " + " | ".join(self._log[-5:]))
            bound = udp_bound(LOOPBACK, port)
            if bound and (self.ready_line is None or self._ready.is_set()):
                return port
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} not ready on {LOOPBACK}:{port} after {timeout}s: "
                           + " | ".join(self._log[-5:]))

    def _read_stderr(self):
        assert self.proc and self.proc.stderr
        for raw in self.proc.stderr:  # ends when the process (and its children) close it
            line = raw.decode(errors="replace").rstrip()
            if len(self._log) < 2000:
                self._log.append(line)
            if self.ready_line is not None and self.ready_line.search(line):
                self._ready.set()

    def cpu_seconds(self) -> float:
        return self.meter.seconds() if self.meter else 0.0

    def log_tail(self, n: int = 10) -> list[str]:
        return self._log[-n:]

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL, only to the processes this Peer started."""
        if self.proc is None:
            return None
        rc = self.proc.poll()
        if rc is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait(timeout)
        # leftovers (e.g. tftpd-hpa children still finishing a transfer)
        for _ in range(3):
            left = [p for p in self.meter.pids() if p != os.getpid()] if self.meter else []
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        if self._reader:
            self._reader.join(2)
        self._cleanup()
        return rc

    def _cleanup(self):
        if self.proc and self.proc.stderr:
            self.proc.stderr.close()
        if self.meter:
            self.meter.close()
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


HERE = Path(__file__).resolve().parent
BUILD = HERE / "build"
PYENV = BUILD / "pyenv"  # throwaway venv: matplotlib and the Python peers (python -m bench --setup)


class Dnsmasq(Peer):
    """dnsmasq 2.90: TFTP always listens on port 69 (no option moves the well-known port;
    --tftp-port-range only sets the transfer ports).  DNS off, DHCP off."""

    name = "dnsmasq"
    fixed_port = 69
    missing = "dnsmasq not installed"

    @classmethod
    def exe(cls) -> str | None:
        return shutil.which("dnsmasq") or ("/usr/sbin/dnsmasq" if os.path.exists("/usr/sbin/dnsmasq") else None)

    @classmethod
    def available(cls):
        exe = cls.exe()
        if not exe:
            return False, cls.missing
        v = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
        return True, v.splitlines()[0] if v else exe

    def argv(self, root, port):
        return [
            self.exe(),
            "--no-daemon", "--port=0", "--pid-file=", "--conf-file=/dev/null",
            "--enable-tftp", f"--tftp-root={root}", "--tftp-max=1000",
            "--edns-packet-max=65535", f"--listen-address={LOOPBACK}", "--bind-interfaces",
            "--log-facility=-",
        ]


class Dnsmasq292(Dnsmasq):
    """dnsmasq 2.92, the first to grant windowsize (up to 32 blocks) and honour timeout,
    built from a source tree by `python -m bench --setup --dnsmasq-src DIR` into
    bench/build/dnsmasq-2.92 (Debian 12 ships 2.90; the bench does not download sources)."""

    name = "dnsmasq-2.92"
    windowsize = True
    EXE = BUILD / "dnsmasq-2.92" / "src" / "dnsmasq"
    missing = (f"{EXE} missing: run `python -m bench --setup --dnsmasq-src DIR` "
               "with a dnsmasq 2.92 source tree")

    @classmethod
    def exe(cls) -> str | None:
        return str(cls.EXE) if cls.EXE.exists() else None


class TftpdHpa(Peer):
    """tftpd-hpa 5.2 in standalone mode; it forks one child per transfer."""

    name = "tftpd-hpa"
    EXE = "/usr/sbin/in.tftpd"

    @classmethod
    def available(cls):
        if not os.path.exists(cls.EXE):
            return False, "in.tftpd not installed"
        p = subprocess.run([cls.EXE, "-V"], capture_output=True, text=True, timeout=10)
        v = (p.stdout + p.stderr).strip()
        if "tftp-hpa" not in v:
            return False, f"{cls.EXE} is not tftpd-hpa ({v.splitlines()[0] if v else '?'})"
        return True, v.splitlines()[0]

    def argv(self, root, port):
        return [self.EXE, "--listen", "--foreground", "--address", f"{LOOPBACK}:{port}",
                "--secure", root]


class Bootstorm(Peer):
    """bootstorm serve; ready when stderr says 'listening on 127.0.0.1:PORT'."""

    name = "bootstorm"
    windowsize = True

    def __init__(self, extra: tuple[str, ...] = ()):
        super().__init__()
        self.extra = list(extra)  # a variant's options (bench/tftp.py VARIANTS)

    @classmethod
    def _cmd(cls) -> list[str] | None:
        exe = shutil.which("bootstorm")
        if exe:
            return [exe]
        probe = subprocess.run([sys.executable, "-c", "import bootstorm.cli"],
                               capture_output=True, timeout=30, env=cls._pyenv())
        if probe.returncode == 0 and (REPO / "src/bootstorm/__main__.py").exists():
            return [sys.executable, "-m", "bootstorm"]
        return None

    @staticmethod
    def _pyenv() -> dict[str, str]:
        env = dict(os.environ)
        src = str(REPO / "src")
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        return env

    @classmethod
    def available(cls):
        cmd = cls._cmd()
        if not cmd:
            return False, "no `bootstorm` command (and no importable bootstorm.cli + __main__)"
        return True, f"{' '.join(cmd)} (PYTHONPATH={REPO / 'src'}: this checkout's code)"

    def env(self):
        return self._pyenv()

    def argv(self, root, port):
        self.ready_line = re.compile(rf"listening on {re.escape(LOOPBACK)}:{port}\b")
        return [*self._cmd(), "serve", "--tftp-root", root, "--listen", LOOPBACK,
                "--tftp-port", str(port), *self.extra]


class Atftpd(Peer):
    """atftpd 0.8.0, unpacked from its Debian package into bench/build/atftpd (it conflicts
    with tftpd-hpa as a package: both ship /usr/sbin/in.tftpd).  Multi-threaded, one thread
    per transfer; grants windowsize.  --maxthread raised from 100 to 1000 (as dnsmasq's
    tftp-max) so that the storms are not refused."""

    name = "atftpd"
    windowsize = True
    EXE = BUILD / "atftpd" / "usr" / "sbin" / "atftpd"

    @classmethod
    def available(cls):
        if not cls.EXE.exists():
            return False, f"{cls.EXE} missing: run `python -m bench --setup` (apt-get download atftpd; dpkg -x)"
        p = subprocess.run([str(cls.EXE), "--version"], capture_output=True, text=True, timeout=10)
        v = (p.stdout + p.stderr).strip()
        return True, v.splitlines()[0] if v else str(cls.EXE)

    def argv(self, root, port):
        return [str(self.EXE), "--daemon", "--no-fork", "--bind-address", LOOPBACK,
                "--port", str(port), "--maxthread", "1000", "--logfile", "/dev/null",
                "--user", "nobody", "--group", "nogroup", root]


class PyServer(Peer):
    """A pure-Python server from the bench venv, started by bench/pyservers.py."""

    LAUNCHER = HERE / "pyservers.py"

    @classmethod
    def available(cls):
        py = PYENV / "bin" / "python"
        if not py.exists():
            return False, f"{py} missing: run `python -m bench --setup`"
        p = subprocess.run([str(py), "-c", f"import {cls.name}, importlib.metadata as m; "
                            f"print(m.version('{cls.name}'))"],
                           capture_output=True, text=True, timeout=30)
        if p.returncode:
            return False, f"{cls.name} not importable in {PYENV}: {p.stderr.strip()[-200:]}"
        return True, f"{cls.name} {p.stdout.strip()} (python {PYENV})"

    def argv(self, root, port):
        self.ready_line = re.compile(rf"listening on {re.escape(LOOPBACK)}:{port}\b")
        return [str(PYENV / "bin" / "python"), str(self.LAUNCHER), self.name, "--root", root,
                "--port", str(port)]


class Tftpy(PyServer):
    """tftpy: one thread, select() over all sessions; no windowsize."""
    name = "tftpy"


class Py3tftp(PyServer):
    """py3tftp: asyncio, one datagram endpoint per transfer; grants windowsize."""
    name = "py3tftp"
    windowsize = True


class Fbtftp(PyServer):
    """fbtftp (Facebook): one forked process per transfer; no windowsize."""
    name = "fbtftp"


class NullServer(Peer):
    """bench/nullserver.c: a minimal C server, only to show loadgen's own ceiling."""

    name = "null"
    windowsize = True
    SRC = Path(__file__).resolve().parent / "nullserver.c"
    EXE = Path(__file__).resolve().parent / "build" / "nullserver"

    @classmethod
    def available(cls):
        if not cls.EXE.exists() or cls.EXE.stat().st_mtime < cls.SRC.stat().st_mtime:
            cls.EXE.parent.mkdir(parents=True, exist_ok=True)
            p = subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", str(cls.EXE), str(cls.SRC)],
                               capture_output=True, text=True, timeout=120)
            if p.returncode:
                return False, "cannot build nullserver: " + p.stderr[-300:]
        return True, str(cls.EXE)

    def argv(self, root, port):
        self.ready_line = re.compile(rf"listening on {re.escape(LOOPBACK)}:{port}\b")
        return [str(self.EXE), "--port", str(port), "--root", root, "--max-seconds", "900"]


class NullShared(NullServer):
    """nullserver --shared: lock-step transfers on one socket, a batch of ACKs per recvmmsg
    and their DATA in one sendmmsg; the floor of server CPU per GB for S1 (bench/tftp.py)."""

    name = "null-shared"

    def argv(self, root, port):
        return super().argv(root, port) + ["--shared"]


PEERS: dict[str, type[Peer]] = {p.name: p for p in (
    Dnsmasq, Dnsmasq292, TftpdHpa, Atftpd, Bootstorm, Tftpy, Py3tftp, Fbtftp, NullServer, NullShared)}
# null is in every run: what the load generator and the kernel allow any server on this machine
DEFAULT_PEERS = ["dnsmasq", "dnsmasq-2.92", "tftpd-hpa", "atftpd", "bootstorm", "tftpy", "py3tftp", "fbtftp",
                 "null"]


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.peers ROOT [NAME...]`: start each peer, print its port, stop it."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("root")
    ap.add_argument("names", nargs="*", default=DEFAULT_PEERS)
    a = ap.parse_args(argv)
    for n in a.names:
        ok, why = PEERS[n].available()
        print(f"{n}: {'available' if ok else 'unavailable'} - {why}")
        if not ok:
            continue
        p = PEERS[n]()
        port = p.start(os.path.abspath(a.root))
        print(f"  listening on {LOOPBACK}:{port}, cpu via {p.meter.note}, cpu={p.cpu_seconds():.3f}s")
        p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
