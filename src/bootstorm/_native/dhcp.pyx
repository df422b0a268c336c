# DHCP/BOOTP codec with the PXE options (RFC 2131, 2132, 3396, 3004, 4578; PXE 2.1).
#
# ProxyDHCP is control plane: a few packets per booting client. A request is checked
# once at its edge and decoded into a Packet; replies are built from a list of options.

from libc.stdint cimport uint8_t, uint32_t

from bootstorm.errors import DhcpError

cdef enum:
    BOOTP_HEADER_LEN = 236     # RFC 2131 section 2, up to `file`
    OPTIONS_OFFSET = 240       # after the magic cookie
    MIN_REPLY_LEN = 300        # RFC 1542 section 2.1: BOOTP messages are at least 300 octets
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
        value = bytes(data[i + 2:i + 2 + n])
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


def parse(const uint8_t[:] data not None):
    """Decode a DHCP message. Raises DhcpError when it is malformed."""
    cdef Py_ssize_t n = data.shape[0]
    cdef Packet p
    cdef int overload = 0
    if n < OPTIONS_OFFSET:
        raise DhcpError(f"too short for DHCP ({n} bytes)")
    if bytes(data[BOOTP_HEADER_LEN:OPTIONS_OFFSET]) != MAGIC_COOKIE:
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
    p.ciaddr = bytes(data[12:16])
    p.yiaddr = bytes(data[16:20])
    p.siaddr = bytes(data[20:24])
    p.giaddr = bytes(data[24:28])
    p.chaddr = bytes(data[CHADDR_OFFSET:CHADDR_OFFSET + CHADDR_LEN])
    p.sname = bytes(data[SNAME_OFFSET:SNAME_OFFSET + SNAME_LEN])
    p.file = bytes(data[FILE_OFFSET:FILE_OFFSET + FILE_LEN])
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
    p.sname = p.sname.split(b"\x00", 1)[0]
    p.file = p.file.split(b"\x00", 1)[0]
    return p


def parse_suboptions(bytes raw not None):
    """Encapsulated options (option 43, RFC 2132 section 8.4) -> {code: bytes}."""
    cdef dict out = {}
    cdef list order = []
    cdef const uint8_t[:] view = raw
    if raw:
        walk_options(view, 0, len(raw), out, order)
    return out


def encode_suboptions(list items not None):
    """[(code, bytes)] -> encapsulated option data ending with END, as PXE expects."""
    out = bytearray()
    for code, value in items:
        if len(value) > 255:
            raise ValueError(f"sub-option {code} longer than 255 bytes")
        out += bytes((code, len(value))) + value
    out.append(OPT_END)
    return bytes(out)


cdef void put_field(bytearray buf, Py_ssize_t offset, Py_ssize_t width, bytes value) except *:
    if len(value) > width:
        raise ValueError(f"field of {len(value)} bytes does not fit in {width}")
    buf[offset:offset + len(value)] = value


def build(Packet request not None, int op, *, bytes ciaddr=b"\0\0\0\0", bytes yiaddr=b"\0\0\0\0",
          bytes siaddr=b"\0\0\0\0", int flags=-1, bytes sname=b"", bytes file=b"",
          list options=None):
    """A reply to `request`: xid, secs, htype, hlen, chaddr, giaddr echoed; options in the order
    given, split into several instances when longer than 255 bytes (RFC 3396)."""
    buf = bytearray(OPTIONS_OFFSET)
    buf[0] = op
    buf[1] = request.htype
    buf[2] = request.hlen
    buf[3] = request.hops  # relays count hops; dnsmasq echoes them
    buf[4:8] = request.xid.to_bytes(4, "big")
    buf[8:10] = request.secs.to_bytes(2, "big")  # dnsmasq answers in the request's buffer: secs echoed
    f = request.flags if flags < 0 else flags
    buf[10:12] = f.to_bytes(2, "big")
    put_field(buf, 12, 4, ciaddr)
    put_field(buf, 16, 4, yiaddr)
    put_field(buf, 20, 4, siaddr)
    put_field(buf, 24, 4, request.giaddr)
    put_field(buf, CHADDR_OFFSET, CHADDR_LEN, request.chaddr)
    put_field(buf, SNAME_OFFSET, SNAME_LEN - 1, sname)  # always NUL-terminated
    put_field(buf, FILE_OFFSET, FILE_LEN - 1, file)
    buf[BOOTP_HEADER_LEN:OPTIONS_OFFSET] = MAGIC_COOKIE
    for code, value in options or ():
        if not value:
            buf += bytes((code, 0))
        for i in range(0, len(value), 255):
            chunk = value[i:i + 255]
            buf += bytes((code, len(chunk))) + chunk
    buf.append(OPT_END)
    if len(buf) < MIN_REPLY_LEN:
        buf += bytes(MIN_REPLY_LEN - len(buf))
    return bytes(buf)
