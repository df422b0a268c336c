"""Configuration as msgspec Structs: frozen, and unknown keys are errors."""
from __future__ import annotations

import msgspec


class TftpConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="kebab"):
    """The TFTP service. Defaults follow dnsmasq where it has one."""

    root: str
    listen: str = "0.0.0.0"
    port: int = 69
    # largest blksize granted; 0 = the MTU of the interface the request came in on,
    # less 32 bytes of IP, UDP and TFTP headers (dnsmasq's rule: 1468 on Ethernet)
    blksize_max: int = 0
    # largest windowsize * blksize granted (RFC 7440 windows are capped in bytes)
    window_bytes_max: int = 256 * 1024
    max_transfers: int = 4096
    # first retransmission timeout when the client asks for none (RFC 2349 `timeout`)
    retransmit_timeout: float = 1.0
    # a transfer with no progress for this long is abandoned and its resources freed
    give_up_timeout: float = 30.0
    no_blocksize: bool = False  # dnsmasq tftp-no-blocksize: refuse blksize
    lowercase: bool = False  # dnsmasq tftp-lowercase: map file names to lower case
    netascii_max_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.port <= 65535, "port must be 0..65535"),
            (self.blksize_max == 0 or 8 <= self.blksize_max <= 65464, "blksize-max must be 0 or 8..65464"),
            (self.window_bytes_max >= 512, "window-bytes-max must be at least 512"),
            (1 <= self.max_transfers <= 1_000_000, "max-transfers must be 1..1000000"),
            (0.01 <= self.retransmit_timeout <= 255, "retransmit-timeout must be 0.01..255 s"),
            (self.give_up_timeout >= self.retransmit_timeout, "give-up-timeout must be >= retransmit-timeout"),
        ]
        for ok, why in checks:
            if not ok:
                raise ValueError(why)
