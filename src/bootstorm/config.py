"""Configuration as msgspec Structs: frozen, and unknown keys are errors."""
from __future__ import annotations

import socket

import msgspec


class TftpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="kebab"):
    """The TFTP service. Defaults follow dnsmasq where it has one."""

    root: str
    listen: str = "0.0.0.0"
    port: int = 69
    # largest blksize granted; 0 = the MTU of the interface the request came in on,
    # less 32 bytes of IP, UDP and TFTP headers (dnsmasq's rule: 1468 on Ethernet)
    blksize_max: int = 0
    # largest windowsize * blksize granted (RFC 7440 windows are capped in bytes): a window
    # must fit the client's socket receive buffer, 208 KiB by default on Linux, which holds
    # about 90 Ethernet-sized datagrams (each costs its size plus ~600 bytes of overhead)
    window_bytes_max: int = 64 * 1024
    max_transfers: int = 4096
    # after a datagram, keep looking for the next one this long (µs) while transfers run,
    # instead of sleeping: a lock-step round trip on a LAN is shorter than a wake-up; 0 = off
    busy_poll_us: int = 50
    # first retransmission timeout when the client asks for none (RFC 2349 `timeout`)
    retransmit_timeout: float = 1.0
    # a transfer with no progress for this long is abandoned and its resources freed
    give_up_timeout: float = 30.0
    no_blocksize: bool = False  # dnsmasq tftp-no-blocksize: refuse blksize
    lowercase: bool = False  # dnsmasq tftp-lowercase: map file names to lower case
    netascii_max_bytes: int = 64 * 1024 * 1024
    # files up to this size are served from a snapshot in memory (boot loaders, scripts,
    # kernels): no system call per window; larger ones (big initrds, images) from the page
    # cache, read and checked per window. The snapshots of all files in use at once stay
    # within memory_total_max; beyond it new files are served from the page cache.
    memory_file_max: int = 64 * 1024 * 1024
    memory_total_max: int = 512 * 1024 * 1024
    interfaces: list[str] = []  # answer only requests arriving on these (dnsmasq enable-tftp=IF)
    roots: dict[str, str] = {}  # interface -> its own root (dnsmasq tftp-root=DIR,IF)
    unique_root: str | None = None  # "ip" or "mac": serve ROOT/<client>/ when it exists
    secure: bool = False  # only files owned by the server's user (dnsmasq tftp-secure)
    port_range: list[int] | None = None  # [first, last] ports for transfers (tftp-port-range)
    # every transfer from the listening port, as dnsmasq tftp-single-port: through NAT and
    # firewalls that pass only port 69's replies (not RFC 1350's fresh port per transfer)
    single_port: bool = False
    no_fail: bool = False  # start even when a root is missing (dnsmasq tftp-no-fail)

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.port <= 65535, "port must be 0..65535"),
            (self.blksize_max == 0 or 8 <= self.blksize_max <= 65464, "blksize-max must be 0 or 8..65464"),
            (512 <= self.window_bytes_max <= 64 << 20, "window-bytes-max must be 512..67108864"),
            (1 <= self.max_transfers <= 1_000_000, "max-transfers must be 1..1000000"),
            (0 <= self.busy_poll_us <= 1000, "busy-poll-us must be 0..1000"),
            (0.01 <= self.retransmit_timeout <= 255, "retransmit-timeout must be 0.01..255 s"),
            (self.give_up_timeout >= self.retransmit_timeout, "give-up-timeout must be >= retransmit-timeout"),
            (self.unique_root in (None, "ip", "mac"), "unique-root must be \"ip\" or \"mac\""),
            (self.port_range is None or (len(self.port_range) == 2
                                         and 1 <= self.port_range[0] <= self.port_range[1] <= 65535),
             "port-range must be [first, last] within 1..65535"),
        ]
        for ok, why in checks:
            if not ok:
                raise ValueError(why)


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="kebab"):
    pass


class TagRule(_Section):
    """Sets tag `set` on a client that meets every condition given (dnsmasq dhcp-vendorclass,
    dhcp-userclass, dhcp-mac, dhcp-match, tag-if)."""

    set: str
    vendor_class: str | None = None  # substring of option 60
    user_class: str | None = None  # substring of one of the user classes (option 77)
    mac: str | None = None  # aa:bb:cc:*:*:*, '*' matches any byte
    arch: list[int] | None = None  # RFC 4578 client architectures (option 93)
    option: int | None = None  # the client sent this option...
    value: str | None = None  # ...with this value (a number, or text)
    tags: list[str] = []  # tag-if: all these tags set ('!name' = not set)


# the reply's fixed fields, NUL included: file 128 bytes, sname 64 (RFC 2131)
FILE_FIELD_MAX = 127
SNAME_FIELD_MAX = 63
LAYER_SUFFIX_MAX = 6  # ".32767": a service file without a dot is sent as file.LAYER


