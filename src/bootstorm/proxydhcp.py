"""ProxyDHCP service on UDP 67 and 4011: boot information only, never addresses.

Each request is decoded by the native codec, answered by the policy, and sent where
dnsmasq would send it (src/dhcp.c): to the relay, back to a configured client's own
address and port, or broadcast on the interface it came in on.
"""
from __future__ import annotations

import asyncio
import fcntl
import socket
import struct

from bootstorm import udp
from bootstorm._native import dhcp
from bootstorm.config import DhcpConfig
from bootstorm.errors import DhcpError
from bootstorm.log import Log, RateLimited
from bootstorm.policy import BROADCAST_FLAG, ZERO, Policy

SIOCGIFNETMASK = 0x891B
IPTOS_CLASS_CS6 = 0xC0  # network control traffic, as dnsmasq marks its DHCP replies
IP_MTU_DISCOVER = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DONT = getattr(socket, "IP_PMTUDISC_DONT", 0)
CLIENT_PORT = 68
PACKETS_PER_WAKEUP = 64
# malformed packets are logged at most this many per second; the rest are counted and
# summed up in one `dhcp-malformed-suppressed` line: junk on the segment cannot flood the log
MALFORMED_LOG_PER_SECOND = 10
MESSAGE_NAMES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 5: "ACK", 8: "INFORM"}


