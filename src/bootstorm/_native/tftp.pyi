"""TFTP codec and transfer engine (Cython). RFC 1350, 2347, 2348, 2349, 7440."""
from typing import Callable

OUTCOMES: tuple[str, ...]

def parse_request(data: bytes) -> tuple[int, str, str, dict[str, str]] | None:
    """(opcode, filename, mode, options) of an RRQ/WRQ; None for a non-request.
    Raises TftpError with the code to answer for a malformed request."""

def negotiate(options: dict[str, str], size: int, *, netascii: bool = ..., blksize_max: int = ...,
              window_bytes_max: int = ..., allow_blksize: bool = ...
              ) -> tuple[int, int, int, bytes | None]:
    """(blksize, windowsize, timeout_s, oack or None) granted for a request."""

def build_error(code: int, message: str) -> bytes: ...
def build_request(opcode: int, filename: str, mode: str = ..., options: dict | None = ...) -> bytes: ...
def build_ack(block: int) -> bytes: ...
def parse_reply(data: bytes) -> tuple[int, int, bytes | str | dict[str, str]]:
    """(3, block, payload) | (4, block, b"") | (5, code, message) | (6, 0, options)."""

def have_openat2() -> bool: ...
def have_gso() -> bool: ...
def open_beneath(rootfd: int, path: str) -> int:
    """fd of path opened read-only strictly beneath rootfd; OSError(EXDEV) if it escapes."""

class Engine:
    """Transfer table, windows, timer wheel and counters of one process.

    on_done(slot, outcome, error_code, bytes_acked, retransmits, elapsed_ms) runs once per
    finished transfer; outcome is one of OUTCOMES."""

    packets_in: int
    packets_out: int
    malformed: int
    strangers: int
    retransmits: int
    bytes_out: int
    send_errors: int
    send_calls: int
    transfers_ok: int
    transfers_failed: int
    spins: int
    spin_hits: int
    spin_yields: int
    def __init__(self, capacity: int, on_done: Callable[[int, str, int, int, int, int], None], *,
                 fake_clock: bool = ..., gso: bool | None = ...) -> None: ...
    def fileno(self) -> int: ...
    @property
    def active(self) -> int: ...
    @property
    def uses_gso(self) -> bool: ...
    @property
    def can_share(self) -> bool: ...
    def set_clock(self, now_ms: int) -> None: ...
    def share(self, sock: int, *, requests: bool = ...) -> None:
        """Take an unconnected UDP socket that transfers may share (owns it); with requests,
        the RRQs/WRQs arriving on it are kept for take_requests()."""
    def take_requests(self) -> list[tuple[bytes, tuple[str, int], int, bytes]]: ...
    def close(self) -> None:
        """Close the shared sockets (after abort_all)."""
    def start(self, sock: int, fd: int, peer_ip4: bytes, peer_port: int, size: int, mtime_ns: int,
              blksize: int, window: int, rto_ms: int, give_up_ms: int,
              oack: bytes | None = ..., content: bytes | None = ...,
              local_ip4: bytes | None = ...) -> int:
        """Take a transfer on its own socket, or on a shared one; data from `content` (a
        snapshot) when given, else from fd; answering from local_ip4 when given."""
    def begin(self, slot: int) -> None: ...
    def abort(self, slot: int) -> None: ...
    def abort_all(self) -> None: ...
    def acked(self, slot: int) -> int:
        """Blocks the client has acknowledged so far."""
    def replace(self, slot: int) -> None:
        """End a transfer silently: its client started over from the same port."""
    def watch(self, fd: int) -> None:
        """Busy-polling in poll() gives way as soon as fd is readable."""
    def poll(self, spin_us: int = ...) -> None:
        """Drain the ready transfer sockets; with spin_us, busy-poll that long after the last
        datagram while transfers run (bounded, backing off when it finds nothing)."""
    def tick(self) -> None: ...
    def stats(self) -> dict[str, int | bool]: ...