def _check_fields(file: str | None, server_name: str | None, file_max: int = FILE_FIELD_MAX) -> None:
    """A boot file and server name must fit the reply's file and sname fields."""
    if file and len(file.encode()) > file_max:
        raise ValueError(f"boot file name of {len(file.encode())} bytes: at most {file_max} fit "
                         "in the reply's file field")
    if server_name and len(server_name.encode()) > SNAME_FIELD_MAX:
        raise ValueError(f"server name of {len(server_name.encode())} bytes: at most "
                         f"{SNAME_FIELD_MAX} fit in the reply's sname field")


class PxeService(_Section):
    """A PXE boot menu entry (dnsmasq pxe-service). `file` is the basename: clients get
    `file.LAYER` unless it contains a dot."""

    arch: int | str  # RFC 4578 number, or a dnsmasq CSA name such as "x86PC"
    menu: str
    file: str | None = None
    type: int = 0  # boot server type; 0 = local boot; given to `file` services when 0
    server: str | None = None  # boot server address
    server_name: str | None = None
    tags: list[str] = []


    def __post_init__(self) -> None:
        from bootstorm.policy import CSA_NAMES

        if isinstance(self.arch, str):
            names = {n.lower(): i for i, n in enumerate(CSA_NAMES)}
            if self.arch.lower() not in names:
                raise ValueError(f"unknown architecture name {self.arch!r} (one of {', '.join(CSA_NAMES)})")
            msgspec.structs.force_setattr(self, "arch", names[self.arch.lower()])
        no_dot = bool(self.file) and "." not in self.file
        _check_fields(self.file, self.server_name, FILE_FIELD_MAX - LAYER_SUFFIX_MAX * no_dot)


class PxePrompt(_Section):
    text: str
    timeout: int = 255  # seconds; 255 waits for the user
    tags: list[str] = []

    def __post_init__(self) -> None:
        if not 0 <= self.timeout <= 255:
            raise ValueError(f"prompt timeout {self.timeout}: must be 0..255 seconds (255 waits for a key)")
        # sub-option 10 is the timeout byte and the text: it must fit in option 43 as any other
        if 1 + len(self.text.encode()) > VENDOR_OPTION_MAX:
            raise ValueError(f"prompt text of {len(self.text.encode())} bytes: at most "
                             f"{VENDOR_OPTION_MAX - 1} fit in option 43")


# option 43 holds 255 bytes; a sub-option's code and length take 2 (dnsmasq's limit too)
VENDOR_OPTION_MAX = 253
OPTION_VALUE_MAX = 255  # an option's length byte


def _hex_bytes(digits: str) -> bytes:
    """The bytes of a `hex` field: two hex digits per byte, colons allowed."""
    plain = digits.replace(":", "")
    if len(plain) % 2 or any(c not in "0123456789abcdefABCDEF" for c in plain):
        raise ValueError(f"hex {digits!r}: two hex digits per byte, colons allowed")
    return bytes.fromhex(plain)


class VendorOption(_Section):
    """A sub-option added to option 43 of PXE replies (dnsmasq dhcp-option=vendor:CLASS,CODE,VALUE):
    after the discovery control, prompt, boot servers and menu bootstorm builds, then after the
    prompts, in list order. The value is the bytes of `hex` followed by those of `text`."""

    code: int  # PXE 2.1 sub-option, 1..254 (6 discovery control, 10 prompt, ...)
    hex: str = ""  # bytes as hex digits, colons allowed: "02", "0a:0b:0c"
    text: str = ""  # UTF-8 text
    vendor: str = ""  # sent only to clients whose option 60 contains this ("" = every client)
    tags: list[str] = []

    def __post_init__(self) -> None:
        if not 1 <= self.code <= 254:
            raise ValueError(f"sub-option code {self.code}: must be 1..254 (0 is a pad, 255 the end)")
        if len(self.value) > VENDOR_OPTION_MAX:
            raise ValueError(f"sub-option {self.code}: {len(self.value)} bytes, at most "
                             f"{VENDOR_OPTION_MAX} fit in option 43")

    @property
    def value(self) -> bytes:
        return _hex_bytes(self.hex) + self.text.encode()



