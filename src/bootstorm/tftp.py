"""TFTP service: the :69 listener, admission (path jail, shared open files, option
negotiation) and the glue to the native engine, which runs every DATA/ACK exchange."""
from __future__ import annotations

import asyncio
import errno
import os
import socket
import stat
from collections import OrderedDict

from bootstorm import udp
from bootstorm._native import tftp as native
from bootstorm.config import TftpConfig
from bootstorm.errors import TftpError
from bootstorm.log import Log, RateLimited

OP_WRQ = 2
TICK_S = 0.01  # the engine's timer wheel resolution
REQUESTS_PER_WAKEUP = 64  # bounded, so transfers in flight keep their turn
REFUSED_LOG_PER_SECOND = 100  # a flood of bad requests must not flood the log
SNAPSHOT_AT_ONCE = 1 << 20  # files up to 1 MiB go to memory on their first request
REQUESTED_KEYS = 4096  # how many big files' first requests are remembered
DEFAULT_SNDBUF = 212992  # Linux net.core.wmem_default: holds a 64 KiB window twice over
HEADERS_LEN = 32  # IP 20 + UDP 8 + TFTP 4: blksize that fits the MTU (dnsmasq's rule)
IP_RECVERR = 11  # <linux/in.h>; not in Python's socket module before 3.12
SHARED_BUFFER = 4 << 20  # a shared socket's receive and send buffers: ACKs of 1000 transfers

# errno -> (TFTP code, message), dnsmasq's choices where the RFC leaves room
_OPEN_ERRORS = {
    errno.ENOENT: (1, "file not found"),
    errno.ENOTDIR: (1, "file not found"),
    errno.ENAMETOOLONG: (1, "file not found"),
    errno.EXDEV: (2, "access violation: outside the TFTP root"),
    errno.ELOOP: (2, "access violation: outside the TFTP root"),
    errno.EACCES: (2, "access violation: permission denied"),
    errno.EPERM: (2, "access violation: permission denied"),
}


def netascii(data: bytes) -> bytes:
    """RFC 1350 / RFC 764 netascii: CR -> CR NUL, then LF -> CR LF."""
    return data.replace(b"\r", b"\r\x00").replace(b"\n", b"\r\n")


