# TFTP codec and transfer engine (RFC 1350, 2347, 2348, 2349, 7440).
#
# The codec functions run once per request and may build Python objects. The Engine
# runs every DATA/ACK exchange: it drains the transfer sockets through one epoll fd,
# sends windows from a shared scratch buffer filled by preadv from the page cache, and
# keeps retransmission deadlines in a timer wheel. Nothing per packet touches a Python
# object; Python is called back once per finished transfer.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset, strlen
from libc.errno cimport EAGAIN, ECONNREFUSED, EMSGSIZE, errno
from posix.unistd cimport close

import os

from bootstorm.errors import TftpError

include "consts.pxi"

cdef extern from "errno.h":
    enum: EIO

cdef extern from "time.h" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    enum: CLOCK_MONOTONIC
    int clock_gettime(int clk, timespec *ts)

cdef extern from "sys/uio.h" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len
    ssize_t preadv(int fd, const iovec *iov, int iovcnt, int64_t offset)

cdef extern from "sys/epoll.h" nogil:
    union epoll_data_t "epoll_data":
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    enum: EPOLLIN, EPOLLERR, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CLOEXEC
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *ev)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)

cdef extern from "sched.h" nogil:
    int sched_yield()

cdef extern from "sys/socket.h" nogil:
    struct sockaddr:
        pass
    int connect(int fd, const sockaddr *addr, uint32_t addrlen)

cdef extern from "udpio.h" nogil:
    int udpio_probe_gso()
    int udpio_send_segments(int fd, const sockaddr_in *to, const in_addr *src, char *buf,
                            size_t seg_len, int nseg, size_t last_len, int use_gso)
    int udpio_recv(int fd, char *buf, size_t len, sockaddr_in *src)
    udpio_batch *udpio_batch_new()
    int udpio_batch_recv(int fd, udpio_batch *b)
    int udpio_batch_get(udpio_batch *b, int i, const char **data, const sockaddr_in **src)
    int udpio_batch_pktinfo(udpio_batch *b, int i, int *ifindex, in_addr *local)
    enum: UDPIO_IN_LEN
    char *udpio_batch_add(udpio_batch *b, const sockaddr_in *to, const in_addr *src, size_t n)
    void udpio_batch_unadd(udpio_batch *b)
    int udpio_batch_flush(int fd, udpio_batch *b, uint64_t *nbytes, int *lost, unsigned char *went)
    int udpio_read_error(int fd, sockaddr_in *peer)

cdef extern from "fsopen.h" nogil:
    int fs_have_openat2()
    int fs_open_beneath(int rootfd, const char *path)
    int fs_identity(int fd, uint64_t *size, int64_t *mtime_ns)


# Outcomes reported to on_done; names in OUTCOMES.
cdef enum:
    OUT_OK = 0
    OUT_CLIENT_ERROR = 1     # the client sent ERROR
    OUT_TIMEOUT = 2          # no progress within the give-up time
    OUT_FILE_CHANGED = 3     # the file was truncated or rewritten during the transfer
    OUT_ABORTED = 4          # server shutdown or explicit abort
    OUT_TSIZE_PROBE = 5      # ERROR 8 right after the OACK: UEFI asking only for tsize
    OUT_REPLACED = 6         # the client asked again from the same port: it started over
    OUT_UNREACHABLE = 7      # ICMP port unreachable: the client closed its port (gave up, rebooted)
    OUT_LAST_UNACKED = 8     # a timeout or unreachable once every block was sent and all but the
                             # last acknowledged: its ACK was lost, or the client never sends one

OUTCOMES = ("ok", "client-error", "timeout", "file-changed", "aborted", "tsize-probe", "replaced",
            "unreachable", "last-unacked")

cdef enum:
    TICK_MS = 10             # timer wheel resolution
    WHEEL_SLOTS = 512        # one rotation = 5.12 s; later deadlines go round again
    MAX_RTO_MS = 8000        # backoff cap: 1, 2, 4, 8, 8, ... seconds
    MAX_EVENTS = 256
    MAX_SHARED = 16          # Engine.shared_fds
    SHARED_ROUNDS = 16       # batches read from a shared socket per wake-up
    REQUESTS_PER_POLL = 64   # single-port: requests kept per wake-up, as the listener's
    BIG_BLOCKS = 16          # blocks too big for GSO to join: how many one sendmmsg sends
    SCRATCH_LEN = BIG_BLOCKS * (MAX_BLKSIZE + HEADER_LEN)  # > one GSO send (65000 + 64 headers)
    SPIN_BUDGET_US = 1000    # poll() returns to the event loop at least this often
    SPIN_MISSES_MAX = 4      # spins that caught nothing, in a row, before backing off
    SPIN_SKIP = 32           # poll() calls that then do not spin


cdef inline const in_addr *source_of(Xfer *x) noexcept:
    """The address a transfer answers from when its socket cannot say (NULL: the socket's)."""
    return &x.local if x.local.s_addr else NULL


cdef inline size_t block_len(Xfer *x, uint64_t blk) noexcept:
    """Payload bytes of block blk (absolute): blksize, less for the last (0 if it is empty)."""
    return x.blksize if blk < x.last_block else x.size - (x.last_block - 1) * x.blksize


cdef inline uint16_t load16(const char *p) noexcept:
    return (<uint8_t>p[0] << 8) | <uint8_t>p[1]


cdef inline void store16(char *p, uint16_t v) noexcept:
    p[0] = <char>(v >> 8)
    p[1] = <char>(v & 0xff)


# ---------------------------------------------------------------- codec (per request)

def parse_request(const unsigned char[:] data not None):
    """Parse an RRQ or WRQ: (opcode, filename, mode, options).

    Option names and the mode come back in lower case; the filename as the client sent
    it (UTF-8, undecodable bytes kept by surrogateescape). Raises TftpError with the code
    to answer for a malformed request; returns None for a datagram that is not a request
    at all (those are dropped, never answered).
    """
    cdef Py_ssize_t n = data.shape[0], i, start
    if n < 2:
        return None
    cdef uint16_t op = (data[0] << 8) | data[1]
    if op != OP_RRQ and op != OP_WRQ:
        return None
    if n > MAX_REQUEST_LEN:
        raise TftpError(ERR_ILLEGAL_OP, "request too long")
    fields = []
    start = 2
    for i in range(2, n):
        if data[i] == 0:
            fields.append(bytes(data[start:i]))
            start = i + 1
    if start != n:
        raise TftpError(ERR_ILLEGAL_OP, "malformed request: missing NUL terminator")
    if len(fields) < 2:
        raise TftpError(ERR_ILLEGAL_OP, "malformed request: no transfer mode")
    if not fields[0]:
        raise TftpError(ERR_ILLEGAL_OP, "malformed request: empty file name")
    if len(fields) % 2:
        raise TftpError(ERR_ILLEGAL_OP, "malformed request: option without value")
    filename = fields[0].decode("utf-8", "surrogateescape")
    mode = fields[1].decode("ascii", "replace").lower()
    if mode not in ("octet", "netascii"):
        raise TftpError(ERR_ILLEGAL_OP, f"unsupported transfer mode {mode!r}")
    options = {}
    for i in range(2, len(fields), 2):
        name = fields[i].decode("ascii", "replace").lower()
        if name in options:
            raise TftpError(ERR_OPTION, f"duplicate option {name!r}")
        options[name] = fields[i + 1].decode("ascii", "replace")
    return op, filename, mode, options


cdef int option_int(dict options, str name, int lo, int hi) except -2:
    """The option as an int in lo..hi, or -1 when absent or unusable (ignored)."""
    value = options.get(name)
    if value is None or not value.isdigit() or len(value) > 10:
        return -1
    v = int(value)
    return v if lo <= v <= hi else -1


