# DHCP/BOOTP codec with the PXE options (RFC 2131, 2132, 3396, 3004, 4578; PXE 2.1).
#
# ProxyDHCP is control plane: a few packets per booting client. A request is checked
# once at its edge and decoded into a Packet; replies are built from a list of options.

from libc.errno cimport EAGAIN, EINTR, errno
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.stdio cimport snprintf
from libc.string cimport memchr, memcpy, memset
from bootstorm._native.netinet cimport in_addr, sockaddr_in
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_SetFromErrno
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_DecodeASCII

from bootstorm.errors import DhcpError

cdef extern from "sys/uio.h" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "sys/socket.h" nogil:
    ctypedef unsigned int socklen_t
    struct msghdr:
        void *msg_name
        socklen_t msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    struct mmsghdr:
        msghdr msg_hdr
        unsigned int msg_len
    struct cmsghdr:
        size_t cmsg_len
        int cmsg_level
        int cmsg_type
    cmsghdr *CMSG_FIRSTHDR(msghdr *msg)
    cmsghdr *CMSG_NXTHDR(msghdr *msg, cmsghdr *cmsg)
    unsigned char *CMSG_DATA(cmsghdr *cmsg)
    size_t CMSG_SPACE(size_t length)
    enum: MSG_DONTWAIT
    int recvmmsg(int fd, mmsghdr *msgs, unsigned int vlen, int flags, void *timeout)

cdef extern from "netinet/in.h" nogil:
    struct in_pktinfo:
        int ipi_ifindex
        in_addr ipi_spec_dst    # the local address the datagram came to
        in_addr ipi_addr
    enum: IPPROTO_IP, IP_PKTINFO
    uint16_t ntohs(uint16_t n)

cdef enum:
    BOOTP_HEADER_LEN = 236     # RFC 2131 section 2, up to `file`
    OPTIONS_OFFSET = 240       # after the magic cookie
    MIN_REPLY_LEN = 300        # RFC 1542 section 2.1: BOOTP messages are at least 300 octets
    MIN_MESSAGE_LEN = 548      # RFC 2131 section 2: a 576-byte IP datagram less IP and UDP headers
    MAX_MESSAGE_LEN = 16384    # dnsmasq's ceiling on option 57 (config.h DHCP_PACKET_MAX)
    IP_UDP_HEADERS = 28        # option 57 counts them (RFC 2132 section 9.10)
    SNAME_OFFSET = 44
    SNAME_LEN = 64
    FILE_OFFSET = 108
    FILE_LEN = 128
    CHADDR_OFFSET = 28
    CHADDR_LEN = 16
    OPT_PAD = 0
    OPT_END = 255
    OPT_OVERLOAD = 52          # RFC 2132 section 9.3
    OPT_MESSAGE_TYPE = 53
    OPT_MAX_MESSAGE_SIZE = 57
    OPT_PARAM_LIST = 55
    OPT_VENDOR_CLASS = 60
    OPT_USER_CLASS = 77        # RFC 3004
    OPT_CLIENT_ARCH = 93       # RFC 4578
    OPT_CLIENT_NDI = 94
    OPT_UUID = 97
    OPT_VENDOR_SPECIFIC = 43
    OPT_IPXE_ENCAP = 175
    SUBOPT_BOOT_ITEM = 71      # PXE 2.1: boot server type and layer

MAGIC_COOKIE = b"\x63\x82\x53\x63"


cdef inline bytes take(const uint8_t[:] data, Py_ssize_t start, Py_ssize_t n):
    """data[start:start + n] as bytes; the caller has checked the bounds."""
    return PyBytes_FromStringAndSize(<const char *>&data[start], n)


cdef inline bytes take_string(const uint8_t[:] data, Py_ssize_t start, Py_ssize_t width):
    """A NUL-terminated field (sname, file) up to its first NUL."""
    cdef const char *p = <const char *>&data[start]
    cdef const char *nul = <const char *>memchr(p, 0, width)
    return PyBytes_FromStringAndSize(p, (nul - p) if nul != NULL else width)


