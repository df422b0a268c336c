"""Helpers for the integration tests: the server as a subprocess, test files, a raw
TFTP client over plain UDP sockets, and real client command lines.

Everything talks to 127.0.0.1 only; every wait and every packet loop is bounded.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

HOST = "127.0.0.1"
LISTEN_RE = re.compile(r"TFTP listening on (?:127\.0\.0\.1|0\.0\.0\.0):(\d+)")
FIELD_RE = re.compile(r"(\w+)=(\S+)")

OP_RRQ, OP_WRQ, OP_DATA, OP_ACK, OP_ERROR, OP_OACK = 1, 2, 3, 4, 5, 6

# name -> size; a root shared by the read-only client tests of one module
STANDARD_SIZES = {
    "empty.bin": 0,
    "one.bin": 1,
    "b511.bin": 511,
    "b512.bin": 512,
    "b513.bin": 513,
    "x3_1468.bin": 3 * 1468,
    "x2_8192.bin": 2 * 8192,
    "k40.bin": 40 * 1024 + 17,
}
ROLLOVER_NAME = "rollover.bin"
ROLLOVER_SIZE = 65536 * 512 + 100  # 65537 blocks at blksize 512: the block number wraps
BIG_NAME = "big20m.bin"
BIG_SIZE = 20 * 1024 * 1024


# ---------------------------------------------------------------- generic helpers

def require(binary: str) -> str:
    """Path of a client binary. Missing: a failure under CI, a skip elsewhere."""
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"required client binary {binary!r} is not installed (CI is set)")
        pytest.skip(f"{binary} not installed")
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_file(root, name: str, size: int) -> bytes:
    """A random file of exactly `size` bytes at root/name; returns its content."""
    path = os.path.join(str(root), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    return data


def wait_until(predicate, timeout: float, interval: float = 0.02):
    """Poll predicate() until truthy or the deadline passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def tree_snapshot(top) -> set:
    """Every path under top (files, dirs, links), relative to it."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(str(top)):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), str(top)))
    return out


# ---------------------------------------------------------------- the server

class Server:
    """`python -m bootstorm serve` as a user starts it; stderr is kept line by line."""

    def __init__(self, root, *extra: str, start_timeout: float = 15.0):
        self.root = str(root)
        self.args = [sys.executable, "-m", "bootstorm", "serve", "--tftp-root", self.root,
                     "--listen", HOST, "--tftp-port", "0", *extra]
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.returncode = None
        m = self.wait_line(LISTEN_RE, start_timeout)
        if m is None:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"server did not start: {self.args}\n" + "\n".join(self.lines))
        self.port = int(m.group(1))
        self.pid = self.proc.pid

    def _read(self):
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def addr(self):
        return (HOST, self.port)

    def wait_line(self, pattern, timeout: float, start: int = 0):
        """First match of pattern in a line at index >= start, waiting up to timeout."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return None
                self._cond.wait(min(left, 0.1))

    def snapshot(self) -> list[str]:
        with self._cond:
            return list(self.lines)

    def events(self, event: str = "tftp-transfer") -> list[dict]:
        """Log records of one event, from text or JSON lines, as dicts of strings."""
        out = []
        for line in self.snapshot():
            if line.startswith("{"):
                rec = json.loads(line)
                if rec.get("event") == event:
                    out.append({k: str(v) for k, v in rec.items()})
                continue
            parts = line.split(" ", 2)
            if len(parts) >= 2 and parts[1] == event:
                rec = dict(FIELD_RE.findall(parts[2] if len(parts) > 2 else ""))
                rec["event"] = event
                out.append(rec)
        return out

    def transfers(self, **match) -> list[dict]:
        return [r for r in self.events("tftp-transfer")
                if all(r.get(k) == str(v) for k, v in match.items())]

    def wait_transfers(self, n: int, timeout: float, **match) -> list[dict]:
        """Wait until at least n tftp-transfer records match; returns them."""
        return self._wait_records(n, timeout, lambda: self.transfers(**match))

    def wait_events(self, event: str, n: int, timeout: float) -> list[dict]:
        """Wait until at least n records of the event are logged; returns them."""
        return self._wait_records(n, timeout, lambda: self.events(event))

    @staticmethod
    def _wait_records(n: int, timeout: float, records) -> list[dict]:
        return wait_until(lambda: (lambda r: r if len(r) >= n else None)(records()), timeout) or records()

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def wait_fds(self, count: int, timeout: float = 5.0) -> int:
        """Wait (bounded) for the open fd count to fall back to `count`; returns it."""
        wait_until(lambda: self.fd_count() <= count, timeout)
        return self.fd_count()

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.returncode = "killed after SIGTERM timeout"
                return self.returncode
        self._reader.join(5)
        self.returncode = self.proc.returncode
        return self.returncode


# ---------------------------------------------------------------- raw TFTP over UDP

def rrq(filename, mode: str = "octet", options: dict | None = None, opcode: int = OP_RRQ) -> bytes:
    if isinstance(filename, str):
        filename = filename.encode()
    out = struct.pack("!H", opcode) + filename + b"\0" + mode.encode() + b"\0"
    for k, v in (options or {}).items():
        out += str(k).encode() + b"\0" + str(v).encode() + b"\0"
    return out


def ack(block: int) -> bytes:
    return struct.pack("!HH", OP_ACK, block & 0xFFFF)


def error(code: int, msg: str = "") -> bytes:
    return struct.pack("!HH", OP_ERROR, code) + msg.encode() + b"\0"


