"""A TFTP client (RFC 1350, 2347, 2348, 2349, 7440): `bootstorm get`, and the tests."""
from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

from bootstorm import udp
from bootstorm._native import tftp as native
from bootstorm.errors import TftpError

OP_RRQ, OP_DATA, OP_ERROR, OP_OACK = 1, 3, 5, 6
RETRIES = 5


class TftpRemoteError(TftpError):
    """The server answered with ERROR."""


@dataclass
class FetchResult:
    size: int
    seconds: float
    blksize: int
    windowsize: int
    options: dict  # what the server's OACK granted (empty without OACK)
    retransmits: int


def fetch(host: str, port: int, filename: str, out, *, blksize: int | None = None,
          windowsize: int | None = None, tsize: bool = False, mode: str = "octet",
          timeout: float = 1.0, progress=None) -> FetchResult:
    """Download `filename` into the binary file object `out`.

    progress(received, total_or_None) is called as blocks arrive. Raises
    TftpRemoteError for an ERROR from the server and TimeoutError when it goes silent.
    """
    options = {}
    if blksize:
        options["blksize"] = blksize
    if windowsize:
        options["windowsize"] = windowsize
    if tsize:
        options["tsize"] = 0
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        return _fetch(sock, (host, port), filename, mode, options, out, timeout, progress)
    finally:
        sock.close()


def _fetch(sock, server, filename, mode, options, out, timeout, progress):
    started = time.monotonic()
    last_sent = native.build_request(OP_RRQ, filename, mode, options)
    sock.sendto(last_sent, server)
    peer = None  # the server's TID, learnt from its first reply
    granted: dict = {}
    blk, window, total = 512, 1, None
    expected = 1  # next block, as an absolute number (the wire rolls over 65535 -> 0)
    received = 0
    in_window = 0
    retries = retransmits = 0
    while True:
        try:
            data, addr = sock.recvfrom(65536 + 4)
        except socket.timeout:
            retries += 1
            if retries > RETRIES:
                raise TimeoutError(f"no answer from {server[0]}:{server[1]}") from None
            retransmits += 1
            if expected > 1:
                # RFC 7440: on a timeout, acknowledge the last block received in order
                last_sent = native.build_ack((expected - 1) & 0xFFFF)
                in_window = 0
            sock.sendto(last_sent, peer or server)
            continue
        if peer is None:
            peer = addr
        elif addr != peer:
            sock.sendto(native.build_error(5, "Unknown transfer ID"), addr)
            continue
        try:
            op, num, payload = native.parse_reply(data)
        except TftpError:
            continue
        retries = 0
        if op == OP_ERROR:
            raise TftpRemoteError(num, payload)
        if op == OP_OACK:
            if expected != 1:
                continue
            granted = payload
            blk = int(granted.get("blksize", blk))
            window = int(granted.get("windowsize", 1))
            if "tsize" in granted:
                total = int(granted["tsize"])
            _room_for(sock, window * (blk + 4))
            last_sent = native.build_ack(0)
            sock.sendto(last_sent, peer)
            continue
        if op != OP_DATA:
            continue
        if num != expected & 0xFFFF:
            # out of order (RFC 7440): acknowledge the last block received in order
            if window > 1 and expected > 1:
                last_sent = native.build_ack((expected - 1) & 0xFFFF)
                sock.sendto(last_sent, peer)
                in_window = 0
            continue
        out.write(payload)
        received += len(payload)
        expected += 1
        in_window += 1
        last = len(payload) < blk
        if progress:
            progress(received, total)
        if last or in_window >= window:
            last_sent = native.build_ack(num)
            sock.sendto(last_sent, peer)
            in_window = 0
        if last:
            return FetchResult(received, time.monotonic() - started, blk, window, granted,
                               retransmits)


def _room_for(sock, nbytes: int) -> None:
    """A receive buffer that holds a whole window, so none of it is dropped on arrival."""
    udp.set_buffer(sock, max(2 * nbytes, 256 * 1024))


def fetch_to_path(host, port, filename, path, **kw) -> FetchResult:
    """fetch() into a file at `path`, removed again if the transfer fails."""
    try:
        with open(path, "wb") as out:
            return fetch(host, port, filename, out, **kw)
    except BaseException:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise
