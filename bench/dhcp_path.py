"""The ProxyDHCP reply path in one process: µs of server CPU per reply, without dhcpgen.

    sudo python -m bench.dhcp_path [--batch 8] [--replies 20000] [--reps 5]
                                   [--mode discover|request4011|both] [--no-log] [--profile FILE.prof]

Two throw-away namespaces joined by a veth pair, as S4 (bench/dhcp.py): the server is a real
ProxyDhcpServer built from S4's conf file (bootstorm.dnsmasq), bound on eth0 in the server
namespace; a client process in the other one sends the requests dhcpgen sends (BIOS DISCOVER,
arch 0, broadcast to :67; x64 UEFI REQUEST, arch 7, unicast to :4011) from many MACs. Each
round the client drains the replies and sends --batch requests, then the server's own handler
(`_on_readable`, as uvloop calls it on a readable socket) runs once and its thread CPU time is
counted (the kernel's work for its receive and send included). The log goes to a
line-buffered file, as bootstorm's stderr does under the benchmark. Timings on a shared
machine swing: compare the min, or count instructions under callgrind (the difference
between two --replies counts, divided by their difference).
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import io
import resource
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

from bench.dhcp import CLIENT_ADDR, CONF_BODY, SERVER_ADDR, lan

CLONE_NEWNET = 0x40000000
SO_RCVBUFFORCE = 33
PRL = bytes([1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51,
             54, 58, 59, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135])
PKT = 548  # dhcpgen's request size


def request(discover: bool, arch: int, xid: int, mac_index: int) -> bytes:
    """The request bench/dhcpgen.c sends (same options, order and padding)."""
    p = bytearray(PKT)
    p[0:3] = b"\x01\x01\x06"
    p[9] = 4
    p[4:8] = xid.to_bytes(4, "big")
    if not discover:
        p[12:16] = socket.inet_aton(CLIENT_ADDR)
    p[28:34] = bytes((0x52, 0x54, 0, 0, mac_index >> 8 & 255, mac_index & 255))
    p[236:240] = b"\x63\x82\x53\x63"
    vc = f"PXEClient:Arch:{arch:05d}:UNDI:{'002001' if arch == 0 else '003000'}".encode()
    uuid = b"\x11" * 14 + bytes((mac_index >> 8 & 255, mac_index & 255))
    opts = (bytes((53, 1, 1 if discover else 3, 57, 2, 0x05, 0xC0, 55, len(PRL))) + PRL
            + bytes((97, 17, 0)) + uuid + bytes((94, 3, 1, 3, 16, 93, 2, arch >> 8, arch & 255))
            + bytes((60, len(vc))) + vc + b"\xff")
    p[240:240 + len(opts)] = opts
    return bytes(p)


def enter(ns: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
    finally:
        os.close(fd)


def client(ns: str, macs: int, commands: int, acks: int) -> None:
    """The load side, a process of its own in the client namespace (its CPU is not the
    server's): per command (mode, count) it drains the replies so far and sends `count`
    requests, then acknowledges."""
    enter(ns)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"eth0")
    sock.bind(("0.0.0.0", 68))
    sock.setblocking(False)
    reqs = {discover: [request(discover, 0 if discover else 7, 0x1000000 + i, i % macs)
                       for i in range(macs * 2)] for discover in (True, False)}
    dests = {True: ("255.255.255.255", 67), False: (SERVER_ADDR, 4011)}
    i = 0
    while True:
        cmd = os.read(commands, 2)
        if len(cmd) < 2 or not cmd[1]:
            return
        discover = cmd[0] == 0
        while True:
            try:
                sock.recv(2048)
            except BlockingIOError:
                break
        for _ in range(cmd[1]):
            sock.sendto(reqs[discover][i % len(reqs[discover])], dests[discover])
            i += 1
        os.write(acks, b"k")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("discover", "request4011", "both"), default="both")
    ap.add_argument("--batch", type=int, default=8, help="requests waiting per wake-up (1-255)")
    ap.add_argument("--replies", type=int, default=20000, help="replies per repetition")
    ap.add_argument("--reps", type=int, default=5, help="repetitions: min and median are shown")
    ap.add_argument("--macs", type=int, default=1000)
    ap.add_argument("--no-log", action="store_true", help="log_dhcp off (no dhcp-reply lines)")
    ap.add_argument("--profile", help="write a cProfile of the timed part here")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("dhcp_path: needs root (network namespaces)", file=sys.stderr)
        return 2
    if not 1 <= args.batch <= 255:
        ap.error("--batch: 1 to 255")

    from bootstorm import dnsmasq
    from bootstorm.log import Log
    from bootstorm.proxydhcp import ProxyDhcpServer

    wd = Path(tempfile.mkdtemp(prefix="bs-dhcp-path-"))
    conf = wd / "proxy.conf"
    conf.write_text(CONF_BODY.format(wd=wd))
    config = dnsmasq.load(str(conf)).config.dhcp
    logf = io.TextIOWrapper(open(wd / "server.log", "ab"), line_buffering=True)  # as sys.stderr
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    prof = None
    if args.profile:
        import cProfile
        prof = cProfile.Profile()
    with lan() as net:
        commands_r, commands_w = os.pipe()
        acks_r, acks_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(commands_w)  # the parent's end: its exit ends the client
                client(net["cli"].ns, args.macs, commands_r, acks_w)
            finally:
                os._exit(0)
        os.close(commands_r)
        os.close(acks_w)
        enter(net["srv"].ns)
        server = ProxyDhcpServer(config, Log(stream=logf), log_dhcp=not args.no_log)
        gc.freeze()  # as `bootstorm serve` does after start-up
        modes = ("discover", "request4011") if args.mode == "both" else (args.mode,)
        try:
            for mode in modes:
                sock = server.sockets[0 if mode == "discover" else 1]
                cmd = bytes((0 if mode == "discover" else 1, args.batch))
                runs = []
                for _ in range(args.reps):
                    cpu = 0.0
                    replies = 0
                    r0 = resource.getrusage(resource.RUSAGE_SELF)
                    while replies < args.replies:
                        os.write(commands_w, cmd)
                        os.read(acks_r, 1)
                        before = server.counters["answered"]
                        c0 = time.thread_time()
                        if prof:
                            prof.enable()
                        server._on_readable(sock)
                        if prof:
                            prof.disable()
                        cpu += time.thread_time() - c0
                        replies += server.counters["answered"] - before
                    r1 = resource.getrusage(resource.RUSAGE_SELF)
                    us = 1e6 / replies
                    runs.append((cpu * us, (r1.ru_utime - r0.ru_utime) * us, (r1.ru_stime - r0.ru_stime) * us))
                runs.sort()
                best, median = runs[0], runs[len(runs) // 2]
                print(f"{mode:12s} batch {args.batch:3d}: server CPU per reply min {best[0]:5.2f} µs, median "
                      f"{median[0]:5.2f} (of {args.reps} x {args.replies}); whole loop at the median: "
                      f"user {median[1]:5.2f}, system {median[2]:5.2f}")
        finally:
            os.write(commands_w, b"\0\0")
            os.waitpid(pid, 0)
            server.close()
            ctypes.CDLL(None).setns(home, CLONE_NEWNET)
            os.close(home)
    counters = server.counters
    if counters["malformed"] or counters["ignored"] or counters["send_errors"]:
        print(f"dhcp_path: unexpected counters {counters}", file=sys.stderr)
        return 1
    if prof:
        prof.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
