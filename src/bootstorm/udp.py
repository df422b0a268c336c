"""Listening UDP sockets of the control plane (TFTP requests, ProxyDHCP): one way to bind
them and to learn on which interface and local address each datagram arrived."""
from __future__ import annotations

import functools
import socket
import struct

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux value; Python < 3.12 lacks the name
PKTINFO = struct.Struct("I4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
ANCILLARY_SPACE = socket.CMSG_SPACE(PKTINFO.size)
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33  # beyond net.core.wmem_max/rmem_max: root only
RECEIVE_BUFFER = 4 * 1024 * 1024  # a storm's requests arrive in bursts
MAX_DATAGRAM = 2048  # requests are small; longer ones arrive truncated and are refused
NO_ADDRESS = b"\0\0\0\0"


def listening_socket(address: str, port: int, *, reuse_port: bool = False,
                     options: tuple = ()) -> socket.socket:
    """A bound, non-blocking IPv4 UDP socket that reports each datagram's interface and local
    address (IP_PKTINFO), with room for bursts (SO_RCVBUFFORCE needs root).
    options: extra (level, name, value) socket options."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        set_buffer(s, RECEIVE_BUFFER)
        for level, name, value in options:
            s.setsockopt(level, name, value)
        s.bind((address, port))
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


def set_buffer(sock: socket.socket, size: int, *, send: bool = False) -> int:
    """A receive (or send) buffer of size bytes: forced past the system's maximum where the
    process may (root, CAP_NET_ADMIN), else as big as that maximum allows. Returns what the
    kernel granted (it counts twice the size asked, for its own overhead)."""
    force, plain = (SO_SNDBUFFORCE, socket.SO_SNDBUF) if send else (SO_RCVBUFFORCE, socket.SO_RCVBUF)
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, plain, size)
    return sock.getsockopt(socket.SOL_SOCKET, plain)


def receive(sock: socket.socket):
    """(data, source, ifindex, local address as 4 bytes); BlockingIOError when none waits."""
    data, ancdata, _flags, source = sock.recvmsg(MAX_DATAGRAM, ANCILLARY_SPACE)
    for level, kind, value in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            ifindex, local, _dst = PKTINFO.unpack(value[:PKTINFO.size])
            return data, source, ifindex, local
    return data, source, 0, NO_ADDRESS


@functools.lru_cache(maxsize=1024)
def interface_name(ifindex: int) -> str | None:
    """The name of the interface a datagram came in on (cached: interface indexes are not
    reused while the machine runs); None when unknown."""
    if not ifindex:
        return None
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return None


@functools.lru_cache(maxsize=256)
def sent_from(local: bytes) -> tuple:
    """Ancillary data that sends a datagram from this local address (NO_ADDRESS: the one the
    route picks)."""
    if local == NO_ADDRESS:
        return ()
    return ((socket.IPPROTO_IP, IP_PKTINFO, PKTINFO.pack(0, local, NO_ADDRESS)),)


@functools.lru_cache(maxsize=256)
def out_of(ifindex: int) -> tuple:
    """Ancillary data that sends a datagram out of this interface (broadcasts)."""
    return ((socket.IPPROTO_IP, IP_PKTINFO, PKTINFO.pack(ifindex, NO_ADDRESS, NO_ADDRESS)),)