def negotiate(dict options, uint64_t size, *, bint netascii=False, int blksize_max=MAX_BLKSIZE,
              int window_bytes_max=1 << 20, bint allow_blksize=True):
    """Options granted for a request: (blksize, windowsize, timeout_s, oack).

    timeout_s is 0 when the client did not ask; oack is None when no option was
    accepted (the transfer then starts with DATA 1, RFC 2347). Unknown options and
    out-of-range values are ignored; blksize below 8 is refused (RFC 2348).
    """
    granted = []
    cdef int blksize = DEFAULT_BLKSIZE, window = 1, timeout = 0, v
    if allow_blksize and "blksize" in options:
        raw = options["blksize"]
        if raw.isdigit() and len(raw) <= 10 and int(raw) < MIN_BLKSIZE:
            raise TftpError(ERR_OPTION, f"blksize {raw} below the minimum of {MIN_BLKSIZE}")
        v = option_int(options, "blksize", MIN_BLKSIZE, 1 << 30)
        if v > 0:
            blksize = min(v, blksize_max, MAX_BLKSIZE)
            granted.append(("blksize", blksize))
    if "tsize" in options and not netascii:
        # RFC 2349: the client sends 0; the server answers with the size. Netascii
        # sizes are unknown before conversion, and dnsmasq does not offer them either.
        granted.append(("tsize", size))
    v = option_int(options, "timeout", MIN_TIMEOUT, MAX_TIMEOUT)
    if v > 0:
        timeout = v
        granted.append(("timeout", v))
    v = option_int(options, "windowsize", MIN_WINDOWSIZE, MAX_WINDOWSIZE)
    if v > 0:
        # RFC 7440, capped in bytes in flight after blksize is settled (as tftp-hpa does)
        window = max(1, min(v, window_bytes_max // blksize, 32767))
        granted.append(("windowsize", window))
    if not granted:
        return blksize, window, timeout, None
    oack = bytearray(b"\x00\x06")
    for name, value in granted:
        oack += name.encode() + b"\x00" + str(value).encode() + b"\x00"
    return blksize, window, timeout, bytes(oack)


def build_error(int code, str message):
    """ERROR packet (RFC 1350 section 5)."""
    return bytes((0, OP_ERROR, code >> 8, code & 0xff)) + message.encode("utf-8", "replace") + b"\x00"


def build_request(int opcode, str filename, str mode="octet", dict options=None):
    """RRQ/WRQ with options (RFC 1350, RFC 2347); used by the client."""
    out = bytearray((0, opcode))
    out += filename.encode("utf-8", "surrogateescape") + b"\x00" + mode.encode() + b"\x00"
    for name, value in (options or {}).items():
        out += str(name).encode() + b"\x00" + str(value).encode() + b"\x00"
    return bytes(out)


def build_ack(uint32_t block):
    return bytes((0, OP_ACK, (block >> 8) & 0xff, block & 0xff))


def parse_reply(const unsigned char[:] data not None):
    """A server's datagram for the client: (opcode, number, payload).

    DATA -> (3, block, payload bytes); ERROR -> (5, code, message str);
    OACK -> (6, 0, {name: value}); anything else raises TftpError(4).
    """
    cdef Py_ssize_t n = data.shape[0]
    if n < 2:
        raise TftpError(ERR_ILLEGAL_OP, "short packet")
    cdef uint16_t op = (data[0] << 8) | data[1]
    if op == OP_DATA and n >= HEADER_LEN:
        return op, (data[2] << 8) | data[3], bytes(data[4:])
    if op == OP_ERROR and n >= HEADER_LEN:
        msg = bytes(data[4:]).split(b"\x00", 1)[0].decode("utf-8", "replace")
        return op, (data[2] << 8) | data[3], msg
    if op == OP_OACK:
        fields = bytes(data[2:]).split(b"\x00")
        if fields and fields[len(fields) - 1] == b"":
            fields.pop()
        if len(fields) % 2:
            raise TftpError(ERR_OPTION, "malformed OACK")
        opts = {fields[i].decode("ascii", "replace").lower(): fields[i + 1].decode("ascii", "replace")
                for i in range(0, len(fields), 2)}
        return op, 0, opts
    if op == OP_ACK and n >= HEADER_LEN:
        return op, (data[2] << 8) | data[3], b""
    raise TftpError(ERR_ILLEGAL_OP, f"unexpected opcode {op}")


# ---------------------------------------------------------------- files

def have_openat2():
    """Whether the kernel enforces RESOLVE_BENEATH (else a stricter component walk)."""
    return bool(fs_have_openat2())


def have_gso():
    """Whether the kernel accepts UDP GSO (UDP_SEGMENT)."""
    return bool(udpio_probe_gso())


def open_beneath(int rootfd, str path):
    """Open `path` read-only strictly beneath the directory rootfd. Returns an fd or
    raises OSError (EXDEV when the path resolves outside the root)."""
    cdef bytes raw = path.encode("utf-8", "surrogateescape")
    if b"\x00" in raw:
        raise OSError(22, "NUL in file name")
    cdef int fd = fs_open_beneath(rootfd, raw)
    if fd < 0:
        raise OSError(-fd, path)
    return fd


# ---------------------------------------------------------------- engine

cdef class Engine:
    """Transfer table, windows, retransmission wheel and counters of one process.

    on_done(slot, outcome, error_code, bytes_acked, retransmits, elapsed_ms) is called
    once for every transfer that ends. With fake_clock the time only moves through
    set_clock() (engine tests); otherwise CLOCK_MONOTONIC.
    """

    def __cinit__(self, int capacity, on_done, *, bint fake_clock=False, gso=None):
        cdef int32_t i
        self.epfd = self.watch_epfd = -1  # __dealloc__ runs even if this raises: not fd 0
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.on_done = on_done
        self.deferred = []
        self.fake_clock = fake_clock
        self.gso = udpio_probe_gso() if gso is None else bool(gso)
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, "epoll_create1")
        self.xfers = <Xfer *>calloc(capacity, sizeof(Xfer))
        self.contents = [None] * capacity
        self.wheel = <int32_t *>malloc(WHEEL_SLOTS * sizeof(int32_t))
        self.scratch = <char *>malloc(SCRATCH_LEN)
        self.events = calloc(MAX_EVENTS, sizeof(epoll_event))
        self.by_peer_mask = 1
        while self.by_peer_mask < <uint32_t>capacity * 2:  # at most half full
            self.by_peer_mask <<= 1
        self.by_peer = <int32_t *>malloc(self.by_peer_mask * sizeof(int32_t))
        self.by_peer_mask -= 1
        self.batch = udpio_batch_new()
        self.batch_fd = -1
        self.request_fd = -1
        self.requests = []
        # unpredictable: a client choosing its ports must not make them all collide
        self.hash_seed = int.from_bytes(os.urandom(4), "little")
        if not (self.xfers and self.wheel and self.scratch and self.events and self.by_peer
                and self.batch):
            raise MemoryError()
        for i in range(self.by_peer_mask + 1):
            self.by_peer[i] = -1
        for i in range(WHEEL_SLOTS):
            self.wheel[i] = -1
        for i in range(capacity):
            self.xfers[i].wheel_next = i + 1 if i + 1 < capacity else -1
            self.xfers[i].sock = -1
        self.free_head = 0
        self.now_ms = 0 if fake_clock else self.clock()
        self.wheel_ms = (self.now_ms // TICK_MS + 1) * TICK_MS

    def __dealloc__(self):
        cdef int32_t i
        if self.xfers:
            for i in range(self.capacity):
                if self.xfers[i].state != XFER_FREE and not self.xfers[i].shared:
                    close(self.xfers[i].sock)
        for i in range(self.nshared):
            close(self.shared_fds[i])
        if self.epfd >= 0:
            close(self.epfd)
        if self.watch_epfd >= 0:
            close(self.watch_epfd)
        free(self.by_peer)
        free(self.batch)
        free(self.xfers)
        free(self.wheel)
        free(self.scratch)
        free(self.events)

    # -- Python-facing, per transfer or per tick

    def fileno(self):
        """The epoll fd: readable when any transfer socket has datagrams."""
        return self.epfd

    @property
    def active(self):
        return self.active_count

    @property
    def can_share(self):
        """Whether share() takes another socket."""
        return self.nshared < MAX_SHARED

    @property
    def uses_gso(self):
        return bool(self.gso)

    def set_clock(self, uint64_t now_ms):
        if not self.fake_clock:
            raise RuntimeError("set_clock needs fake_clock=True")
        self.now_ms = now_ms

    def share(self, int sock, *, bint requests=False):
        """Take a bound, non-blocking, unconnected UDP socket that transfers may share:
        start() with it sends every datagram to its transfer's peer and finds the transfer
        of each arriving one by the peer's address. The engine owns and closes it. Set
        IP_RECVERR on it to have a closed client port end its transfer. With requests (the
        listening socket, single-port mode; IP_PKTINFO set on it) the RRQs and WRQs that
        arrive on it are kept for take_requests()."""
        cdef epoll_event ev
        if self.nshared == MAX_SHARED:
            raise RuntimeError("too many shared sockets")
        if requests and self.request_fd >= 0:
            raise RuntimeError("requests come from one socket only")
        ev.events = EPOLLIN
        ev.data.u64 = <uint32_t>self.nshared  # generation 0: a shared socket, not a transfer
        if epoll_ctl(self.epfd, EPOLL_CTL_ADD, sock, &ev) < 0:
            raise OSError(errno, "epoll_ctl")
        self.shared_fds[self.nshared] = sock
        self.nshared += 1
        if requests:
            self.request_fd = sock

    def take_requests(self):
        """The requests read by poll() from the socket shared with requests=True since the
        last call: a list of (datagram, (client address, port), ifindex, local address as 4
        bytes), oldest first."""
        taken, self.requests = self.requests, []
        self.nrequests = 0
        return taken

    def close(self):
        """Close the shared sockets now (the engine may outlive its service a while):
        after abort_all(), so no transfer is left on them."""
        cdef int i
        for i in range(self.nshared):
            epoll_ctl(self.epfd, EPOLL_CTL_DEL, self.shared_fds[i], NULL)
            close(self.shared_fds[i])
        self.nshared = 0
        self.request_fd = -1

    def start(self, int sock, int fd, bytes peer_ip4 not None, int peer_port, uint64_t size,
              int64_t mtime_ns, int blksize, int window, int rto_ms, int give_up_ms,
              bytes oack=None, bytes content=None, bytes local_ip4=None):
        """Take a transfer: sock is its bound, non-blocking UDP socket (the engine connects
        it to the peer, owns and closes it), or a socket given to share();
        the data comes from `content` when given (a
        snapshot held in memory; fd is then ignored), else from the open file fd (the
        caller owns it). local_ip4: the address to answer from, on a shared socket bound to
        the wildcard address. Returns its slot; nothing is sent until begin(slot)."""
        cdef int32_t slot = self.free_head, i
        cdef Xfer *x
        cdef epoll_event ev
        cdef bint shared = 0
        cdef uint32_t gen
        for i in range(self.nshared):
            if self.shared_fds[i] == sock:
                shared = 1
        if slot < 0:
            raise RuntimeError("transfer table full")
        if len(peer_ip4) != 4 or (local_ip4 is not None and len(local_ip4) != 4):
            raise ValueError("peer_ip4 and local_ip4 must be 4 bytes")
        if not MIN_BLKSIZE <= blksize <= MAX_BLKSIZE or not 1 <= window <= MAX_WINDOWSIZE:
            raise ValueError("blksize or window out of range")
        if oack is not None and len(oack) > sizeof(self.xfers[0].oack):
            raise ValueError("OACK too long")
        if content is not None and <uint64_t>len(content) != size:
            raise ValueError("content length differs from size")
        x = &self.xfers[slot]
        gen = x.gen + 1 if x.gen + 1 else 1  # 0 tags the shared sockets' epoll events
        memset(&x.peer, 0, sizeof(sockaddr_in))
        x.peer.sin_family = 2  # AF_INET
        x.peer.sin_port = ((peer_port & 0xff) << 8) | ((peer_port >> 8) & 0xff)
        memcpy(&x.peer.sin_addr.s_addr, <const char *>peer_ip4, 4)
        x.local.s_addr = 0
        if local_ip4 is not None and shared:
            memcpy(&x.local.s_addr, <const char *>local_ip4, 4)
        if shared:
            if self.peer_find(&x.peer) >= 0:
                raise ValueError("this client already has a transfer on a shared socket")
            self.peer_insert(slot)
        else:
            # Connected: each send skips the route lookup (about 7 % of the server's CPU per
            # small transfer), and the kernel answers a stranger with ICMP port unreachable.
            if connect(sock, <const sockaddr *>&x.peer, sizeof(sockaddr_in)) < 0:
                raise OSError(errno, "connect")
            ev.events = EPOLLIN
            ev.data.u64 = (<uint64_t>gen << 32) | <uint32_t>slot
            if epoll_ctl(self.epfd, EPOLL_CTL_ADD, sock, &ev) < 0:
                raise OSError(errno, "epoll_ctl")
        self.free_head = x.wheel_next
        x.gen = gen
        x.shared = shared
        x.sock = sock
        x.fd = fd
        # the engine keeps the snapshot alive until the transfer ends
        self.contents[slot] = content
        x.content = <const char *>content if content is not None else NULL
        x.size = size
        x.mtime_ns = mtime_ns
        x.blksize = blksize
        x.window = window
        x.last_block = size // <uint64_t>blksize + 1
        x.acked = 0
        x.sent = 0
        x.retransmits = 0
        x.rto_initial_ms = max(rto_ms, TICK_MS)
        x.rto_ms = x.rto_initial_ms
        x.give_up_ms = give_up_ms
        if not self.fake_clock:
            self.now_ms = self.clock()
        x.started_ms = self.now_ms
        x.progress_ms = self.now_ms
        x.deadline_ms = self.now_ms + x.rto_ms
        if oack is not None:
            memcpy(x.oack, <const char *>oack, len(oack))
            x.oack_len = len(oack)
            x.state = XFER_OACK_SENT
        else:
            x.oack_len = 0
            x.state = XFER_SENDING
        x.wheel_slot = -1
        self.wheel_insert(slot)
        self.active_count += 1
        self.lockstep_count += window == 1
        return slot

    def begin(self, int32_t slot):
        """Send the transfer's first packet: the OACK, or the first window."""
        if not 0 <= slot < self.capacity or self.xfers[slot].state == XFER_FREE:
            raise ValueError("no such transfer")
        if self.xfers[slot].state == XFER_OACK_SENT:
            self.send_oack(slot)
        else:
            self.send_window(slot)

    def abort(self, int32_t slot):
        """End one transfer, telling the client (ERROR 0)."""
        if 0 <= slot < self.capacity and self.xfers[slot].state != XFER_FREE:
            self.finish(slot, OUT_ABORTED, 0)

    def acked(self, int32_t slot):
        """Blocks the client has acknowledged so far (0 before its first DATA arrived)."""
        if not 0 <= slot < self.capacity or self.xfers[slot].state == XFER_FREE:
            raise ValueError("no such transfer")
        return self.xfers[slot].acked

    def replace(self, int32_t slot):
        """End a transfer whose client started over from the same address and port: its
        old TID goes silent (an ERROR would reach the new request's socket)."""
        if 0 <= slot < self.capacity and self.xfers[slot].state != XFER_FREE:
            self.finish(slot, OUT_REPLACED, 0)

    def abort_all(self):
        cdef int32_t i
        for i in range(self.capacity):
            if self.xfers[i].state != XFER_FREE:
                self.finish(i, OUT_ABORTED, 0)

    def watch(self, int fd):
        """Have poll()'s busy-polling stop as soon as fd is readable: the listening socket,
        the ProxyDHCP sockets, whatever else this process serves. They go into an epoll set
        of their own: in the engine's, they would make fileno() readable for them too."""
        cdef epoll_event ev
        if self.watch_epfd < 0:
            self.watch_epfd = epoll_create1(EPOLL_CLOEXEC)
            if self.watch_epfd < 0:
                raise OSError(errno, "epoll_create1")
        ev.events = EPOLLIN
        ev.data.u64 = 0
        if epoll_ctl(self.watch_epfd, EPOLL_CTL_ADD, fd, &ev) < 0:
            raise OSError(errno, "epoll_ctl")

    def poll(self, int spin_us=0):
        """Drain every ready transfer socket. Called when fileno() is readable.

        With spin_us, when a wake-up brought a single datagram while lock-step transfers
        run, keep looking for up to spin_us after the last datagram before returning
        (busy-polling): on a loopback or LAN the next ACK is often that close, and catching
        it saves the sleep and wake-up of the process, which on a virtual machine costs
        more than the round trip. Where a wake-up finds several datagrams (a storm), it
        is paid for already, and spinning would only add CPU time; a windowed transfer
        pays it once per window, and its client takes longer to answer. It stops at once
        when a watch()ed fd or a single-port request is ready, after SPIN_BUDGET_US in
        all, and backs off while it finds nothing (a far or slow client)."""
        cdef int rounds, n
        cdef uint64_t before = self.packets_in
        if not self.fake_clock:
            self.now_ms = self.clock()
        n = self.poll_round()
        if (spin_us > 0 and self.packets_in - before == 1 and self.lockstep_count
                and not self.fake_clock):
            if self.spin_skip == 0:
                self.spin(spin_us)
                return
            self.spin_skip -= 1
        for rounds in range(3):  # bounded, so timers and new requests get their turn
            if n <= 1:
                return  # 1: a lone stream, its next ACK is a round trip away
            n = self.poll_round()

    cdef void spin(self, int spin_us) noexcept:
        cdef int n
        cdef uint64_t t, start, idle_from
        cdef bint idled = 0, caught = 0
        cdef epoll_event wev
        self.spins += 1
        start = idle_from = self.clock_us()
        while True:
            n = self.poll_round()
            t = self.clock_us()
            if self.nrequests or (self.watch_epfd >= 0 and epoll_wait(self.watch_epfd, &wev, 1, 0) > 0):
                self.spin_yields += 1
                break  # something else to serve: the event loop's turn
            if n > 0:
                if idled:  # an empty look came first: found by spinning, not by a wake-up
                    caught = 1
                    self.spin_hits += 1
                    idled = 0
                idle_from = t
                self.now_ms = t // 1000
            elif self.lockstep_count == 0:
                break
            elif t - idle_from >= <uint64_t>spin_us:
                if not caught:  # the ACKs come later than spin_us: a far or slow client
                    self.spin_misses += 1
                    if self.spin_misses == SPIN_MISSES_MAX:
                        self.spin_misses = 0
                        self.spin_skip = SPIN_SKIP
                break
            else:
                idled = 1
                sched_yield()  # another task of this CPU (a worker, a client) goes first
            if t - start >= SPIN_BUDGET_US:
                break
        if caught:
            self.spin_misses = 0

    cdef int poll_round(self) noexcept:
        """One epoll_wait and its datagrams: the number of ready sockets."""
        cdef epoll_event *ev = <epoll_event *>self.events
        cdef int n, i, got
        cdef int32_t slot
        cdef uint32_t gen
        cdef Xfer *x
        n = epoll_wait(self.epfd, ev, MAX_EVENTS, 0)
        for i in range(n):
            slot = <int32_t>(ev[i].data.u64 & 0xffffffffu)
            gen = <uint32_t>(ev[i].data.u64 >> 32)
            if gen == 0:
                if ev[i].events & EPOLLERR:
                    self.read_errors(self.shared_fds[slot])
                self.drain_shared(self.shared_fds[slot])
                continue
            x = &self.xfers[slot]
            if x.state == XFER_FREE or x.gen != gen:
                continue  # ended earlier in this batch
            got = udpio_recv(x.sock, self.rbuf, sizeof(self.rbuf), &self.raddr)
            if got == -EMSGSIZE:
                got = -1  # counted as malformed
            elif got == -ECONNREFUSED:
                # the connected socket's ICMP error: nobody listens on the client's port any
                # more, so free the slot now rather than after give-up-timeout
                self.finish(slot, OUT_UNREACHABLE, 0)
                continue
            elif got < 0:
                continue  # nothing after all, or another ICMP error: no datagram
            self.handle_datagram(slot, self.rbuf, got, &self.raddr)
        return n

    def tick(self):
        """Expire due retransmission timers. Called periodically (every TICK_MS)."""
        cdef int steps = 0
        cdef int32_t slot, nxt, w
        if not self.fake_clock:
            self.now_ms = self.clock()
        self.in_wheel = 1
        while self.wheel_ms <= self.now_ms and steps < WHEEL_SLOTS:
            w = (self.wheel_ms // TICK_MS) % WHEEL_SLOTS
            slot = self.wheel[w]
            self.wheel[w] = -1
            while slot >= 0:
                nxt = self.xfers[slot].wheel_next
                self.xfers[slot].wheel_slot = -1
                if self.xfers[slot].deadline_ms <= self.now_ms:
                    self.on_timeout(slot)
                if self.xfers[slot].state != XFER_FREE and self.xfers[slot].wheel_slot < 0:
                    self.wheel_insert(slot)
                slot = nxt
            self.wheel_ms += TICK_MS
            steps += 1
        if self.wheel_ms <= self.now_ms:  # stalled for more than a rotation: all seen
            self.wheel_ms = (self.now_ms // TICK_MS + 1) * TICK_MS
        self.in_wheel = 0
        # Python runs only now, with the wheel consistent; a slot goes back to the free
        # list right before its own callback, so no callback can reuse another's slot
        pending, self.deferred = self.deferred, []
        for args in pending:
            slot = args[0]
            self.xfers[slot].wheel_next = self.free_head
            self.free_head = slot
            self.on_done(*args)

    def stats(self):
        return {
            "active": self.active_count, "packets_in": self.packets_in,
            "packets_out": self.packets_out, "bytes_out": self.bytes_out,
            "retransmits": self.retransmits, "malformed": self.malformed,
            "strangers": self.strangers, "send_errors": self.send_errors,
            "transfers_ok": self.transfers_ok, "transfers_failed": self.transfers_failed,
            "send_calls": self.send_calls,
            "spins": self.spins, "spin_hits": self.spin_hits, "spin_yields": self.spin_yields,
            "gso": bool(self.gso),
        }

    # -- per packet: C only

    cdef inline uint64_t clock(self) noexcept:
        return self.clock_us() // 1000

    cdef inline uint64_t clock_us(self) noexcept:
        cdef timespec ts
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return <uint64_t>ts.tv_sec * 1000000 + <uint64_t>ts.tv_nsec // 1000

    cdef uint32_t peer_hash(self, const sockaddr_in *a) noexcept:
        cdef uint32_t h = (a.sin_addr.s_addr ^ self.hash_seed) * 2654435761u
        h ^= (<uint32_t>a.sin_port ^ (self.hash_seed >> 16)) * 40503u
        return (h ^ (h >> 16)) & self.by_peer_mask

    cdef int32_t peer_find(self, const sockaddr_in *a) noexcept:
        """The shared transfer of this client, or -1."""
        cdef uint32_t h = self.peer_hash(a)
        cdef int32_t slot
        while True:
            slot = self.by_peer[h]
            if slot < 0:
                return -1
            if (self.xfers[slot].peer.sin_port == a.sin_port
                    and self.xfers[slot].peer.sin_addr.s_addr == a.sin_addr.s_addr):
                return slot
            h = (h + 1) & self.by_peer_mask

    cdef void peer_insert(self, int32_t slot) noexcept:
        """Into the first empty entry from the slot's peer's hash on (linear probing)."""
        cdef uint32_t h = self.peer_hash(&self.xfers[slot].peer)
        while self.by_peer[h] >= 0:
            h = (h + 1) & self.by_peer_mask
        self.by_peer[h] = slot

    cdef void peer_remove(self, int32_t slot) noexcept:
        cdef uint32_t h = self.peer_hash(&self.xfers[slot].peer)
        cdef int32_t moved
        while self.by_peer[h] != slot:
            h = (h + 1) & self.by_peer_mask
        self.by_peer[h] = -1
        # linear probing: the rest of the run moves up to where a lookup meets it
        h = (h + 1) & self.by_peer_mask
        while self.by_peer[h] >= 0:
            moved = self.by_peer[h]
            self.by_peer[h] = -1
            self.peer_insert(moved)
            h = (h + 1) & self.by_peer_mask

    cdef void drain_shared(self, int fd) noexcept:
        """Read a shared socket's datagrams in batches and hand each to its transfer; the
        DATA they cause leaves in one sendmmsg per batch."""
        cdef int n, i, got, rounds
        cdef int32_t slot
        cdef const char *data
        cdef const sockaddr_in *src
        self.batch_fd = fd
        for rounds in range(SHARED_ROUNDS):  # bounded, like poll
            n = udpio_batch_recv(fd, self.batch)
            if n < 0 and n != -EAGAIN:
                continue  # an ICMP error, reported once to any call: read_errors has it
            if n <= 0:
                break
            for i in range(n):
                got = udpio_batch_get(self.batch, i, &data, &src)
                if fd == self.request_fd and (got >= HEADER_LEN or got == -EMSGSIZE) and (
                        load16(data) == OP_RRQ or load16(data) == OP_WRQ):
                    # single-port mode: a request (a long one cut, and refused as too long)
                    self.take_request(i, data, got if got >= 0 else UDPIO_IN_LEN, src)
                    continue
                slot = self.peer_find(src)
                if slot < 0 or self.xfers[slot].sock != fd:
                    # Not a transfer's client (or one just ended): dropped without an
                    # answer, since an ERROR 5 could reach the next request of a client that
                    # reused its port, and be taken as the answer to it
                    self.packets_in += 1
                    self.strangers += 1
                    continue
                self.handle_datagram(slot, data, got if got >= 0 else -1, <sockaddr_in *>src)
            self.flush_batch(fd)
            if n < 64 or (fd == self.request_fd and self.nrequests >= REQUESTS_PER_POLL):
                break  # the rest wait for the next wake-up, after timers and other work
        self.batch_fd = -1

    cdef void take_request(self, int i, const char *data, int n, const sockaddr_in *src) noexcept:
        """Keep one request for Python (per request, not per packet: Python objects are fine)."""
        cdef int ifindex
        cdef in_addr local
        cdef const uint8_t *ip = <const uint8_t *>&src.sin_addr.s_addr
        udpio_batch_pktinfo(self.batch, i, &ifindex, &local)
        self.nrequests += 1
        self.requests.append((data[:n], (f"{ip[0]}.{ip[1]}.{ip[2]}.{ip[3]}",
                                         (src.sin_port & 0xff) << 8 | src.sin_port >> 8),
                              ifindex, (<const char *>&local.s_addr)[:4]))

    cdef void flush_batch(self, int fd) noexcept:
        """Send the DATA queued while draining a shared socket (all of it DATA)."""
        cdef uint64_t nbytes
        cdef int lost, i
        cdef Xfer *x
        cdef int sent = udpio_batch_flush(fd, self.batch, &nbytes, &lost, self.went)
        self.send_calls += sent + lost > 0
        self.packets_out += <uint64_t>sent
        self.bytes_out += nbytes - <uint64_t>sent * HEADER_LEN
        self.send_errors += <uint64_t>lost
        for i in range(self.nqueued if lost else 0):
            # a block that did not leave is not sent (send_window counted it so when queued)
            x = &self.xfers[self.queued[i].slot]
            if (not self.went[i] and x.state != XFER_FREE and x.gen == self.queued[i].gen
                    and x.sent >= self.queued[i].block):
                x.sent = self.queued[i].block - 1
        self.nqueued = 0

    cdef void read_errors(self, int fd) noexcept:
        """A shared socket's ICMP errors (IP_RECVERR): port unreachable ends the transfer of
        the client that sent it, as ECONNREFUSED does on a transfer's own socket."""
        cdef int i, r
        cdef int32_t slot
        for i in range(64):
            r = udpio_read_error(fd, &self.raddr)
            if r < 0:
                return
            if r == 1:
                slot = self.peer_find(&self.raddr)
                if slot >= 0 and self.xfers[slot].sock == fd:
                    self.finish(slot, OUT_UNREACHABLE, 0)

    cdef int send_one(self, Xfer *x, char *pkt, size_t n) noexcept:
        """One datagram to the transfer's peer: 0 or -errno."""
        cdef int r = self.send_segments(x.sock, &x.peer if x.shared else NULL, source_of(x),
                                        pkt, n, 1, n, 0)
        return r if r < 0 else 0

    cdef int send_segments(self, int fd, const sockaddr_in *to, const in_addr *src,
                           char *buf, size_t seg, int nseg, size_t last, int gso) noexcept:
        """udpio_send_segments, counted: packets_out / send_calls is the batching achieved."""
        self.send_calls += 1
        return udpio_send_segments(fd, to, src, buf, seg, nseg, last, gso)

    cdef void wheel_insert(self, int32_t slot) noexcept:
        # ceil to a wheel slot, so the slot comes round no earlier than the deadline
        cdef Xfer *x = &self.xfers[slot]
        cdef uint64_t when = (x.deadline_ms + TICK_MS - 1) // TICK_MS * TICK_MS
        cdef int32_t w
        if when < self.wheel_ms:
            when = self.wheel_ms
        w = (when // TICK_MS) % WHEEL_SLOTS
        x.wheel_slot = w
        x.wheel_prev = -1
        x.wheel_next = self.wheel[w]
        if x.wheel_next >= 0:
            self.xfers[x.wheel_next].wheel_prev = slot
        self.wheel[w] = slot

    cdef void wheel_remove(self, int32_t slot) noexcept:
        cdef Xfer *x = &self.xfers[slot]
        if x.wheel_slot < 0:
            return
        if x.wheel_prev >= 0:
            self.xfers[x.wheel_prev].wheel_next = x.wheel_next
        else:
            self.wheel[x.wheel_slot] = x.wheel_next
        if x.wheel_next >= 0:
            self.xfers[x.wheel_next].wheel_prev = x.wheel_prev
        x.wheel_slot = -1

    cdef int send_oack(self, int32_t slot) noexcept:
        cdef Xfer *x = &self.xfers[slot]
        cdef int r = self.send_one(x, x.oack, x.oack_len)
        if r < 0:
            if r == -ECONNREFUSED and not x.shared:  # an earlier send's ICMP error surfacing
                self.finish(slot, OUT_UNREACHABLE, 0)
                return -1
            self.send_errors += 1
        else:
            self.packets_out += 1
        x.deadline_ms = self.now_ms + x.rto_ms
        return 0

    cdef int send_window(self, int32_t slot) noexcept:
        """Send blocks acked+1 .. acked+window; retransmits what was sent before."""
        cdef Xfer *x = &self.xfers[slot]
        cdef uint64_t first = x.acked + 1, last = x.acked + x.window, b, blk, resent, sent_to
        cdef size_t seg = x.blksize + HEADER_LEN, total, blen = 0
        cdef int per_chunk, nseg, i, r, gso = self.gso
        cdef iovec iov[GSO_MAX_SEGMENTS]
        cdef char *p
        cdef char *buf
        cdef const sockaddr_in *to = &x.peer if x.shared else NULL  # NULL: connected
        cdef const in_addr *src = source_of(x)
        if last > x.last_block:
            last = x.last_block
        if first > last:
            return 0
        per_chunk = GSO_MAX_BYTES // seg
        if per_chunk < 2:  # GSO cannot join two such blocks: one sendmmsg of several instead
            per_chunk = BIG_BLOCKS
            gso = 0
        if per_chunk > GSO_MAX_SEGMENTS:
            per_chunk = GSO_MAX_SEGMENTS
        b = first
        sent_to = first - 1  # the last block that left (or was queued) in this call
        while b <= last:
            nseg = <int>(last - b + 1) if last - b + 1 < <uint64_t>per_chunk else per_chunk
            buf = self.scratch
            if self.batch_fd == x.sock and x.window == 1:  # a shared socket being drained: batched
                blen = block_len(x, b)
                buf = udpio_batch_add(self.batch, &x.peer, src, blen + HEADER_LEN)
                if buf == NULL:  # full: send what it holds
                    self.flush_batch(x.sock)
                    buf = udpio_batch_add(self.batch, &x.peer, src, blen + HEADER_LEN)
                self.queued[self.nqueued] = Queued(slot, x.gen, b)
                self.nqueued += 1
            total = 0
            for i in range(nseg):
                blk = b + <uint64_t>i
                blen = block_len(x, blk)
                p = buf + <size_t>i * seg
                store16(p, OP_DATA)
                store16(p + 2, <uint16_t>(blk & 0xffff))  # rolls over 65535 -> 0
                iov[i].iov_base = p + HEADER_LEN
                iov[i].iov_len = blen
                total += blen
            if x.content != NULL:
                for i in range(nseg):  # from memory: no system call
                    memcpy(iov[i].iov_base, x.content + (b - 1 + <uint64_t>i) * x.blksize,
                           iov[i].iov_len)
            elif total:
                r = preadv(x.fd, iov, nseg, <int64_t>((b - 1) * x.blksize))
                # A truncated or rewritten file ends the transfer with an ERROR rather than
                # sending a mix of old and new content (docs/tftp.md). Checked after the
                # read: a write that put new bytes in it has already moved the mtime.
                if r < 0 or <size_t>r != total or not self.file_unchanged(x):
                    if buf != self.scratch:
                        udpio_batch_unadd(self.batch)
                        self.nqueued -= 1
                    self.finish(slot, OUT_FILE_CHANGED, 0)
                    return -1
            if buf != self.scratch:
                r = 1  # queued: drain_shared sends and counts it
            else:
                r = self.send_segments(x.sock, to, src, self.scratch, seg, nseg,
                                       blen + HEADER_LEN, gso)
            if r == -EIO and gso:
                # a device without checksum offload refuses GSO: fall back for good
                self.gso = gso = 0
                r = self.send_segments(x.sock, to, src, self.scratch, seg, nseg,
                                       blen + HEADER_LEN, 0)
            if r == -ECONNREFUSED and not x.shared:  # (a shared socket's is read_errors')
                self.finish(slot, OUT_UNREACHABLE, 0)
                return -1
            if r < 0:
                self.send_errors += 1  # treated as loss: the timer resends
                break
            if buf == self.scratch:
                self.packets_out += <uint64_t>r
                if r < nseg:  # the send buffer filled: the first r went
                    total = 0
                    for i in range(r):
                        total += iov[i].iov_len
                self.bytes_out += total
            if b <= x.sent:  # blocks of this chunk sent before: retransmissions
                resent = (x.sent if x.sent < b + <uint64_t>r - 1 else b + <uint64_t>r - 1) - b + 1
                self.retransmits += resent
                x.retransmits += <uint32_t>resent
            sent_to = b + <uint64_t>r - 1
            if r < nseg:
                break
            b += <uint64_t>nseg
        if sent_to > x.sent:  # only blocks that left: an ACK beyond them is no progress, and
            # their first sending later is no retransmission
            x.sent = sent_to
        x.deadline_ms = self.now_ms + x.rto_ms
        return 0

    cdef bint file_unchanged(self, Xfer *x) noexcept:
        """Size and modification time as at admission (a rename over the file keeps both)."""
        cdef uint64_t size
        cdef int64_t mtime_ns
        return fs_identity(x.fd, &size, &mtime_ns) == 0 and size == x.size and mtime_ns == x.mtime_ns

    cdef void on_ack(self, int32_t slot, uint16_t block) noexcept:
        cdef Xfer *x = &self.xfers[slot]
        cdef uint64_t a
        if x.state == XFER_OACK_SENT:
            if block != 0:
                self.malformed += 1
                return
            x.state = XFER_SENDING
            a = 0
        else:
            # the 16-bit number taken as the nearest absolute block at or after acked
            a = x.acked + <uint16_t>(block - <uint16_t>(x.acked & 0xffff))
            if a <= x.acked or a > x.sent:
                return  # duplicate or stale: never doubles the sending (RFC 1350 errata)
        x.acked = a
        x.progress_ms = self.now_ms
        x.rto_ms = x.rto_initial_ms
        if a == x.last_block:
            self.finish(slot, OUT_OK, 0)
            return
        # the end of a window sends the next one; an ACK inside the window means the
        # client missed the block after it: resend from there (RFC 7440 section 4)
        if self.send_window(slot) == 0:
            # the rto was reset: the deadline may now be earlier than the wheel position
            self.wheel_remove(slot)
            self.wheel_insert(slot)

    cdef void on_timeout(self, int32_t slot) noexcept:
        cdef Xfer *x = &self.xfers[slot]
        cdef uint32_t cap
        if self.now_ms - x.progress_ms >= x.give_up_ms:
            self.finish(slot, OUT_TIMEOUT, 0)
            return
        cap = MAX_RTO_MS if x.rto_initial_ms < MAX_RTO_MS else x.rto_initial_ms
        x.rto_ms = x.rto_ms * 2 if x.rto_ms * 2 < cap else cap
        if x.state == XFER_OACK_SENT:
            if self.send_oack(slot) < 0:
                return
            self.retransmits += 1
            x.retransmits += 1
        elif self.send_window(slot) < 0:
            return
        if x.deadline_ms > x.progress_ms + x.give_up_ms:
            x.deadline_ms = x.progress_ms + x.give_up_ms  # give up on time, not a backoff late

    cdef void send_error_to(self, Xfer *x, sockaddr_in *dst, uint16_t code,
                            const char *msg) noexcept:
        """An ERROR from the transfer's socket (and address) to dst."""
        cdef char pkt[128]
        cdef size_t n = strlen(msg)
        if n > sizeof(pkt) - HEADER_LEN - 1:
            n = sizeof(pkt) - HEADER_LEN - 1
        store16(pkt, OP_ERROR)
        store16(pkt + 2, code)
        memcpy(pkt + HEADER_LEN, msg, n)
        pkt[HEADER_LEN + n] = 0
        n += HEADER_LEN + 1
        if self.send_segments(x.sock, dst, source_of(x), pkt, n, 1, n, 0) < 0:
            self.send_errors += 1
        else:
            self.packets_out += 1

    cdef void handle_datagram(self, int32_t slot, const char *pkt, int n,
                              sockaddr_in *src) noexcept:
        cdef Xfer *x = &self.xfers[slot]
        cdef uint16_t op, code
        self.packets_in += 1
        if n >= 0 and (src.sin_port != x.peer.sin_port
                       or src.sin_addr.s_addr != x.peer.sin_addr.s_addr):
            # RFC 1350 section 4: a stranger gets ERROR 5; the transfer goes on. Only a
            # datagram queued before connect() gets here: later ones meet ICMP unreachable
            self.strangers += 1
            self.send_error_to(x, src, ERR_UNKNOWN_TID, b"Unknown transfer ID")
            return
        if n < HEADER_LEN:
            self.malformed += 1
            return
        op = load16(pkt)
        if op == OP_ACK:
            self.on_ack(slot, load16(pkt + 2))
        elif op == OP_ERROR:
            code = load16(pkt + 2)
            if x.state == XFER_OACK_SENT and code == ERR_OPTION:
                self.finish(slot, OUT_TSIZE_PROBE, code)
            else:
                self.finish(slot, OUT_CLIENT_ERROR, code)
        else:
            self.malformed += 1

    cdef void finish(self, int32_t slot, int outcome, int code) noexcept:
        cdef Xfer *x = &self.xfers[slot]
        cdef uint64_t done_bytes = x.acked * x.blksize
        if done_bytes > x.size:
            done_bytes = x.size
        if ((outcome == OUT_TIMEOUT or outcome == OUT_UNREACHABLE) and x.state == XFER_SENDING
                and x.sent == x.last_block and x.acked + 1 == x.last_block):
            outcome = OUT_LAST_UNACKED  # what the log can say for sure: not a vanish midway
        if outcome == OUT_FILE_CHANGED:
            self.send_error_to(x, &x.peer, ERR_UNDEFINED, b"file changed during transfer")
        elif outcome == OUT_ABORTED:
            self.send_error_to(x, &x.peer, ERR_UNDEFINED, b"transfer aborted by server")
        if outcome == OUT_OK or outcome == OUT_TSIZE_PROBE:
            self.transfers_ok += 1
        else:
            self.transfers_failed += 1
        self.wheel_remove(slot)
        if x.shared:
            self.peer_remove(slot)
        else:
            close(x.sock)  # the engine holds the only descriptor: closing leaves the epoll set
        x.sock = -1
        x.state = XFER_FREE
        x.content = NULL
        self.contents[slot] = None
        self.active_count -= 1
        self.lockstep_count -= x.window == 1
        if self.in_wheel:
            self.deferred.append((slot, OUTCOMES[outcome], code, done_bytes, x.retransmits,
                                  self.now_ms - x.started_ms))
            return
        x.wheel_next = self.free_head
        self.free_head = slot
        self.on_done(slot, OUTCOMES[outcome], code, done_bytes, x.retransmits,
                     self.now_ms - x.started_ms)