class DhcpOption(_Section):
    """A DHCP option added to ProxyDHCP replies to PXE clients, on port 67 and 4011 (dnsmasq
    dhcp-option-pxe): after option 43, the newest entry first, one per code (an entry whose tags
    the client carries beats an untagged one). At most one of `hex`, `text`, `addresses`; none
    sends the option empty. With `encap` or `vi-encap` it is a sub-option instead: every entry
    of one encapsulating option whose tags the client carries goes into it, newest first."""

    code: int  # 1..254
    hex: str = ""  # bytes as hex digits, colons allowed
    text: str = ""  # UTF-8 text, NUL-terminated (if under 255 bytes) for clients that send
    # a NUL-terminated host name (option 12 or 81), as dnsmasq does for Windows clients
    addresses: list[str] = []  # IPv4 addresses; 0.0.0.0 is the address the reply comes from
    encap: int | None = None  # a sub-option of this option (dnsmasq encap:N), e.g. 175 for iPXE
    vi_encap: int | None = None  # a sub-option for this enterprise number in option 125 (RFC 3925)
    tags: list[str] = []

    def __post_init__(self) -> None:
        if not 1 <= self.code <= 254:
            raise ValueError(f"option code {self.code}: must be 1..254 (0 is a pad, 255 the end)")
        if self.encap is not None and self.vi_encap is not None:
            raise ValueError(f"option {self.code}: give encap or vi-encap, not both")
        if self.encap is not None and not 1 <= self.encap <= 254:
            raise ValueError(f"encap {self.encap}: must be 1..254")
        if self.vi_encap is not None and not 0 <= self.vi_encap <= 0xFFFFFFFF:
            raise ValueError(f"vi-encap {self.vi_encap}: an enterprise number is 0..4294967295")
        if sum(map(bool, (self.hex, self.text, self.addresses))) > 1:
            raise ValueError(f"option {self.code}: give one of hex, text and addresses")
        for a in self.addresses:
            try:
                socket.inet_pton(socket.AF_INET, a)
            except OSError:
                raise ValueError(f"option {self.code}: {a!r} is not an IPv4 address") from None
        most = OPTION_VALUE_MAX - (2 if self.encap is not None else 5 if self.vi_encap is not None else 0)
        if len(self.value) > most:  # as dnsmasq: room for a sub-option's header, or 125's
            raise ValueError(f"option {self.code}: {len(self.value)} bytes, at most {most}")

    @property
    def value(self) -> bytes:
        return (_hex_bytes(self.hex) + self.text.encode()
                + b"".join(socket.inet_aton(a) for a in self.addresses))


class BootFile(_Section):
    """Boot file in the reply's `file`/`siaddr`/`sname` (dnsmasq dhcp-boot)."""

    file: str | None = None
    server_name: str | None = None
    server: str | None = None
    tags: list[str] = []

    def __post_init__(self) -> None:
        _check_fields(self.file, self.server_name)


class ReplyDelay(_Section):
    """A reply delay for clients that carry `tags` (dnsmasq dhcp-reply-delay=tag:...)."""

    seconds: float
    tags: list[str]

    def __post_init__(self) -> None:
        if not self.tags:
            raise ValueError("a reply-delays entry needs tags (the delay for every client is reply-delay)")
        if self.seconds < 0:
            raise ValueError(f"reply delay {self.seconds}: must be 0 or more seconds")


class ProxyRange(_Section):
    """A subnet answered in proxy mode (dnsmasq dhcp-range=ADDR,proxy[,MASK])."""

    network: str
    netmask: str | None = None  # default: the netmask of the interface
    tags: list[str] = []  # answer only clients with these tags
    set: str | None = None  # tag given to clients of this range


class DhcpConfig(_Section):
    listen: str = "0.0.0.0"
    interfaces: list[str] = []  # empty: every interface but those excepted
    except_interfaces: list[str] = []
    port: int = 67
    pxe_port: int = 4011
    vendor_classes: list[str] = msgspec.field(default_factory=lambda: ["PXEClient"])  # option 60 prefixes answered (dhcp-pxe-vendor)
    http_boot: bool = True  # answer UEFI HTTP Boot (`HTTPClient`) clients with a URL
    ranges: list[ProxyRange] = []
    services: list[PxeService] = []
    prompts: list[PxePrompt] = []
    boot: list[BootFile] = []
    vendor_options: list[VendorOption] = []  # extra option 43 sub-options (dhcp-option=vendor:)
    options: list[DhcpOption] = []  # extra options in proxy replies (dhcp-option-pxe)
    rules: list[TagRule] = []
    ignore: list[list[str]] = []  # clients carrying all tags of one entry get nothing
    reply_delay: float = 0.0  # seconds before a proxy reply, unless an entry of reply_delays fits
    reply_delays: list[ReplyDelay] = []  # the first whose tags the client carries wins
    hosts: dict[str, str] = {}  # server names -> addresses, for server-name lookups


class Config(_Section):
    """The whole native configuration (TOML): each service on when its section exists."""

    tftp: TftpConfig | None = None
    dhcp: DhcpConfig | None = None


def load(path: str) -> Config:
    """Read a TOML config; ConfigError names the file, the key and the reason."""
    from bootstorm.errors import ConfigError

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        return msgspec.toml.decode(data, type=Config)
    except msgspec.ValidationError as exc:
        text = str(exc)
        reason, _, where = text.rpartition(" - at ")
        if not reason:
            reason, where = text, "$"
        raise ConfigError(f"{path}: {where.strip('`')}: {reason}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