cdef Py_ssize_t walk_options(const uint8_t[:] data, Py_ssize_t start, Py_ssize_t end,
                             dict options, list order) except -1:
    """Collect options from data[start:end]; repeated codes are concatenated (RFC 3396).
    Returns the offset after END, or end when the area has no END."""
    cdef Py_ssize_t i = start
    cdef uint8_t code, n
    while i < end:
        code = data[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            return i + 1
        if i + 1 >= end:
            raise DhcpError(f"option {code} truncated")
        n = data[i + 1]
        if i + 2 + n > end:
            raise DhcpError(f"option {code} runs past the end ({n} bytes)")
        value = take(data, i + 2, n)
        if code in options:
            options[code] += value
        else:
            options[code] = value
            order.append(code)
        i += 2 + n
    return end


cdef class Packet:
    """A decoded DHCP message. Addresses are 4-byte strings; options map code -> bytes."""

    cdef public int op, htype, hlen, hops, secs, flags
    cdef public uint32_t xid
    cdef public bytes ciaddr, yiaddr, siaddr, giaddr, chaddr, sname, file
    cdef public dict options
    cdef public list order

    @property
    def message_type(self):
        v = self.options.get(OPT_MESSAGE_TYPE)
        return v[0] if v else 0

    @property
    def mac(self):
        return self.chaddr[:self.hlen]

    @property
    def vendor_class(self):
        return self.options.get(OPT_VENDOR_CLASS, b"").decode("ascii", "replace")

    @property
    def arch(self):
        """RFC 4578 client system architecture (the first one listed), or -1."""
        v = self.options.get(OPT_CLIENT_ARCH)
        return (v[0] << 8 | v[1]) if v is not None and len(v) >= 2 else -1

    @property
    def uuid(self):
        return self.options.get(OPT_UUID)

    @property
    def user_classes(self):
        """User classes (RFC 3004 length-prefixed list), or iPXE's plain string form."""
        raw = self.options.get(OPT_USER_CLASS)
        if not raw:
            return []
        out, i = [], 0
        while i < len(raw):
            n = raw[i]
            if n == 0 or i + 1 + n > len(raw):
                # not an RFC 3004 list: the whole option is one plain string (iPXE)
                return [raw.decode("ascii", "replace")]
            out.append(raw[i + 1:i + 1 + n].decode("ascii", "replace"))
            i += 1 + n
        return out

    @property
    def max_message_size(self):
        """The longest DHCP message (no IP/UDP headers) a reply to this request may be."""
        return max_message_size(self)

    @property
    def pxe_suboptions(self):
        v = self.options.get(OPT_VENDOR_SPECIFIC)
        return parse_suboptions(v) if v else {}

    @property
    def boot_item(self):
        """(type, layer) from PXE sub-option 71, or None."""
        v = self.pxe_suboptions.get(SUBOPT_BOOT_ITEM)
        if v is None or len(v) < 4:
            return None
        return (v[0] << 8 | v[1], v[2] << 8 | v[3])


cdef Py_ssize_t max_message_size(Packet request):
    """Option 57 less the IP and UDP headers, clamped to 548..16384 as dnsmasq does; 548
    without it (RFC 2131: every client takes a 576-byte datagram). Below 28, where dnsmasq's
    unsigned subtraction wraps to its ceiling, the floor: such a client is broken, not big."""
    cdef bytes v = request.options.get(OPT_MAX_MESSAGE_SIZE)
    cdef const uint8_t *b
    cdef Py_ssize_t n
    if v is None or len(v) < 2:  # dnsmasq reads the option only with 2 bytes or more
        return MIN_MESSAGE_LEN
    b = <const uint8_t *><const char *>v
    n = (b[0] << 8 | b[1]) - IP_UDP_HEADERS
    return MAX_MESSAGE_LEN if n > MAX_MESSAGE_LEN else MIN_MESSAGE_LEN if n < MIN_MESSAGE_LEN else n


def parse(const uint8_t[:] data not None):
    """Decode a DHCP message. Raises DhcpError when it is malformed."""
    cdef Py_ssize_t n = data.shape[0]
    cdef Packet p
    cdef int overload = 0
    if n < OPTIONS_OFFSET:
        raise DhcpError(f"too short for DHCP ({n} bytes)")
    if take(data, BOOTP_HEADER_LEN, 4) != MAGIC_COOKIE:
        raise DhcpError("no DHCP magic cookie")
    p = Packet.__new__(Packet)
    p.op = data[0]
    p.htype = data[1]
    p.hlen = data[2]
    p.hops = data[3]
    if p.hlen > CHADDR_LEN:
        raise DhcpError(f"hardware address length {p.hlen} > 16")
    p.xid = (<uint32_t>data[4] << 24) | (<uint32_t>data[5] << 16) | (<uint32_t>data[6] << 8) | data[7]
    p.secs = data[8] << 8 | data[9]
    p.flags = data[10] << 8 | data[11]
    p.ciaddr = take(data, 12, 4)
    p.yiaddr = take(data, 16, 4)
    p.siaddr = take(data, 20, 4)
    p.giaddr = take(data, 24, 4)
    p.chaddr = take(data, CHADDR_OFFSET, CHADDR_LEN)
    p.sname = take_string(data, SNAME_OFFSET, SNAME_LEN)
    p.file = take_string(data, FILE_OFFSET, FILE_LEN)
    p.options = {}
    p.order = []
    walk_options(data, OPTIONS_OFFSET, n, p.options, p.order)
    if OPT_OVERLOAD in p.options:
        # RFC 2132 section 9.3: options continue in `file` (1), `sname` (2) or both (3)
        overload = p.options[OPT_OVERLOAD][0] if p.options[OPT_OVERLOAD] else 0
        if overload & 1:
            walk_options(data, FILE_OFFSET, FILE_OFFSET + FILE_LEN, p.options, p.order)
            p.file = b""
        if overload & 2:
            walk_options(data, SNAME_OFFSET, SNAME_OFFSET + SNAME_LEN, p.options, p.order)
            p.sname = b""
    return p


def parse_suboptions(bytes raw not None):
    """Encapsulated options (option 43, RFC 2132 section 8.4) -> {code: bytes}."""
    cdef dict out = {}
    cdef list order = []
    cdef const uint8_t[:] view = raw
    if raw:
        walk_options(view, 0, len(raw), out, order)
    return out


cdef inline void put_field(char *buf, Py_ssize_t offset, Py_ssize_t width, bytes value) except *:
    cdef Py_ssize_t n = len(value)
    if n > width:
        raise ValueError(f"field of {n} bytes does not fit in {width}")
    memcpy(buf + offset, <const char *>value, n)


cdef inline void put_be(char *p, uint32_t value, int width) noexcept:
    cdef int i
    for i in range(width):
        p[i] = <char>((value >> (8 * (width - 1 - i))) & 0xff)


cdef struct Areas:
    # where options go once the options field is full (RFC 2132 section 9.3), as dnsmasq
    # fills them (rfc2131.c free_space): the field while it has room, then `file`, then `sname`
    Py_ssize_t main, limit        # offsets in the message: next option, end of the field
    Py_ssize_t file, sname        # next option inside `file` and `sname`
    Py_ssize_t overload           # offset of option 52 once written, else 0
    int bits                      # option 52's value: 1 file, 2 sname
    bint file_free, sname_free    # the field carries no boot file / server name


cdef inline Py_ssize_t room(Py_ssize_t *used, Py_ssize_t end, Py_ssize_t base, Py_ssize_t n) noexcept:
    """Offset (base + *used) for an option of n value bytes in an area ending at `end`, when
    it keeps room for the option, END and one more byte (dnsmasq's test); else -1."""
    cdef Py_ssize_t at = base + used[0]
    if used[0] + n + 3 >= end:
        return -1
    used[0] += n + 2
    return at


cdef Py_ssize_t place(Areas *a, Py_ssize_t n) noexcept:
    """Offset for an option of n value bytes, or -1 when it fits nowhere (dropped)."""
    cdef Py_ssize_t at = room(&a.main, a.limit, 0, n)
    if at >= 0:
        return at
    # beyond dnsmasq: option 52 is written only with room for it and END; dnsmasq writes it
    # anyway and then sends up to 2 bytes past the client's limit
    if a.overload == 0 and (a.file_free or a.sname_free) and a.main + 4 <= a.limit:
        a.overload = a.main
        a.main += 3
    if a.overload == 0:
        return -1
    if a.file_free:
        a.bits |= 1
    at = room(&a.file, FILE_LEN, FILE_OFFSET, n) if a.bits & 1 else -1
    if at >= 0:
        return at
    if a.sname_free:
        a.bits |= 2
    return room(&a.sname, SNAME_LEN, SNAME_OFFSET, n) if a.bits & 2 else -1


def build(Packet request not None, int op, *, bytes ciaddr=b"\0\0\0\0", bytes yiaddr=b"\0\0\0\0",
          bytes siaddr=b"\0\0\0\0", int flags=-1, bytes sname=b"", bytes file=b"",
          list options=None, list dropped=None):
    """A reply to `request`: xid, secs, htype, hlen, chaddr, giaddr echoed; options in the order
    given, split into several instances when longer than 255 bytes (RFC 3396). It is at most
    the request's max_message_size: what does not fit the options field goes into `file` and
    `sname` when they are empty (option 52), else is left out, its code appended to `dropped`."""
    cdef Py_ssize_t size = OPTIONS_OFFSET + 1, n, i, chunk, at
    cdef Py_ssize_t limit = max_message_size(request)
    cdef bint fits
    cdef int c
    cdef bytes value
    cdef char *buf
    cdef Areas a
    options = options or []
    for code, value in options:  # the length first: one buffer, filled in place
        n = len(value)
        size += 2 + n + 2 * ((n - 1) // 255) if n else 2
    # all in the options field when it holds them, END and dnsmasq's spare byte: the last
    # option's test, and so every earlier one's. Else each instance is placed on its own.
    fits = size < limit
    out = bytearray(limit if not fits else size if size > MIN_REPLY_LEN else MIN_REPLY_LEN)  # zero-filled
    buf = out
    buf[0] = <char>op
    buf[1] = <char>request.htype
    buf[2] = <char>request.hlen
    buf[3] = <char>request.hops  # relays count hops; dnsmasq echoes them
    put_be(buf + 4, request.xid, 4)
    put_be(buf + 8, request.secs, 2)  # dnsmasq answers in the request's buffer: secs echoed
    put_be(buf + 10, <uint32_t>(request.flags if flags < 0 else flags), 2)
    put_field(buf, 12, 4, ciaddr)
    put_field(buf, 16, 4, yiaddr)
    put_field(buf, 20, 4, siaddr)
    put_field(buf, 24, 4, request.giaddr)
    put_field(buf, CHADDR_OFFSET, CHADDR_LEN, request.chaddr)
    put_field(buf, SNAME_OFFSET, SNAME_LEN - 1, sname)  # always NUL-terminated
    put_field(buf, FILE_OFFSET, FILE_LEN - 1, file)
    memcpy(buf + BOOTP_HEADER_LEN, <const char *>MAGIC_COOKIE, 4)
    a = Areas(main=OPTIONS_OFFSET, limit=limit, file=0, sname=0, overload=0, bits=0,
              file_free=not file, sname_free=not sname)
    for code, value in options:
        c = code
        if not 0 < c < OPT_END:
            raise ValueError(f"option code {c} out of range")
        n = len(value)
        i = 0
        while True:  # an empty value is one instance too
            chunk = n - i if n - i < 255 else 255
            if fits:
                at = a.main
                a.main += 2 + chunk
            else:
                at = place(&a, chunk)
            if at >= 0:
                buf[at] = <char>c
                buf[at + 1] = <char>chunk
                memcpy(buf + at + 2, (<const char *>value) + i, chunk)
            elif dropped is not None:
                dropped.append(c)
            i += chunk
            if i >= n:
                break
    buf[a.main] = <char>OPT_END
    if a.overload:
        buf[a.overload] = <char>OPT_OVERLOAD
        buf[a.overload + 1] = 1
        buf[a.overload + 2] = <char>a.bits
        if a.bits & 1:
            buf[FILE_OFFSET + a.file] = <char>OPT_END
        if a.bits & 2:
            buf[SNAME_OFFSET + a.sname] = <char>OPT_END
    if not fits:  # up to END, zero-padded to 300 bytes
        del out[a.main + 1 if a.main + 1 > MIN_REPLY_LEN else MIN_REPLY_LEN:]
    return bytes(out)


cdef class Receiver:
    """The datagrams waiting on one socket bound with IP_PKTINFO (udp.listening_socket), read
    by one recvmmsg: a storm's requests arrive in bursts, and an empty socket costs neither
    a second system call nor an exception. Buffers are allocated once."""

    cdef int fd
    cdef unsigned int slots
    cdef size_t size
    cdef char *data
    cdef char *control
    cdef size_t control_size
    cdef mmsghdr *msgs
    cdef iovec *iov
    cdef sockaddr_in *sources

    def __cinit__(self, int fd, unsigned int slots=64, size_t size=2048):
        if slots == 0 or size == 0:
            raise ValueError("a Receiver needs at least one slot of at least one byte")
        self.fd = fd
        self.slots = slots
        self.size = size
        self.control_size = CMSG_SPACE(sizeof(in_pktinfo))
        self.data = <char *>PyMem_Malloc(slots * size)
        self.control = <char *>PyMem_Malloc(slots * self.control_size)
        self.msgs = <mmsghdr *>PyMem_Malloc(slots * sizeof(mmsghdr))
        self.iov = <iovec *>PyMem_Malloc(slots * sizeof(iovec))
        self.sources = <sockaddr_in *>PyMem_Malloc(slots * sizeof(sockaddr_in))
        if not (self.data and self.control and self.msgs and self.iov and self.sources):
            raise MemoryError()
        memset(self.msgs, 0, slots * sizeof(mmsghdr))
        cdef unsigned int i
        for i in range(slots):
            self.iov[i].iov_base = self.data + i * size
            self.iov[i].iov_len = size
            self.msgs[i].msg_hdr.msg_iov = &self.iov[i]
            self.msgs[i].msg_hdr.msg_iovlen = 1
            self.msgs[i].msg_hdr.msg_name = &self.sources[i]
            self.msgs[i].msg_hdr.msg_control = self.control + i * self.control_size

    def __dealloc__(self):
        PyMem_Free(self.data)
        PyMem_Free(self.control)
        PyMem_Free(self.msgs)
        PyMem_Free(self.iov)
        PyMem_Free(self.sources)

    def receive(self):
        """[(data, (host, port), ifindex, local address as 4 bytes)] of the datagrams waiting,
        at most `slots`; [] when none waits. A longer datagram arrives cut to `size` bytes;
        without IP_PKTINFO, ifindex is 0 and local 0.0.0.0. OSError on a socket error."""
        cdef unsigned int i
        cdef int n
        cdef msghdr *h
        cdef cmsghdr *c
        cdef in_pktinfo *info
        cdef const uint8_t *a
        cdef char host[16]
        cdef int host_len, ifindex
        cdef uint32_t local
        for i in range(self.slots):  # the kernel writes back the lengths and flags it used
            h = &self.msgs[i].msg_hdr
            h.msg_namelen = sizeof(sockaddr_in)
            h.msg_controllen = self.control_size
            h.msg_flags = 0
        n = recvmmsg(self.fd, self.msgs, self.slots, MSG_DONTWAIT, NULL)
        if n < 0:
            if errno == EAGAIN or errno == EINTR:  # EWOULDBLOCK is EAGAIN on Linux
                return []
            PyErr_SetFromErrno(OSError)
        out = []
        for i in range(<unsigned int>n):
            h = &self.msgs[i].msg_hdr
            ifindex, local = 0, 0
            c = CMSG_FIRSTHDR(h)
            while c != NULL:
                if c.cmsg_level == IPPROTO_IP and c.cmsg_type == IP_PKTINFO:
                    info = <in_pktinfo *>CMSG_DATA(c)
                    ifindex, local = info.ipi_ifindex, info.ipi_spec_dst.s_addr
                    break
                c = CMSG_NXTHDR(h, c)
            a = <const uint8_t *>&self.sources[i].sin_addr.s_addr
            host_len = snprintf(host, sizeof(host), "%u.%u.%u.%u", a[0], a[1], a[2], a[3])
            out.append((PyBytes_FromStringAndSize(self.data + i * self.size, self.msgs[i].msg_len),
                        (PyUnicode_DecodeASCII(host, host_len, NULL), ntohs(self.sources[i].sin_port)),
                        ifindex, PyBytes_FromStringAndSize(<const char *>&local, 4)))
        return out
