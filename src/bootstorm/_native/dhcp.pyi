"""DHCP/BOOTP codec with PXE options (Cython). RFC 2131, 2132, 3396, 3004, 4578; PXE 2.1."""

MAGIC_COOKIE: bytes

class Packet:
    op: int
    htype: int
    hlen: int
    hops: int
    secs: int
    flags: int
    xid: int
    ciaddr: bytes
    yiaddr: bytes
    siaddr: bytes
    giaddr: bytes
    chaddr: bytes
    sname: bytes
    file: bytes
    options: dict[int, bytes]
    order: list[int]
    @property
    def message_type(self) -> int: ...
    @property
    def mac(self) -> bytes: ...
    @property
    def vendor_class(self) -> str: ...
    @property
    def arch(self) -> int:
        """RFC 4578 architecture, -1 when absent."""
    @property
    def uuid(self) -> bytes | None: ...
    @property
    def user_classes(self) -> list[str]: ...
    @property
    def max_message_size(self) -> int:
        """Longest DHCP message a reply may be: option 57 less 28, clamped to 548..16384; 548 without."""
    @property
    def pxe_suboptions(self) -> dict[int, bytes]: ...
    @property
    def boot_item(self) -> tuple[int, int] | None:
        """(boot server type, layer) of PXE sub-option 71."""

def parse(data: bytes) -> Packet:
    """Decode a DHCP message; DhcpError when malformed."""

def parse_suboptions(raw: bytes) -> dict[int, bytes]: ...
def build(request: Packet, op: int, *, ciaddr: bytes = ..., yiaddr: bytes = ..., siaddr: bytes = ...,
          flags: int = ..., sname: bytes = ..., file: bytes = ...,
          options: list[tuple[int, bytes]] | None = ..., dropped: list[int] | None = ...) -> bytes:
    """A reply to `request`, padded to 300 bytes (RFC 1542), at most request.max_message_size:
    options that do not fit go into empty `file`/`sname` (option 52), else into `dropped`."""

class Receiver:
    """The datagrams waiting on one socket bound with IP_PKTINFO, read by one recvmmsg."""
    def __init__(self, fd: int, slots: int = 64, size: int = 2048) -> None: ...
    def receive(self) -> list[tuple[bytes, tuple[str, int], int, bytes]]:
        """[(data, (host, port), ifindex, local address)] waiting now; [] when none."""
