"""Exceptions of bootstorm. They live in Python and carry the TFTP error code to send."""


class TftpError(Exception):
    """A request that must be refused with TFTP ERROR `code` (RFC 1350 section 5)."""

    def __init__(self, code: int, message: str):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"TFTP error {self.code}: {self.message}"


class ConfigError(Exception):
    """A configuration that cannot be used; the message names where and why."""


class DhcpError(ValueError):
    """A malformed DHCP message: dropped and counted, never answered."""
