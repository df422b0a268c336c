"""Log lines on stderr: plain text or one JSON object per line."""
from __future__ import annotations

import sys
import time

import msgspec

_json = msgspec.json.Encoder()
# held lines leave in writes of at most this many bytes: POSIX keeps a pipe write this small
# in one piece, so lines of several processes sharing stderr (--workers) never interleave
HELD_WRITE_MAX = 4096


class Log:
    def __init__(self, fmt: str = "text", stream=None):
        if fmt not in ("text", "json"):
            raise ValueError(f"unknown log format {fmt!r}")
        self.json = fmt == "json"
        self.stream = stream or sys.stderr
        self.line_buffered = bool(getattr(self.stream, "line_buffering", False))
        self._second = -1
        self._stamp = ""
        self._held: list[str] | None = None  # lines kept inside `with log:`
        self._held_size = 0

    def _timestamp(self) -> str:
        now = int(time.time())
        if now != self._second:  # formatted once a second: a storm logs thousands of lines
            self._second = now
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
        return self._stamp

    def event(self, event: str, message: str = "", **fields) -> None:
        if self.json:
            record = {"time": round(time.time(), 3), "event": event, **fields}
            if message:
                record["message"] = message
            line = _json.encode(record).decode()
        else:
            line = f"{self._timestamp()} {event} {message}" if message else f"{self._timestamp()} {event}"
            for key, value in fields.items():
                line += f" {key}={value}"
        self._emit(line + "\n")

    def text(self, body: str) -> None:
        """A text-format line whose body ("event message key=value ...") the caller formatted
        as event() would: one f-string instead of keyword arguments, for a line per packet.
        Only for text logs (`not self.json`)."""
        self._emit(f"{self._timestamp()} {body}\n")

    def _emit(self, line: str) -> None:
        if self._held is None:
            self._write(line)
            return
        if self._held_size + len(line) > HELD_WRITE_MAX:
            self._write_held()
        self._held.append(line)
        self._held_size += len(line)

    def __enter__(self) -> "Log":
        """`with log:` keeps the lines of the block and writes them when it ends, however: a
        handler that answers a burst of packets makes one write system call for the burst
        instead of one per line (ProxyDHCP: one per reply)."""
        if self._held is None:
            self._held, self._held_size = [], 0
        return self

    def __exit__(self, *exc) -> None:
        if self._held is not None:
            self._write_held()
            self._held = None

    def _write_held(self) -> None:
        if self._held:
            self._write("".join(self._held))
            self._held, self._held_size = [], 0

    def _write(self, text: str) -> None:
        self.stream.write(text)
        if not self.line_buffered:  # sys.stderr flushes each line by itself
            self.stream.flush()


class RateLimited:
    """One kind of line that a flood could repeat: at most `per_second` lines a second, the
    rest counted and summed in one `<event>-suppressed` line when the second is over."""

    def __init__(self, log: Log, event: str, per_second: int):
        self.log = log
        self.event = event
        self.per_second = per_second
        self.window = -1.0  # start of the current one-second window
        self.logged = 0
        self.suppressed = 0

    def __call__(self, message: str, **fields) -> None:
        now = time.monotonic()
        if now - self.window >= 1.0:
            self.flush()
            self.window, self.logged = now, 0
        if self.logged < self.per_second:
            self.logged += 1
            self.log.event(self.event, message, **fields)
        else:
            self.suppressed += 1

    def flush(self) -> None:
        if self.suppressed:
            self.log.event(f"{self.event}-suppressed", "further lines not logged", count=self.suppressed)
            self.suppressed = 0