def interface_netmask(ifname: str) -> bytes | None:
    """The IPv4 netmask of an interface's primary address (SIOCGIFNETMASK)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        req = struct.pack("16s16x", ifname.encode()[:15])
        return fcntl.ioctl(s.fileno(), SIOCGIFNETMASK, req)[20:24]
    except OSError:
        return None
    finally:
        s.close()


class ProxyDhcpServer:
    def __init__(self, config: DhcpConfig, log: Log, *, log_dhcp: bool = True):
        self.config = config
        self.log = log
        self.log_dhcp = log_dhcp
        self.policy = Policy(config)
        self.counters = {"received": 0, "malformed": 0, "answered": 0, "ignored": 0, "send_errors": 0,
                         "internal_errors": 0, "cut_replies": 0}
        self.interfaces: dict[int, tuple[str, bytes | None] | None] = {}  # ifindex -> _interface()
        self.sockets = [self._bind(config.port), self._bind(config.pxe_port)]
        # up to PACKETS_PER_WAKEUP datagrams per wake-up in one system call, for each socket
        self.receivers = [dhcp.Receiver(s.fileno(), PACKETS_PER_WAKEUP, udp.MAX_DATAGRAM)
                          for s in self.sockets]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._log_malformed = RateLimited(log, "dhcp-malformed", MALFORMED_LOG_PER_SECOND)
        self._log_internal = RateLimited(log, "dhcp-internal-error", MALFORMED_LOG_PER_SECOND)
        # a reply too big for what its client takes loses options (dnsmasq: "no space left in
        # packet"); a storm of such clients must not flood the log either
        self._log_cut = RateLimited(log, "dhcp-reply-cut", MALFORMED_LOG_PER_SECOND)
        self._dropped: list[int] = []  # build()'s left-out option codes, reused per reply

    def _bind(self, port: int) -> socket.socket:
        # no DF bit on replies, as dnsmasq (make_dhcp_sock): firmware and relays never see a
        # fragmentation-needed path, and a reply looks the same on the wire
        return udp.listening_socket(self.config.listen, port, options=(
            (socket.SOL_SOCKET, socket.SO_BROADCAST, 1),
            (socket.IPPROTO_IP, socket.IP_TOS, IPTOS_CLASS_CS6),
            (socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT)))

    def reconfigure(self, config: DhcpConfig) -> None:
        """Answer by `config` from now on (SIGHUP: its hosts and options files read again)."""
        self.config, self.policy = config, Policy(config)

    @property
    def addresses(self):
        return [s.getsockname() for s in self.sockets]

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for s in self.sockets:
            loop.add_reader(s.fileno(), self._on_readable, s)

    def close(self) -> None:
        self._log_malformed.flush()
        self._log_internal.flush()
        self._log_cut.flush()
        for s in self.sockets:
            if self._loop is not None:
                self._loop.remove_reader(s.fileno())
            s.close()

    def _interface(self, ifindex: int) -> tuple[str, bytes | None] | None:
        """(name, netmask) of the interface a request came in on when its requests are
        answered, else None: worked out once per interface (indexes are not reused)."""
        try:
            return self.interfaces[ifindex]
        except KeyError:
            pass
        name = udp.interface_name(ifindex)
        if name is None or (self.config.interfaces and name not in self.config.interfaces) \
                or name in self.config.except_interfaces:
            found = None
        else:
            found = (name, interface_netmask(name))
        self.interfaces[ifindex] = found
        return found

    def _on_readable(self, sock: socket.socket) -> None:
        # the lines of one wake-up leave in one write, before the handler returns
        with self.log:
            self._drain(sock)

    def _drain(self, sock: socket.socket) -> None:
        on_pxe_port = sock is self.sockets[1]
        try:
            batch = self.receivers[on_pxe_port].receive()
        except OSError as exc:
            self.log.event("dhcp-socket-error", str(exc))
            return
        self.counters["received"] += len(batch)
        for data, src, ifindex, local in batch:
            try:
                self._handle(sock, data, src, ifindex, local, on_pxe_port)
            except DhcpError as exc:
                self.counters["malformed"] += 1
                if self.log_dhcp:
                    self._log_malformed(str(exc), client=f"{src[0]}:{src[1]}")
            except Exception as exc:  # noqa: BLE001 - a bug costs this request, not the others of the burst
                self.counters["internal_errors"] += 1
                self._log_internal(f"{type(exc).__name__}: {exc}", client=f"{src[0]}:{src[1]}")

    def _handle(self, sock, data, src, ifindex, local, on_pxe_port) -> None:
        pkt = dhcp.parse(data)
        iface = self._interface(ifindex)
        if iface is None:
            return
        name, netmask = iface
        answer = self.policy.answer(pkt, on_pxe_port=on_pxe_port, local=local, local_netmask=netmask)
        if answer is None:
            self.counters["ignored"] += 1
            return
        self._dropped.clear()
        reply = dhcp.build(pkt, 2, ciaddr=answer.ciaddr, yiaddr=answer.yiaddr, siaddr=answer.siaddr,
                           flags=answer.flags, sname=answer.sname, file=answer.file,
                           options=answer.options, dropped=self._dropped)
        if self._dropped:
            self.counters["cut_replies"] += 1
            self._log_cut(f"options left out: {','.join(map(str, self._dropped))}", mac=pkt.mac.hex(":"),
                          max_size=pkt.max_message_size)
        dest, ifindex_out = self._destination(pkt, answer, src, on_pxe_port, ifindex)
        if answer.delay > 0:
            self._loop.call_later(answer.delay, self._send, sock, reply, dest, ifindex_out)
        else:
            self._send(sock, reply, dest, ifindex_out)
        self.counters["answered"] += 1
        if self.log_dhcp:
            self._log_reply(pkt, answer, name, dest)

    def _log_reply(self, pkt, answer, name: str, dest) -> None:
        kind = MESSAGE_NAMES.get(answer.message_type, "?")
        request = MESSAGE_NAMES.get(pkt.message_type) or str(pkt.message_type)
        mac, file = pkt.mac.hex(":"), answer.file.decode("utf-8", "replace")
        if self.log.json:
            self.log.event("dhcp-reply", kind, interface=name, mac=mac, arch=pkt.arch, request=request,
                           file=file, to=f"{dest[0]}:{dest[1]}")
        else:  # event()'s text in one f-string: a line per reply, 0.7 µs instead of 2
            self.log.text(f"dhcp-reply {kind} interface={name} mac={mac} arch={pkt.arch} "
                          f"request={request} file={file} to={dest[0]}:{dest[1]}")

    def _destination(self, pkt, answer, src, on_pxe_port, ifindex):
        """dnsmasq's rules (src/dhcp.c): relay, then the client's own address, then broadcast."""
        host, port = src
        if on_pxe_port and answer.ciaddr != ZERO:
            host = socket.inet_ntoa(answer.ciaddr)
        if pkt.giaddr != ZERO:
            return (socket.inet_ntoa(pkt.giaddr), self.config.port), 0
        if answer.ciaddr != ZERO:
            if host != socket.inet_ntoa(answer.ciaddr) or port == 0:
                return (socket.inet_ntoa(answer.ciaddr), CLIENT_PORT), 0
            return (host, port), 0
        if answer.flags & BROADCAST_FLAG or pkt.hlen == 0 or pkt.htype == 0 or answer.yiaddr == ZERO:
            return ("255.255.255.255", CLIENT_PORT), ifindex
        return (socket.inet_ntoa(answer.yiaddr), CLIENT_PORT), 0

    def _send(self, sock, reply: bytes, dest, ifindex: int) -> None:
        try:
            if ifindex:  # a broadcast leaves by the interface the request came in on
                sock.sendmsg([reply], udp.out_of(ifindex), 0, dest)
            else:
                sock.sendto(reply, dest)
        except OSError as exc:
            self.counters["send_errors"] += 1
            self.log.event("dhcp-send-error", str(exc), to=f"{dest[0]}:{dest[1]}")