def arp_mac(ip: str) -> str | None:
    """The client's MAC from the kernel's ARP table, as dnsmasq writes it: aa-bb-cc-dd-ee-ff."""
    try:
        with open("/proc/net/arp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if len(fields) >= 4 and fields[0] == ip and fields[3] != "00:00:00:00:00:00":
                    return fields[3].lower().replace(":", "-")
    except OSError:
        pass
    return None


class _Source:
    """What a transfer sends: an open file, or a snapshot of it in memory; shared by every
    transfer of the same file (dnsmasq's trick for mass booting)."""

    __slots__ = ("fd", "content", "size", "mtime_ns", "key", "users")

    def __init__(self, fd: int, content: bytes | None, size: int, mtime_ns: int, key):
        self.fd = fd
        self.content = content
        self.size = size
        self.mtime_ns = mtime_ns
        self.key = key  # (dev, ino, size, mtime) in TftpServer.files, or None if not shared
        self.users = 1


class _Transfer:
    __slots__ = ("client", "filename", "blksize", "window", "source", "request")

    def __init__(self, client, filename, blksize, window, source, request):
        self.client = client
        self.filename = filename
        self.blksize = blksize
        self.window = window
        self.source = source
        self.request = request  # the RRQ as received: an identical one is a retransmission


class TftpServer:
    """One process's TFTP service on one listening address."""

    def __init__(self, config: TftpConfig, log: Log, *, reuse_port: bool = False):
        self.config = config
        self.log = log
        self.rootfd = self._open_root(config.root)
        self.iface_rootfds = {name: self._open_root(d) for name, d in config.roots.items()}
        self.next_port = 0  # rotates through port_range
        self.euid = os.geteuid()  # again at start(): root may be given up in between
        self.engine = native.Engine(config.max_transfers, self._on_done)
        self.transfers: list[_Transfer | None] = [None] * config.max_transfers
        self.by_client: dict[tuple[str, int], int] = {}  # a retransmitted RRQ starts nothing
        self.files: dict[tuple, _Source] = {}  # (dev, ino, size, mtime) -> shared source
        self.memory_bytes = 0  # held by snapshots, in use or idle
        self.idle: OrderedDict[tuple, _Source] = OrderedDict()  # unused snapshots, oldest first
        self.requested: OrderedDict[tuple, None] = OrderedDict()  # big files asked for lately
        self.mtu_blksize: dict[int, int] = {}
        # local address -> the engine's shared socket for it; None -> the listening socket
        self.shared: dict[str | None, int] = {}
        self.requests_refused = 0
        self._log_refused = RateLimited(log, "tftp-refused", REFUSED_LOG_PER_SECOND)
        self._log_internal = RateLimited(log, "tftp-internal-error", REFUSED_LOG_PER_SECOND)
        self.requests_malformed = 0
        self.sock = udp.listening_socket(config.listen, config.port, reuse_port=reuse_port)
        self.address = self.sock.getsockname()
        if config.single_port:  # the engine reads the listening socket: requests come with ACKs
            udp.set_buffer(self.sock, SHARED_BUFFER, send=True)
            self.sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            fd = os.dup(self.sock.fileno())
            try:
                self.engine.share(fd, requests=True)
            except BaseException:
                os.close(fd)
                raise
            self.shared[None] = fd  # every transfer, from any local address
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle = None

    def _open_root(self, path: str) -> int:
        """An fd for a root directory; -1 when it is missing and no_fail allows that."""
        try:
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            if not self.config.no_fail:
                raise
            self.log.event("tftp-root-missing", f"{path}: {exc.strerror}; requests for it fail")
            return -1

    # -- lifecycle

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.euid = os.geteuid()
        if not self.config.single_port:
            loop.add_reader(self.sock.fileno(), self._on_requests)
            self.watch(self.sock.fileno())
        loop.add_reader(self.engine.fileno(), self._poll)

    def watch(self, fd: int) -> None:
        """Busy-polling (busy-poll-us) gives way as soon as fd is readable."""
        if self.config.busy_poll_us:
            self.engine.watch(fd)

    def close(self) -> None:
        if self._loop is not None:
            if not self.config.single_port:
                self._loop.remove_reader(self.sock.fileno())
            self._loop.remove_reader(self.engine.fileno())
            if self._tick_handle is not None:
                self._tick_handle.cancel()
        self.engine.abort_all()
        self.engine.close()
        self._log_refused.flush()
        self._log_internal.flush()
        self.sock.close()
        for fd in (self.rootfd, *self.iface_rootfds.values()):
            if fd >= 0:
                os.close(fd)

    def _poll(self) -> None:
        with self.log:  # transfers that end in this wake-up: one write for their lines
            self.engine.poll(self.config.busy_poll_us)
            if self.config.single_port:  # requests arrive among the ACKs
                for data, client, ifindex, local in self.engine.take_requests():
                    self._serve(data, client, ifindex, local)

    def _tick(self) -> None:
        """Drive the engine's timer wheel while transfers run; an idle server sleeps."""
        with self.log:  # the transfers ended since the last tick: one write for their lines
            self.engine.tick()
        if self.engine.active:
            self._tick_handle = self._loop.call_later(TICK_S, self._tick)
        else:
            self._tick_handle = None

    def stats(self) -> dict:
        return {**self.engine.stats(), "requests_refused": self.requests_refused,
                "requests_malformed": self.requests_malformed, "open_files": sum(1 for f in self.files.values() if f.fd >= 0),
                "snapshots": sum(1 for f in self.files.values() if f.content is not None),
                "snapshot_bytes": self.memory_bytes}

    # -- requests on :69

    def _on_requests(self) -> None:
        with self.log:  # the lines of one wake-up leave in one write
            self._drain_requests()

    def _drain_requests(self) -> None:
        for _ in range(REQUESTS_PER_WAKEUP):
            try:
                data, client, ifindex, local = udp.receive(self.sock)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP errors surfacing on the socket
                self.log.event("tftp-socket-error", str(exc))
                return
            self._serve(data, client, ifindex, local)

    def _serve(self, data: bytes, client, ifindex: int, local: bytes) -> None:
        """One request: a transfer started, or refused with an ERROR and counted."""
        local_ip = socket.inet_ntoa(local) if ifindex else self.address[0]
        try:
            self._request(data, client, local_ip, local, ifindex)
        except TftpError as err:
            self.requests_refused += 1
            self._send_error(client, err, local)
        except OSError as exc:  # out of descriptors, ports, memory: this request only
            self.requests_refused += 1
            self._send_error(client, TftpError(0, f"server error: {exc.strerror or exc}"), local)
        except Exception as exc:  # noqa: BLE001 - a bug costs this request, not the others
            self.requests_refused += 1
            self._log_internal(f"{type(exc).__name__}: {exc}", client=f"{client[0]}:{client[1]}")
            self._send_error(client, TftpError(0, "internal server error"), local)

    def _send_error(self, client, err: TftpError, local: bytes) -> None:
        """The refusal, from the address the request was sent to (the listening socket may
        be bound to the wildcard address: the route alone could pick another)."""
        self._log_refused(err.message, client=f"{client[0]}:{client[1]}", code=err.code)
        data = native.build_error(err.code, err.message)
        for _ in range(2):  # single-port: an ICMP error about another client fails one send
            try:
                self.sock.sendmsg([data], udp.sent_from(local), 0, client)
                return
            except OSError:
                pass

    def _request(self, data: bytes, client, local_ip: str, local: bytes, ifindex: int) -> None:
        try:
            req = native.parse_request(data)
        except TftpError:
            self.requests_malformed += 1
            raise
        if req is None:  # not a request: dropped, never answered
            self.requests_malformed += 1
            return
        opcode, filename, mode, options = req
        running = self.by_client.get(client)
        if running is not None and not self.config.single_port and self._last_window_out(running):
            # a client that asks again at once from the port of a transfer it just finished:
            # that transfer's last ACK may still wait on its own socket, unread: read it first
            self.engine.poll()
            running = self.by_client.get(client)
        if running is not None:
            if self.engine.acked(running) == 0 and self.transfers[running].request == data:
                return  # a retransmitted RRQ: its transfer has not got through yet
            # the client started over from the same port (a PXE ROM after a reboot, a
            # reused ephemeral port): the old transfer is dead, serve the new request
            self.engine.replace(running)
        ifname = udp.interface_name(ifindex)
        if self.config.interfaces and ifname not in self.config.interfaces:
            return  # not an interface TFTP serves: silent, as if not listening there
        if opcode == OP_WRQ:
            raise TftpError(4, "write requests are refused: this server is read-only")
        if self.engine.active >= self.config.max_transfers:
            raise TftpError(0, "server busy: too many transfers, try again later")
        rootfd, root = self.rootfd, self.config.root
        if ifname in self.iface_rootfds:
            rootfd, root = self.iface_rootfds[ifname], self.config.roots[ifname]
        src = self._open(rootfd, root, filename, mode == "netascii", client[0])
        try:
            blksize, window, timeout, oack = native.negotiate(
                options, src.size, netascii=mode == "netascii",
                blksize_max=self._blksize_max(ifindex),
                window_bytes_max=self.config.window_bytes_max,
                allow_blksize=not self.config.no_blocksize)
            if self.config.single_port:
                sock, fd = None, self.shared[None]
            elif window == 1 and (local_ip in self.shared or self.engine.can_share):
                sock, fd = None, self._shared_socket(local_ip)
            else:
                sock = self._transfer_socket(local_ip, window * (blksize + 4))
                fd = sock.fileno()
        except BaseException:
            self._release(src)
            raise
        rto_ms = timeout * 1000 if timeout else int(self.config.retransmit_timeout * 1000)
        # a listening socket bound to the wildcard (single-port) answers from the address asked
        wildcard = self.config.single_port and self.address[0] == "0.0.0.0" != local_ip
        local4 = local if wildcard else None  # local_ip as 4 bytes, as the request brought it
        try:
            slot = self.engine.start(
                fd, src.fd, socket.inet_aton(client[0]), client[1], src.size,
                src.mtime_ns, blksize, window, rto_ms, int(self.config.give_up_timeout * 1000),
                oack, src.content, local4)
        except BaseException:
            if sock is not None:
                sock.close()
            self._release(src)
            raise
        if sock is not None:
            sock.detach()  # the engine owns and closes it
        self.transfers[slot] = _Transfer(client, filename, blksize, window, src, data)
        self.by_client[client] = slot
        self.engine.begin(slot)
        if self._tick_handle is None:
            self._tick_handle = self._loop.call_later(TICK_S, self._tick)

    def _last_window_out(self, slot: int) -> bool:
        """Whether the transfer has sent its last window, after some progress (a retransmitted
        RRQ comes before any, and must not let its transfer's first ACK make it a new one)."""
        t = self.transfers[slot]
        acked = self.engine.acked(slot)
        return acked > 0 and acked + t.window > t.source.size // t.blksize

    def _shared_socket(self, local_ip: str) -> int:
        """The socket every lock-step transfer from this address shares (docs/tftp.md):
        made once, so a small transfer costs no socket of its own, and its ACKs are read
        and its DATA sent in batches with the other transfers'."""
        fd = self.shared.get(local_ip)
        if fd is None:
            sock = self._transfer_socket(local_ip, SHARED_BUFFER // 2)
            try:
                got = udp.set_buffer(sock, SHARED_BUFFER)
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)  # closed client ports
                if got < SHARED_BUFFER:  # no CAP_NET_ADMIN, and net.core.rmem_max below it
                    self.log.event("tftp-buffer-small", f"the port shared by lock-step transfers "
                                   f"on {local_ip} got a {got}-byte receive buffer, not "
                                   f"{SHARED_BUFFER}: in a storm ACKs may be dropped and "
                                   f"resent; raise net.core.rmem_max (docs/tftp.md)")
                self.engine.share(sock.fileno())
            except BaseException:
                sock.close()
                raise
            fd = self.shared[local_ip] = sock.detach()  # the engine owns and closes it
        return fd

    def _transfer_socket(self, local_ip: str, window_bytes: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            if 2 * window_bytes > DEFAULT_SNDBUF:  # room for a whole window, twice
                udp.set_buffer(sock, 2 * window_bytes, send=True)
            self._bind_transfer(sock, local_ip)
        except BaseException:
            sock.close()
            raise
        return sock

    def _bind_transfer(self, sock: socket.socket, local_ip: str) -> None:
        """A fresh port: the transfer's TID (RFC 1350 section 4); from port_range if set."""
        if self.config.port_range is None:
            sock.bind((local_ip, 0))
            return
        first, last = self.config.port_range
        count = last - first + 1
        for i in range(count):
            port = first + (self.next_port + i) % count
            try:
                sock.bind((local_ip, port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            self.next_port = (port - first + 1) % count
            return
        raise TftpError(0, "server busy: no free port in the transfer port range")

    def _blksize_max(self, ifindex: int) -> int:
        if self.config.blksize_max:
            return self.config.blksize_max
        cached = self.mtu_blksize.get(ifindex)
        if cached is None:
            cached = 65464
            try:
                name = socket.if_indextoname(ifindex)
                with open(f"/sys/class/net/{name}/mtu") as f:
                    cached = max(512, min(65464, int(f.read()) - HEADERS_LEN))
            except (OSError, ValueError):
                cached = 1468  # unknown interface: assume Ethernet
            self.mtu_blksize[ifindex] = cached
        return cached

    # -- files

    def _resolve(self, rootfd: int, root: str, filename: str, client_ip: str) -> str:
        """The path below the root that dnsmasq would serve for this request."""
        name = filename.replace("\\", "/")  # DOS-style paths from old firmware
        if self.config.lowercase:
            name = name.lower()
        if "/../" in "/" + name:
            # dnsmasq refuses any "/../" outright, even one that stays inside the root
            raise TftpError(2, "access violation: '..' in the path")
        unique = self._unique_dir(rootfd, client_ip)
        # an absolute path inside the root is accepted, as in dnsmasq: inside the client's own
        # directory when tftp-unique-root found one (dnsmasq compares it with the whole prefix)
        prefix = root.rstrip("/") + "/" + (f"{unique}/" if unique else "")
        if name.startswith(prefix):
            name = name[len(prefix):]
        name = name.lstrip("/")  # any other leading / means the TFTP root
        return f"{unique}/{name}" if unique else name

    def _unique_dir(self, rootfd: int, client_ip: str) -> str | None:
        """dnsmasq tftp-unique-root: ROOT/<ip>/ or ROOT/<mac>/, only where it exists."""
        if self.config.unique_root is None:
            return None
        if self.config.unique_root == "ip":
            sub = client_ip
        else:
            sub = arp_mac(client_ip)
            if sub is None:
                return None
        try:
            return sub if stat.S_ISDIR(os.stat(sub, dir_fd=rootfd, follow_symlinks=False).st_mode) else None
        except OSError:
            return None

    def _open(self, rootfd: int, root: str, filename: str, as_netascii: bool, client_ip: str):
        """Resolve and open a requested file, or join the source already serving it."""
        if rootfd < 0:
            raise TftpError(1, "file not found: the TFTP root is missing")
        name = self._resolve(rootfd, root, filename, client_ip)
        if not name.strip("/"):
            raise TftpError(0, "is a directory")
        try:
            fd = native.open_beneath(rootfd, name)
        except OSError as exc:
            code, message = _OPEN_ERRORS.get(exc.errno, (0, os.strerror(exc.errno or 0)))
            raise TftpError(code, message) from None
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise TftpError(0, "is a directory")
            if not stat.S_ISREG(st.st_mode):
                raise TftpError(2, "access violation: not a regular file")
            if self.euid == 0 and not st.st_mode & stat.S_IROTH:
                # as dnsmasq: root serves world-readable files only, never a root-only secret
                raise TftpError(2, "access violation: not world-readable")
            if self.config.secure and self.euid != 0 and st.st_uid != self.euid:
                raise TftpError(2, "access violation: not owned by the server's user (secure mode)")
            key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            shared = None if as_netascii else self.files.get(key)
            content = None
            if as_netascii:
                content = self._netascii(fd, st.st_size)
            elif self._wants_snapshot(key, st.st_size) and (shared is None or shared.content is None):
                content = self._snapshot(fd, st)
                if content is not None:
                    shared = None  # the snapshot serves from now on; the open file ends with its transfers
        except BaseException:
            os.close(fd)
            raise
        if shared is not None or content is not None:
            os.close(fd)  # else the fd stays open as the shared source
        if as_netascii:
            return _Source(-1, content, len(content), 0, None)
        if shared is not None:
            self.idle.pop(key, None)
            shared.users += 1
            return shared
        if content is not None:
            self.memory_bytes += st.st_size
            src = _Source(-1, content, st.st_size, st.st_mtime_ns, key)
        else:
            src = _Source(fd, None, st.st_size, st.st_mtime_ns, key)
        self.files[key] = src
        return src

    def _wants_snapshot(self, key, size: int) -> bool:
        """Small files at once; a big one from its second request on (one client fetching an
        image once is served best straight from the page cache)."""
        if size > self.config.memory_file_max:
            return False
        if size <= SNAPSHOT_AT_ONCE:
            return True
        repeat = key in self.requested
        self.requested[key] = None
        self.requested.move_to_end(key)
        if len(self.requested) > REQUESTED_KEYS:
            self.requested.popitem(last=False)
        return repeat

    def _snapshot(self, fd: int, st) -> bytes | None:
        """Small files are served from memory: no read per window, and a running transfer
        keeps the content it started with whatever happens to the file."""
        size = st.st_size
        while self.memory_bytes + size > self.config.memory_total_max and self.idle:
            _key, old = self.idle.popitem(last=False)  # the least recently used, unused one
            del self.files[old.key]
            self.memory_bytes -= old.size
        if self.memory_bytes + size > self.config.memory_total_max:
            return None
        content = os.pread(fd, size, 0)
        after = os.fstat(fd)
        if len(content) != size or after.st_size != size or after.st_mtime_ns != st.st_mtime_ns:
            return None  # changed while read: serve from the file, which checks each window
        return content

    def _netascii(self, fd: int, size: int) -> bytes:
        """Netascii changes lengths, so the converted text is served from memory."""
        if size > self.config.netascii_max_bytes:
            raise TftpError(0, "file too large for netascii mode")
        return netascii(os.pread(fd, size, 0))

    def _release(self, src: _Source) -> None:
        src.users -= 1
        if src.users:
            return
        if src.key is None:
            return  # a netascii copy: its own
        if src.content is not None:
            # kept for the next client (machines of a fleet boot one after another too),
            # until memory_total_max needs the room; a changed file has another key
            self.idle[src.key] = src
            return
        if self.files.get(src.key) is src:  # else a snapshot of the file took its place
            del self.files[src.key]
        os.close(src.fd)

    # -- called by the engine once per finished transfer

    def _on_done(self, slot, outcome, code, nbytes, retransmits, elapsed_ms) -> None:
        t = self.transfers[slot]
        self.transfers[slot] = None
        del self.by_client[t.client]
        self._release(t.source)
        client, seconds = f"{t.client[0]}:{t.client[1]}", round(elapsed_ms / 1000, 3)
        if self.log.json:
            fields = dict(client=client, file=t.filename, bytes=nbytes, seconds=seconds,
                          blksize=t.blksize, windowsize=t.window, outcome=outcome,
                          retransmits=retransmits)
            if code:
                fields["error_code"] = code
            self.log.event("tftp-transfer", **fields)
        else:  # event()'s text in one f-string: a storm ends thousands of transfers a second
            self.log.text(f"tftp-transfer client={client} file={t.filename} bytes={nbytes} "
                          f"seconds={seconds} blksize={t.blksize} windowsize={t.window} "
                          f"outcome={outcome} retransmits={retransmits}"
                          + (f" error_code={code}" if code else ""))