def parse(data: bytes):
    """(opcode, number, payload): DATA -> block, bytes; ERROR -> code, message;
    OACK -> 0, {name: value}."""
    op = struct.unpack("!H", data[:2])[0]
    if op == OP_OACK:
        fields = data[2:].split(b"\0")
        if fields and fields[-1] == b"":
            fields.pop()
        opts = {fields[i].decode().lower(): fields[i + 1].decode() for i in range(0, len(fields) - 1, 2)}
        return op, 0, opts
    num = struct.unpack("!H", data[2:4])[0]
    if op == OP_ERROR:
        return op, num, data[4:].split(b"\0", 1)[0].decode("utf-8", "replace")
    return op, num, data[4:]


class RawClient:
    """One UDP socket on 127.0.0.1 with bounded receive timeouts."""

    def __init__(self, server_addr, timeout: float = 2.0):
        self.server = server_addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((HOST, 0))
        self.sock.settimeout(timeout)
        self.peer = None  # the transfer's TID, learnt from the first reply

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_rrq(self, filename, mode="octet", options=None, opcode=OP_RRQ):
        self.sock.sendto(rrq(filename, mode, options, opcode), self.server)

    def send(self, data: bytes, addr=None):
        self.sock.sendto(data, addr or self.peer)

    def recv(self, timeout: float | None = None):
        """(opcode, number, payload, addr); raises socket.timeout when nothing comes."""
        if timeout is not None:
            self.sock.settimeout(timeout)
        data, addr = self.sock.recvfrom(65536)
        if self.peer is None and addr != self.server:
            self.peer = addr
        op, num, payload = parse(data)
        return op, num, payload, addr

    def expect(self, opcode: int, timeout: float | None = None):
        op, num, payload, addr = self.recv(timeout)
        assert op == opcode, f"expected opcode {opcode}, got {op} ({num}, {payload!r})"
        return num, payload

    def download(self, blksize: int = 512, window: int = 1, first=None,
                 max_seconds: float = 30.0, rto: float = 0.5, next_block: int = 1) -> bytes:
        """Finish a transfer whose RRQ has been sent (and whose first reply may already be
        in `first`; blocks before `next_block` already received and ACKed), lock-step or
        windowed, tolerating duplicates. Returns the content received here."""
        out = bytearray()
        expected = next_block
        in_window = 0
        deadline = time.monotonic() + max_seconds
        last_ack = ack(next_block - 1) if next_block > 1 else None
        pending = [first] if first is not None else []
        while time.monotonic() < deadline:
            if pending:
                op, num, payload = pending.pop()
            else:
                try:
                    op, num, payload, addr = self.recv(rto)
                except socket.timeout:
                    if last_ack is not None:
                        self.send(last_ack)
                    continue
            if op == OP_ERROR:
                raise RemoteError(num, payload, bytes(out))
            if op == OP_OACK:
                blksize = int(payload.get("blksize", blksize))
                window = int(payload.get("windowsize", window))
                last_ack = ack(0)
                self.send(last_ack)
                continue
            assert op == OP_DATA, op
            if num != expected & 0xFFFF:
                if last_ack is not None and window > 1:
                    self.send(last_ack)
                continue
            out += payload
            expected += 1
            in_window += 1
            done = len(payload) < blksize
            if done or in_window >= window:
                last_ack = ack(num)
                self.send(last_ack)
                in_window = 0
            if done:
                return bytes(out)
        raise TimeoutError(f"download not finished within {max_seconds} s ({len(out)} bytes)")


class RemoteError(Exception):
    def __init__(self, code, message, received=b""):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.received = received


# ---------------------------------------------------------------- real clients

def run(cmd, timeout: float = 30.0, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, **kw)


def curl_get(port, name, out, blksize=None, timeout=30.0):
    cmd = [require("curl"), "-sS", "--max-time", str(int(timeout))]
    if blksize:
        cmd += ["--tftp-blksize", str(blksize)]
    cmd += [f"tftp://{HOST}:{port}/{name}", "-o", str(out)]
    return run(cmd, timeout + 5)


def hpa_get(port, name, out, mode="octet", timeout=30.0):
    cmd = [require("tftp"), HOST, str(port), "-m", mode, "-c", "get", name, str(out)]
    return run(cmd, timeout)


def hpa_put(port, local, remote, timeout=20.0):
    cmd = [require("tftp"), HOST, str(port), "-m", "octet", "-c", "put", str(local), remote]
    return run(cmd, timeout)


def atftp_get(port, name, out, blksize=None, windowsize=None, tsize=True, timeout=30.0):
    cmd = [require("atftp")]
    if blksize:
        cmd += ["--option", f"blksize {blksize}"]
    if windowsize:
        cmd += ["--option", f"windowsize {windowsize}"]
    if tsize:
        cmd += ["--option", "tsize"]
    cmd += ["-g", "-r", name, "-l", str(out), HOST, str(port)]
    return run(cmd, timeout)


def busybox_get(port, name, out, blksize=None, timeout=30.0):
    cmd = [require("busybox"), "tftp"]
    if blksize:
        cmd += ["-b", str(blksize)]
    cmd += ["-g", "-r", name, "-l", str(out), HOST, str(port)]
    return run(cmd, timeout)


def bootstorm_get(port, name, out, blksize=None, windowsize=None, netascii=False,
                  tsize=False, timeout=30.0):
    cmd = [sys.executable, "-m", "bootstorm", "get", f"{HOST}:{port}", name, "-o", str(out), "-q"]
    if blksize:
        cmd += ["--blksize", str(blksize)]
    if windowsize:
        cmd += ["--windowsize", str(windowsize)]
    if netascii:
        cmd += ["--netascii"]
    if tsize:
        cmd += ["--tsize"]
    return run(cmd, timeout)
