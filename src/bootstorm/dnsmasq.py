"""dnsmasq's command line and conf files, PXE/ProxyDHCP/TFTP subset -> Config.

A drop-in: `bootstorm --conf-file=/etc/dnsmasq.d/pxe.conf --keep-in-foreground` (or the program
linked as `dnsmasq`) reads what dnsmasq would read, the way its src/option.c reads it: quotes with
\\ \\" \\t \\n \\e \\b \\r escapes, `#` comments after white space, `name[=value]` lines, `tag:`/`set:`
prefixes, conf-file and conf-dir with its `*.conf` / `.bak` suffix filters. Each option is either
mapped onto the native Config, accepted as a no-op (it changes nothing a PXE client receives from a
proxy-only, DNS-less server: reported by `bootstorm check`), or rejected with a ConfigError naming
file, line, option, the reason and what to do instead. Nothing that changes what clients receive
is dropped silently. Behaviour notes per option: docs/migrating-from-dnsmasq.md.
"""
from __future__ import annotations

import ipaddress
import os
import re
import socket
import sys
from dataclasses import dataclass, field

import msgspec

from bootstorm.config import (OPTION_VALUE_MAX, VENDOR_OPTION_MAX, BootFile, Config, DhcpConfig, DhcpOption,
                              ProxyRange, PxePrompt, PxeService, ReplyDelay, TagRule, TftpConfig,
                              VendorOption)
from bootstorm.errors import ConfigError

DEFAULT_CONF_FILE = "/etc/dnsmasq.conf"  # read when no --conf-file is given, if it exists
DEFAULT_PID_FILE = "/var/run/dnsmasq.pid"  # dnsmasq's RUNFILE: written unless -d or --pid-file=

# dnsmasq 2.90 src/option.c opts[]: name:has_arg[short]; has_arg 0 none, 1 required, 2 optional
_TABLE = (
    "version:0v no-hosts:0h no-poll:0n help:0w no-daemon:0d log-queries:2q user:2u group:2g "
    "resolv-file:2r servers-file:1 mx-host:1m mx-target:1t cache-size:2c port:1p "
    "dhcp-leasefile:2l dhcp-lease:1l dhcp-host:1G dhcp-range:1F dhcp-option:1O dhcp-boot:1M "
    "domain:1s domain-suffix:1s interface:1i listen-address:1a local-service:2 bogus-priv:0b "
    "bogus-nxdomain:1B ignore-address:1 selfmx:0e filterwin2k:0f filter-A:0 filter-AAAA:0 "
    "filter-rr:1 pid-file:2x strict-order:0o server:1S rev-server:1 local:1 address:1A "
    "conf-file:2C conf-script:1 no-resolv:0R expand-hosts:0E localmx:0L local-ttl:1T "
    "no-negcache:0N no-round-robin:0 no-0x20-encode:0 do-0x20-encode:0 cache-rr:1 addn-hosts:1H "
    "hostsdir:1 query-port:1Q except-interface:1I no-dhcp-interface:12 no-dhcpv4-interface:1 "
    "no-dhcpv6-interface:1 domain-needed:0D dhcp-lease-max:1X bind-interfaces:0z read-ethers:0Z "
    "alias:1V dhcp-vendorclass:1U dhcp-userclass:1j dhcp-ignore:1J edns-packet-max:1P "
    "keep-in-foreground:0k dhcp-authoritative:0K srv-host:1W localise-queries:0y txt-record:1Y "
    "caa-record:1 dns-rr:1 enable-dbus:21 enable-ubus:2 bootp-dynamic:23 dhcp-mac:14 no-ping:05 "
    "dhcp-script:16 conf-dir:17 log-facility:18 leasefile-ro:09 script-on-renewal:0 "
    "dns-forward-max:10 clear-on-reload:0 dhcp-ignore-names:2 enable-tftp:2 tftp-secure:0 "
    "tftp-no-fail:0 tftp-unique-root:2 tftp-root:1 tftp-max:1 tftp-mtu:1 tftp-lowercase:0 "
    "tftp-single-port:0 ptr-record:1 naptr-record:1 bridge-interface:1 shared-network:1 "
    "dhcp-option-force:1 dhcp-option-pxe:1 tftp-no-blocksize:0 log-dhcp:0 log-async:2 "
    "dhcp-circuitid:1 dhcp-remoteid:1 dhcp-subscrid:1 dhcp-pxe-vendor:1 interface-name:1 "
    "dhcp-hostsfile:1 dhcp-optsfile:1 dhcp-hostsdir:1 dhcp-optsdir:1 dhcp-no-override:0 "
    "tftp-port-range:1 stop-dns-rebind:0 rebind-domain-ok:1 all-servers:0 dhcp-match:1 "
    "dhcp-name-match:1 dhcp-broadcast:2 neg-ttl:1 max-ttl:1 min-cache-ttl:1 max-cache-ttl:1 "
    "dhcp-alternate-port:2 dhcp-scriptuser:1 min-port:1 max-port:1 dhcp-fqdn:0 cname:1 "
    "pxe-prompt:1 pxe-service:1 test:0 tag-if:1 dhcp-proxy:2 dhcp-generate-names:2 "
    "rebind-localhost-ok:0 add-mac:2 strip-mac:0 add-subnet:2 strip-subnet:0 add-cpe-id:1 "
    "proxy-dnssec:0 dhcp-sequential-ip:0 conntrack:0 dhcp-client-update:0 dhcp-luascript:1 "
    "enable-ra:0 dhcp-duid:1 host-record:1 bind-dynamic:0 auth-zone:1 auth-server:1 auth-ttl:1 "
    "auth-soa:1 auth-sec-servers:1 auth-peer:1 ipset:1 nftset:1 connmark-allowlist-enable:2 "
    "connmark-allowlist:1 synth-domain:1 dnssec:0 trust-anchor:1 dnssec-debug:0 "
    "dnssec-check-unsigned:2 dnssec-no-timecheck:0 dnssec-timestamp:1 dnssec-limits:1 "
    "dhcp-relay:1 dhcp-split-relay:1 ra-param:1 quiet-dhcp:0 quiet-dhcp6:0 quiet-ra:0 "
    "dns-loop-detect:0 script-arp:0 dhcp-ttl:1 dhcp-reply-delay:1 dhcp-rapid-commit:0 "
    "dumpfile:1 dumpmask:1 dhcp-ignore-clid:0 dynamic-host:1 log-debug:0 umbrella:2 quiet-tftp:0 "
    "port-limit:1 fast-dns-retry:2 use-stale-cache:2 no-ident:0 max-tcp-connections:1 "
    "leasequery:2"
)
OPTIONS: dict[str, int] = {}
SHORT: dict[str, str] = {}
for _item in _TABLE.split():
    _name, _, _spec = _item.partition(":")
    OPTIONS[_name] = int(_spec[0])
    if len(_spec) > 1:
        SHORT.setdefault(_spec[1], _name)
_OPTSTRING = "951yZDNLERKzowefnbvhdkqr:m:p:c:l:s:i:t:u:g:a:x:S:C:A:T:H:Q:I:B:F:G:O:M:X:V:U:j:P:J:W:Y:2:4:6:7:8:0:3:"
SHORT_WITH_ARG = {c for c, nxt in zip(_OPTSTRING, _OPTSTRING[1:] + " ") if nxt == ":" and c != ":"}

# Options that change nothing for PXE clients of a proxy-only server without DNS (port=0).
_DNS_ONLY = set("""no-hosts no-poll resolv-file servers-file mx-host mx-target cache-size domain
domain-suffix local-service bogus-priv bogus-nxdomain ignore-address selfmx filterwin2k filter-A
filter-AAAA filter-rr strict-order server rev-server local address no-resolv expand-hosts localmx
local-ttl no-negcache no-round-robin no-0x20-encode do-0x20-encode cache-rr addn-hosts hostsdir
query-port domain-needed alias edns-packet-max srv-host localise-queries txt-record caa-record
dns-rr enable-dbus enable-ubus dns-forward-max clear-on-reload ptr-record naptr-record
interface-name stop-dns-rebind rebind-domain-ok all-servers neg-ttl max-ttl min-cache-ttl
max-cache-ttl min-port max-port cname rebind-localhost-ok add-mac strip-mac add-subnet
strip-subnet add-cpe-id proxy-dnssec conntrack host-record auth-zone auth-server auth-ttl auth-soa
auth-sec-servers auth-peer ipset nftset connmark-allowlist-enable connmark-allowlist synth-domain
dnssec trust-anchor dnssec-debug dnssec-check-unsigned dnssec-no-timecheck dnssec-timestamp
dnssec-limits dns-loop-detect dynamic-host umbrella port-limit fast-dns-retry use-stale-cache
no-ident max-tcp-connections log-queries""".split())
_LEASES_ONLY = set("""dhcp-leasefile dhcp-lease dhcp-lease-max dhcp-authoritative no-ping
dhcp-script dhcp-luascript dhcp-scriptuser script-on-renewal script-arp leasefile-ro
dhcp-ignore-names dhcp-generate-names dhcp-broadcast bootp-dynamic dhcp-sequential-ip dhcp-fqdn
dhcp-client-update dhcp-ttl dhcp-rapid-commit dhcp-ignore-clid dhcp-duid enable-ra ra-param
quiet-ra quiet-dhcp6 no-dhcpv6-interface dhcp-no-override leasequery dhcp-proxy shared-network
dumpfile dumpmask""".split())
_LOGGING = set("log-dhcp log-async log-debug quiet-dhcp quiet-tftp".split())
# Rejected, with what to do instead.
_REJECT = {
    "conf-script": "bootstorm runs no programs to read its configuration: save the script's output "
                   "to a file and name it with conf-file",
    "dhcp-hostsdir": "bootstorm watches no directory: list the hosts in a dhcp-hostsfile and send "
                     "SIGHUP after changes, which re-reads it as in dnsmasq",
    "dhcp-optsdir": "bootstorm watches no directory: use a dhcp-optsfile and send SIGHUP after "
                    "changes, which re-reads it as in dnsmasq",
    "dhcp-relay": "bootstorm is no DHCP relay: keep dnsmasq (or another relay) for relaying",
    "dhcp-split-relay": "bootstorm is no DHCP relay: keep dnsmasq (or another relay) for relaying",
    "bridge-interface": "bootstorm cannot alias one interface's DHCP to another's: name the bridge "
                        "itself with interface=",
    "dhcp-alternate-port": "bootstorm's DHCP client port is fixed at 68; the native config has "
                           "[dhcp] port for the server side only",
    "dhcp-circuitid": "bootstorm cannot set tags from relay agent (option 82) sub-options",
    "dhcp-remoteid": "bootstorm cannot set tags from relay agent (option 82) sub-options",
    "dhcp-subscrid": "bootstorm cannot set tags from relay agent (option 82) sub-options",
    "dhcp-name-match": "bootstorm cannot set tags from client host names: match by MAC (dhcp-mac), "
                       "vendor or user class instead",
    "read-ethers": "bootstorm reads no /etc/ethers: write the hosts as dhcp-host=MAC,... lines",
}

# dnsmasq's quoting hides these characters from the parser (src/option.c meta[])
_META = "\0" "123456 \b\t\n78\r90abcdefABCDE\033F:,."
_HIDE = {c: chr(0xE000 + i) for i, c in enumerate(_META)}
_UNHIDE = {chr(0xE000 + i): c for i, c in enumerate(_META)}
_SPACES = " \t\n\v\f\r"

CSA_NAMES = ("x86PC", "PC98", "IA64_EFI", "Alpha", "Arc_x86", "Intel_Lean_Client", "IA32_EFI",
             "x86-64_EFI", "Xscale_EFI", "BC_EFI", "ARM32_EFI", "ARM64_EFI")
# dnsmasq src/dhcp-common.c opttab (IPv4): names usable as option:NAME
OPTION_NAMES = {
    "netmask": 1, "time-offset": 2, "router": 3, "dns-server": 6, "log-server": 7, "lpr-server": 9,
    "hostname": 12, "boot-file-size": 13, "domain-name": 15, "swap-server": 16, "root-path": 17,
    "extension-path": 18, "ip-forward-enable": 19, "non-local-source-routing": 20,
    "policy-filter": 21, "max-datagram-reassembly": 22, "default-ttl": 23, "mtu": 26,
    "all-subnets-local": 27, "broadcast": 28, "router-discovery": 31, "router-solicitation": 32,
    "static-route": 33, "trailer-encapsulation": 34, "arp-timeout": 35, "ethernet-encap": 36,
    "tcp-ttl": 37, "tcp-keepalive": 38, "nis-domain": 40, "nis-server": 41, "ntp-server": 42,
    "vendor-encap": 43, "netbios-ns": 44, "netbios-dd": 45, "netbios-nodetype": 46,
    "netbios-scope": 47, "x-windows-fs": 48, "x-windows-dm": 49, "requested-address": 50,
    "lease-time": 51, "option-overload": 52, "message-type": 53, "server-identifier": 54,
    "parameter-request": 55, "message": 56, "max-message-size": 57, "t1": 58, "t2": 59,
    "vendor-class": 60, "client-id": 61, "nis+-domain": 64, "nis+-server": 65, "tftp-server": 66,
    "bootfile-name": 67, "mobile-ip-home": 68, "smtp-server": 69, "pop3-server": 70,
    "nntp-server": 71, "irc-server": 74, "user-class": 77, "rapid-commit": 80, "fqdn": 81,
    "agent-info": 82, "last-transaction": 91, "associated-ip": 92, "client-arch": 93,
    "client-interface-id": 94, "client-machine-id": 97, "posix-timezone": 100,
    "tzdb-timezone": 101, "ipv6-only": 108, "captive-portal": 114, "subnet-select": 118,
    "domain-search": 119, "sip-server": 120, "classless-static-route": 121, "vendor-id-encap": 125,
    "tftp-server-address": 150, "server-ip-address": 255,
}
_HEX_VALUE = re.compile(r"^([0-9a-fA-F*]{1,2}[:-])+[0-9a-fA-F*]{1,2}$")


def _unhide(s: str | None) -> str | None:
    return None if s is None else "".join(_UNHIDE.get(c, c) for c in s)


def _split(s: str) -> list[str]:
    """dnsmasq split(): fields at (unquoted) commas, spaces around them removed."""
    return [f.strip(" ") for f in s.split(",")]


_LONG_MAX = (1 << 63) - 1  # strtol saturates here (dnsmasq's atoi on a 64-bit libc)
_WIDTH_SUFFIX = {"b": 1, "s": 2, "i": 4}


# dnsmasq's types of the DHCP options it knows (src/dhcp-common.c opttab, the width bits
# a number's byte count); a value of any other option is read by its look alone
OT_ADDR_LIST, OT_RFC1035_NAME, OT_INTERNAL, OT_NAME, OT_CSTRING, OT_TIME = 0x8000, 0x4000, 0x2000, 0x1000, 0x800, 0x200
_A, _N = OT_ADDR_LIST, OT_NAME
OPTION_TYPES = {
    1: _A, 2: 4, 3: _A, 6: _A, 7: _A, 9: _A, 12: OT_INTERNAL | _N, 13: 2, 15: _N, 16: _A, 17: _N,
    18: _N, 19: 1, 20: 1, 21: _A, 22: 2, 23: 1, 26: 2, 27: 1, 28: OT_INTERNAL | _A, 31: 1, 32: _A,
    33: _A, 34: 1, 35: 4, 36: 1, 37: 1, 38: 4, 40: _N, 41: _A, 42: _A, 43: OT_INTERNAL, 44: _A,
    45: _A, 46: 1, 48: _A, 49: _A, 50: OT_INTERNAL | _A, 51: OT_INTERNAL | OT_TIME, 52: OT_INTERNAL,
    53: OT_INTERNAL, 54: OT_INTERNAL | _A, 55: OT_INTERNAL, 56: OT_INTERNAL, 57: OT_INTERNAL,
    58: OT_TIME, 59: OT_TIME, 61: OT_INTERNAL, 64: _N, 65: _A, 66: _N, 67: _N, 68: _A, 69: _A,
    70: _A, 71: _A, 74: _A, 81: OT_INTERNAL, 82: OT_INTERNAL, 91: 4 | OT_TIME, 92: _A, 93: 2, 100: _N,
    101: _N, 108: 4, 114: _N, 118: OT_INTERNAL, 119: OT_RFC1035_NAME, 150: _A, 255: _A,
}
OPT_SIP_SERVER = 120
_TIME_UNITS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def _atoi(s: str) -> int:
    """C atoi on a 64-bit libc: leading digits (a sign allowed), saturated, else 0."""
    m = re.match(r"[ \t]*[-+]?[0-9]+", s)
    return max(-_LONG_MAX - 1, min(_LONG_MAX, int(m.group()))) if m else 0


def _text_or_hex(data: bytes, is_text: bool) -> dict[str, str]:
    """An option value as the native config keeps it: `text` when it came from text and is
    UTF-8, else `hex`."""
    if is_text:
        try:
            return {"text": data.decode()}
        except UnicodeDecodeError:
            pass
    return {"hex": data.hex(":")}


def option_value(value: str | None, code: int | None = None) -> tuple[bytes, str]:
    """The bytes of a dhcp-option value, read as dnsmasq's option.c parse_dhcp_opt reads it, and
    their kind: "text", "addresses" (IPv4 addresses alone, whose 0.0.0.0 dnsmasq sends as its own
    address) or "bytes". `code` is a DHCP option's (its type in OPTION_TYPES counts), None for a
    sub-option (vendor:, whose type dnsmasq does not know).

    Untyped, the whole value decides: digits only (a `-` allowed) is a number, sent in 1, 2 or 4
    bytes as it needs, or as a last letter b, s, i says (`2b` = 02); colon-separated hex (`1:2a:ff`)
    is those bytes (a group of several digits gives a byte per pair, the count is that of the
    groups); digits and dots are IPv4 addresses, comma-separated, `/N` sending a prefix length and
    the significant bytes; anything else (also anything quoted) is the text. A typed option takes
    addresses only, or is text whatever it looks like, or a number in its own width, or a time
    (`1h`, `2d`: seconds in 4 bytes). ValueError for what dnsmasq refuses: a malformed address,
    a value over 255 bytes. Quoted characters come hidden (scan_line) and count as text."""
    if value is None:
        return b"", "bytes"
    otype = OPTION_TYPES.get(code, 0) if code is not None else 0
    is_addr = is_hex = is_dec = True
    found_dig = False
    digs = 1
    dots = 0
    width = 0
    s = value
    for i, c in enumerate(value):
        if c == ",":
            is_dec = is_hex = False
        elif c == ":":
            digs += 1
            is_dec = is_addr = False
        elif c == "/":
            is_dec = is_hex = False
            if i == 0:  # a leading / is a path
                is_addr = False
        elif c == ".":
            is_dec = is_hex = False
            dots += 1
        elif c == "-":
            is_hex = is_addr = False
        elif c == " ":
            is_dec = is_hex = False
        elif "0" <= c <= "9":
            found_dig = True
        else:
            is_addr = False
            if is_dec and i == len(value) - 1 and c in _WIDTH_SUFFIX:
                width, s = _WIDTH_SUFFIX[c], value[:-1]  # b s i: the number's width
            else:
                is_dec = False
            if c not in "abcdefABCDEF":
                is_hex = False
    if not found_dig:
        is_dec = is_addr = False
    if otype & OT_ADDR_LIST:
        if not is_addr or dots == 0:
            raise ValueError(f"bad IP address {value!r}: option {code} takes IPv4 addresses")
        is_dec = is_hex = False
    elif otype & (OT_NAME | OT_RFC1035_NAME | OT_CSTRING):
        is_addr = is_dec = is_hex = False
    if found_dig and otype & OT_TIME and value:
        factor = _TIME_UNITS.get(value[-1].lower(), 1)
        seconds = _atoi(value[:-1] if value[-1].lower() in _TIME_UNITS else value)
        return ((seconds * factor) & 0xFFFFFFFF).to_bytes(4, "big"), "bytes"
    if is_hex and digs > 1:
        out = bytearray()
        for group in s.split(":"):  # each pair of digits a byte; as many bytes as groups
            out += bytes(int(group[j:j + 2], 16) for j in range(0, len(group), 2))
        return bytes(out[:digs]).ljust(digs, b"\0"), "bytes"
    if is_dec:
        number = _atoi(s) & 0xFFFFFFFF  # stored in a C int
        if not width:
            width = otype or (4 if number & 0xFFFF0000 else 2 if number & 0xFF00 else 1)
        if width > OPTION_VALUE_MAX:  # an internal option's flag taken for a width, as in dnsmasq
            raise ValueError("dhcp-option too long")
        return (number & ((1 << (8 * width)) - 1)).to_bytes(width, "big"), "bytes"
    if is_addr:
        out = bytearray(b"\1" if code == OPT_SIP_SERVER else b"")  # RFC 3361's encoding byte
        plain = code != OPT_SIP_SERVER
        for item in _split(s):
            addr, slash, size = item.partition("/")
            try:
                packed = socket.inet_pton(socket.AF_INET, addr.rstrip(" "))
            except OSError:
                raise ValueError(f"bad IPv4 address {addr!r}") from None
            if not slash:
                out += packed
            else:
                plain = False  # a prefix: no address to rewrite
                bits = _atoi(size)
                out.append(bits & 0xFF)
                out += packed[:sum(1 for limit in (0, 8, 16, 24) if bits > limit)]
        if len(out) > OPTION_VALUE_MAX:
            raise ValueError("dhcp-option too long")
        return bytes(out), "addresses" if plain else "bytes"
    if code == OPT_SIP_SERVER or otype & OT_RFC1035_NAME:
        raise ValueError(f"option {code} as names: bootstorm does not encode them (RFC 3397 / 3361); "
                         "give the encoded bytes in hex")
    data = _unhide(s).encode("utf-8", "surrogateescape")  # s: a lone b/s/i is dropped
    if len(data) > OPTION_VALUE_MAX:
        raise ValueError("dhcp-option too long")
    return data, "text"


def scan_line(raw: str) -> str:
    """One conf-file line as dnsmasq's read_file() sees it: quotes removed (their contents
    hidden from the parser), escapes done, white space folded, comments cut, ends trimmed.
    ValueError('missing "') for an unterminated quote."""
    out, white, i, n = [], True, 0, len(raw)
    while i < n:
        c = raw[i]
        if c == '"':
            i += 1
            while i < n and raw[i] != '"':
                c = raw[i]
                if c == "\\" and i + 1 < n and raw[i + 1] in '"tnebr\\':
                    i += 1
                    c = {"t": "\t", "n": "\n", "b": "\b", "r": "\r", "e": "\033"}.get(raw[i], raw[i])
                out.append(_HIDE.get(c, c))
                i += 1
            if i >= n:
                raise ValueError('missing "')
            i += 1
            if i >= n:
                break
            c = raw[i]  # the character after a closing quote is never an opening one
        if c in _SPACES:
            out.append(" ")
            white = True
        else:
            if white and c == "#":
                break
            out.append(c)
            white = False
        i += 1
    return "".join(out).strip(" ")


def split_option(line: str) -> tuple[str, str | None]:
    """`name = value` -> (name, value); value None without '='."""
    p = line.find("=")
    if p < 0:
        return line, None
    return line[:p].rstrip(" ="), line[p + 1:].lstrip(" ")


@dataclass
class Settings:
    """What dnsmasq's command line and files say about the process, not the service."""

    foreground: bool = False  # -k or -d
    debug: bool = False  # -d
    pid_file: str | None = DEFAULT_PID_FILE  # None: --pid-file= (none)
    user: str | None = None
    group: str | None = None
    log_file: str | None = None  # log-facility=/path or '-'
    test: bool = False  # --test: check the configuration and exit


@dataclass
class Result:
    config: Config
    notes: list[str] = field(default_factory=list)  # accepted, changes nothing for PXE clients
    warnings: list[str] = field(default_factory=list)  # differences from dnsmasq worth knowing
    settings: Settings = field(default_factory=Settings)
    files: list[str] = field(default_factory=list)  # files read, in order
    reloadable: list[str] = field(default_factory=list)  # dhcp-hostsfile, dhcp-optsfile: SIGHUP
    # every option as read, in order, but the lines of the files above and the options that
    # read conf files: replayed on SIGHUP, so conf files are not read again (nor need be readable)
    script: list[tuple[str, str | None, str, bool]] = field(default_factory=list)
    tftp_no_fail: bool = False


@dataclass
class _Host:
    where: str
    macs: list
    sets: list
    filters: list
    ignore: bool
    by_id: bool


class _Reader:
    def __init__(self, default_conf: str | None = DEFAULT_CONF_FILE):
        self.default_conf = default_conf
        self.seen: set = set()
        self.files: list[str] = []
        self.reloadable: list[str] = []
        self.script: list[tuple[str, str | None, str, bool]] = []
        self.in_reloadable = False  # reading a dhcp-hostsfile or dhcp-optsfile
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.settings = Settings()
        self.ranges: list[ProxyRange] = []
        self.services: list[PxeService] = []
        self.prompts: list[PxePrompt] = []
        # pxe-prompt and dhcp-option=vendor: lines as read, each with the dhcp-optsfile it came
        # from (0: a conf file; n: the n-th dhcp-optsfile named), for dnsmasq's order in option 43
        self.suboptions: list[tuple[int, PxePrompt | VendorOption]] = []
        self.pxe_options: list[DhcpOption] = []  # dhcp-option-pxe, in the order read
        self.bank = 0
        self.banks = 0
        self.boots: list[BootFile] = []
        self.match_rules: list[TagRule] = []
        self.tag_ifs: list[TagRule] = []
        self.hosts: list[_Host] = []
        self.ignore: list[list[str]] = []
        self.vendors: list[str] = []
        self.reply_delay: tuple | None = None
        self.reply_delays: list[ReplyDelay] = []  # dhcp-reply-delay=tag:..., newest first
        self.interfaces: list[str] = []
        self.tftp_interfaces: list[str] = []
        self.tftp_roots: dict[str, str] = {}
        self.except_interfaces: list[str] = []
        self.listen: list[tuple[str, str]] = []
        self.port: tuple | None = None
        self.tftp_where: str | None = None
        self.tftp_root: str | None = None
        self.tftp: bool = False
        self.tftp_opts: dict = {}
        self.tftp_no_fail = False
        self.no_hosts = False
        self.addn_hosts: list[str] = []
        self.host_records: dict[str, str] = {}
        self.referenced: dict[str, str] = {}  # tag -> where first used as a condition
        self.names_used: list[tuple[str, str]] = []  # (server name, where)
        self.dhcp_seen = False

    # -- reading

    def error(self, where: str, name: str, reason: str) -> ConfigError:
        return ConfigError(f"{where}: {name}: {reason}")

    def read_file(self, path: str, where: str, nofile_ok: bool = False, hard: str | None = None) -> None:
        try:
            st = os.stat(path)
            key = (st.st_dev, st.st_ino)
            if hard is None:
                if key in self.seen:
                    return  # dnsmasq reads a file once, however often it is named
                self.seen.add(key)
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            if nofile_ok:
                return
            raise ConfigError(f"{where}: cannot read {path}: No such file or directory") from None
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
        self.files.append(path)
        for lineno, raw in enumerate(lines, 1):
            here = f"{path}:{lineno}"
            try:
                line = scan_line(raw)
            except ValueError as exc:
                raise ConfigError(f"{here}: {exc}") from None
            if not line:
                continue
            if hard is not None:  # dhcp-hostsfile, dhcp-optsfile: each line is the option's value
                self.option(hard, line, here)
                continue
            name, arg = split_option(line)
            self.option(name, arg, here, check_arity=True)

    def conf_dir(self, arg: str, where: str) -> None:
        fields = _split(arg)
        directory = _unhide(fields[0])
        if not directory:
            return
        match, ignore = [], []
        for f in fields[1:]:
            f = _unhide(f)
            if not f:
                continue
            if f[0] == "*":
                if f[1:]:
                    match.append(f[1:])
            else:
                ignore.append(f)
        try:
            names = os.listdir(directory)
        except OSError as exc:
            raise ConfigError(f"{where}: conf-dir: cannot access directory {directory}: {exc.strerror}") from None
        paths = []
        for name in names:
            if not name or name.endswith("~") or name.startswith(".") or (name[0] == "#" and name[-1] == "#"):
                continue
            if match and not any(len(name) > len(s) and name.endswith(s) for s in match):
                continue
            if any(len(name) > len(s) and name.endswith(s) for s in ignore):
                continue
            path = f"{directory}/{name}"
            try:
                st = os.stat(path)
            except OSError as exc:
                raise ConfigError(f"{where}: conf-dir: cannot access {path}: {exc.strerror}") from None
            if os.path.isfile(path) and st:
                paths.append(path)
        for path in sorted(paths, key=os.fsencode):
            self.read_file(path, where)

    # -- one option

    def option(self, name: str, arg: str | None, where: str, check_arity: bool = False) -> None:
        if not self.in_reloadable and name not in ("conf-file", "conf-dir"):
            self.script.append((name, arg, where, check_arity))
        if name not in OPTIONS:
            raise self.error(where, _unhide(name), "bad option (not a dnsmasq option)")
        if check_arity:
            if OPTIONS[name] == 0 and arg is not None:
                raise self.error(where, name, "extraneous parameter")
            if OPTIONS[name] == 1 and arg is None:
                raise self.error(where, name, "missing parameter")
        handler = getattr(self, "opt_" + name.replace("-", "_"), None)
        if handler is not None:
            handler(arg, where, name)
        elif name in _REJECT:
            raise self.error(where, name, _REJECT[name])
        elif name in _DNS_ONLY:
            self.notes.append(f"{where}: {name}: DNS only; bootstorm serves no DNS (no effect with port=0)")
        elif name in _LEASES_ONLY:
            self.notes.append(f"{where}: {name}: concerns address leases; a proxy-only server gives none")
        elif name in _LOGGING:
            self.notes.append(f"{where}: {name}: logging detail; bootstorm logs every DHCP answer and "
                              "transfer (text or JSON on stderr)")
        else:
            raise self.error(where, name, "not supported by bootstorm")

    # files and process

    def opt_conf_file(self, arg, where, name):
        path = _unhide(arg)
        if path:
            self.read_file(path, where)

    def opt_conf_dir(self, arg, where, name):
        self.conf_dir(arg, where)

    def opt_dhcp_hostsfile(self, arg, where, name):
        self.read_reloadable(_unhide(arg), where, "dhcp-host")

    def opt_dhcp_optsfile(self, arg, where, name):
        self.banks += 1
        self.bank = self.banks
        try:
            self.read_reloadable(_unhide(arg), where, "dhcp-option")
        finally:
            self.bank = 0

    def read_reloadable(self, path: str, where: str, hard: str) -> None:
        """A file of one option's values, which SIGHUP reads again (dnsmasq's hosts and
        options files): its lines are not part of the replayed script."""
        self.in_reloadable = True
        try:
            self.read_file(path, where, hard=hard)
        finally:
            self.in_reloadable = False
        self.reloadable.append(path)

    def opt_keep_in_foreground(self, arg, where, name):
        self.settings.foreground = True

    def opt_no_daemon(self, arg, where, name):
        self.settings.foreground = True
        self.settings.debug = True

    def opt_test(self, arg, where, name):
        self.settings.test = True

    def opt_version(self, arg, where, name):
        raise self.error(where, name, "only on the command line")

    opt_help = opt_version

    def opt_pid_file(self, arg, where, name):
        self.settings.pid_file = _unhide(arg) or None

    def opt_user(self, arg, where, name):
        self.settings.user = _unhide(arg) or None

    def opt_group(self, arg, where, name):
        self.settings.group = _unhide(arg) or None

    def opt_log_facility(self, arg, where, name):
        value = _unhide(arg)
        if "/" in value or value == "-":
            self.settings.log_file = value
        else:
            self.notes.append(f"{where}: log-facility: bootstorm logs to stderr (the journal under "
                              f"systemd), not to syslog facility {value}")

    def opt_port(self, arg, where, name):
        value = _unhide(arg)
        if not value.isdigit() or int(value) > 65535:
            raise self.error(where, name, f"bad port {value!r}")
        if int(value) != 0:
            raise self.error(where, name, f"port={value} serves DNS; bootstorm serves no DNS: set "
                             "port=0 and keep a DNS server (dnsmasq with no DHCP, unbound...) for DNS")
        self.port = (0, where)

    # interfaces

    def opt_interface(self, arg, where, name):
        self.interfaces += [_unhide(f) for f in _split(arg) if f]

    def opt_except_interface(self, arg, where, name):
        self.except_interfaces += [_unhide(f) for f in _split(arg) if f]

    def opt_no_dhcp_interface(self, arg, where, name):
        self.except_interfaces += [_unhide(f) for f in _split(arg) if f]
        self.warnings.append(f"{where}: {name}: mapped to the DHCP except-interfaces; TFTP still "
                             "answers there, as in dnsmasq")

    opt_no_dhcpv4_interface = opt_no_dhcp_interface

    def opt_listen_address(self, arg, where, name):
        for f in _split(arg):
            f = _unhide(f)
            try:
                ip = ipaddress.ip_address(f)
            except ValueError:
                raise self.error(where, name, f"bad address {f!r}") from None
            if ip.version == 6:
                self.notes.append(f"{where}: {name}: IPv6 address {f}: bootstorm serves IPv4 only")
            else:
                self.listen.append((f, where))

    def opt_bind_interfaces(self, arg, where, name):
        self.notes.append(f"{where}: {name}: bootstorm binds the wildcard address and filters DHCP by "
                          "interface; the TFTP listen address comes from listen-address")

    opt_bind_dynamic = opt_bind_interfaces

    # DHCP

    def _tags(self, fields: list[str], where: str) -> tuple[list[str], list[str]]:
        """Leading tag:/net: prefixes (dnsmasq dhcp_tags) -> (tags, rest)."""
        tags = []
        while fields and (fields[0].startswith("tag:") or fields[0].startswith("net:")):
            tag = _unhide(fields.pop(0)[4:])
            tags.append(tag)
            self.referenced.setdefault(tag.lstrip("!"), where)
        return tags, fields

    def opt_dhcp_range(self, arg, where, name):
        self.dhcp_seen = True
        filters, set_tag, rest = [], None, arg
        while True:
            comma = rest.find(",")
            head = rest if comma < 0 else rest[:comma]
            if comma >= 0 and not re.fullmatch(r"[ .:0-9a-fA-F]*", head):
                head = head.strip(" ")
                rest = rest[comma + 1:].lstrip(" ")
                if head.startswith("tag:") or head.startswith("net:"):
                    if head[4:]:
                        filters.append(_unhide(head[4:]))
                        self.referenced.setdefault(_unhide(head[4:]).lstrip("!"), where)
                elif set_tag is not None:
                    raise self.error(where, name, "only one tag allowed")
                else:
                    set_tag = _unhide(head[4:] if head.startswith("set:") else head)
                continue
            break
        a = [_unhide(f) for f in _split(rest)]
        if len(a) < 2:
            raise self.error(where, name, "bad dhcp-range")
        try:
            start = ipaddress.ip_address(a[0])
        except ValueError:
            raise self.error(where, name, f"bad dhcp-range: {a[0]!r} is no address") from None
        if start.version == 6:
            raise self.error(where, name, "DHCPv6 and router advertisements: bootstorm serves "
                             "IPv4 PXE only; keep dnsmasq for IPv6")
        if a[1] != "proxy":
            what = "static" if a[1] == "static" else "an address range"
            raise self.error(where, name, f"{what} hands out addresses; bootstorm is a proxy only "
                             f"and gives none: write dhcp-range={a[0]},proxy and keep the site's DHCP "
                             "server for addresses")
        netmask = None
        if len(a) >= 3 and "." in a[2]:
            try:
                ipaddress.IPv4Address(a[2])
                netmask = a[2]
            except ValueError:
                pass
        self.ranges.append(ProxyRange(network=a[0], netmask=netmask, tags=filters, set=set_tag))

    def opt_pxe_service(self, arg, where, name):
        tags, f = self._tags(_split(arg), where)
        if len(f) < 2:
            raise self.error(where, name, "expected [tag:...,]CSA,\"menu text\"[,basename|type][,server]")
        csa = _unhide(f[0])
        names = {n.lower(): i for i, n in enumerate(CSA_NAMES)}
        if csa.lower() in names:
            arch = names[csa.lower()]
        elif csa.isdigit():
            arch = int(csa)
        else:
            raise self.error(where, name, f"unknown CSA {csa!r} (one of {', '.join(CSA_NAMES)}, or a number)")
        menu = _unhide(f[1])
        file, btype, server, server_name = None, 0, None, None
        if len(f) >= 3:
            third = f[2]
            if third.isdigit():  # dnsmasq atoi_check: a boot server type, no file
                btype = int(third)
                if btype > 65535:
                    raise self.error(where, name, f"boot server type {btype} is over 65535")
            else:
                file = _unhide(third)
            if len(f) >= 4:
                server, server_name = self._server(",".join(f[3:]), where)
        try:
            self.services.append(PxeService(arch=arch, menu=menu, file=file or None, type=btype,
                                            server=server, server_name=server_name, tags=tags))
        except ValueError as exc:
            raise self.error(where, name, str(exc)) from None

    def _server(self, field: str, where: str):
        """A boot server given as an address or a name: (address, None) or (None, name)."""
        s = _unhide(field)
        try:
            socket.inet_pton(socket.AF_INET, s)
            return s, None
        except OSError:
            self.names_used.append((s, where))
            return None, s

    def opt_pxe_prompt(self, arg, where, name):
        tags, f = self._tags(_split(arg), where)
        if not f:
            raise self.error(where, name, "missing prompt text")
        timeout = 255
        if len(f) > 1 and f[1].isdigit():
            timeout = int(f[1]) & 0xFF  # dnsmasq stores it in one byte
        try:
            prompt = PxePrompt(text=_unhide(f[0]), timeout=timeout, tags=tags)
        except ValueError as exc:  # dnsmasq would send a broken option 43
            raise self.error(where, name, str(exc)) from None
        self.prompts.append(prompt)
        self.suboptions.append((0, prompt))

    def opt_dhcp_boot(self, arg, where, name):
        tags, f = self._tags(_split(arg), where)
        if not f:
            raise self.error(where, name, "missing file")
        file = _unhide(f[0]) or None
        server = server_name = None
        if len(f) >= 2 and f[1]:
            self.notes.append(f"{where}: dhcp-boot: server name {_unhide(f[1])!r} (second field): dnsmasq "
                              "puts it in no proxy reply; ignored as dnsmasq does")
        if len(f) >= 3:
            server, server_name = self._server(",".join(f[2:]), where)
        try:
            self.boots.append(BootFile(file=file, server=server, server_name=server_name, tags=tags))
        except ValueError as exc:
            raise self.error(where, name, str(exc)) from None

    def opt_dhcp_reply_delay(self, arg, where, name):
        tags, f = self._tags(_split(arg), where)
        if len(f) != 1 or not f[0].isdigit():
            raise self.error(where, name, "expected [tag:...,]SECONDS")
        if tags:  # dnsmasq prepends each line: the newest that fits wins
            self.reply_delays.insert(0, ReplyDelay(seconds=int(f[0]), tags=tags))
        else:
            self.reply_delay = (int(f[0]), where)

    def opt_dhcp_pxe_vendor(self, arg, where, name):
        for f in _split(arg):
            f = _unhide(f)
            if f:
                self.vendors.insert(0, f)  # dnsmasq prepends: the last named is tried first

    def opt_dhcp_ignore(self, arg, where, name):
        tags = []
        for f in _split(arg):
            t = _unhide(f[4:] if f.startswith(("tag:", "net:")) else f)
            tags.append(t)
            self.referenced.setdefault(t.lstrip("!"), where)
        self.ignore.append(tags)

    def _set_tag(self, field_: str) -> str:
        return _unhide(field_[4:] if field_.startswith("set:") else field_)

    def opt_dhcp_vendorclass(self, arg, where, name):
        f = _split(arg)
        if len(f) < 2 or len(f) > 3 or (len(f) == 3 and not f[1].startswith("enterprise:")):
            raise self.error(where, name, "expected set:TAG,[enterprise:N,]STRING")
        if len(f) == 3:
            self.notes.append(f"{where}: {name}: enterprise number concerns DHCPv6 only")
        self.match_rules.append(TagRule(set=self._set_tag(f[0]), vendor_class=_unhide(f[-1])))

    def opt_dhcp_userclass(self, arg, where, name):
        f = _split(arg)
        if len(f) != 2:
            raise self.error(where, name, "expected set:TAG,STRING")
        self.match_rules.append(TagRule(set=self._set_tag(f[0]), user_class=_unhide(f[1])))

    def opt_dhcp_mac(self, arg, where, name):
        f = _split(arg)
        if len(f) != 2:
            raise self.error(where, name, "expected set:TAG,MAC (with * wildcards)")
        mac = self._mac(_unhide(f[1]), where, name)
        self.match_rules.append(TagRule(set=self._set_tag(f[0]), mac=mac))

    def _mac(self, text: str, where: str, name: str) -> str:
        m = re.fullmatch(r"(?:(\d+)-)?((?:[0-9a-fA-F*]{1,2}:){5}[0-9a-fA-F*]{1,2})", text)
        if not m:
            raise self.error(where, name, f"bad MAC address {text!r} (aa:bb:cc:dd:ee:ff, * for any byte)")
        if m.group(1) not in (None, "1"):
            raise self.error(where, name, f"hardware type {m.group(1)}: bootstorm matches Ethernet (type 1) only")
        return ":".join(p.lower().zfill(2) if p != "*" else "*" for p in m.group(2).split(":"))

    def opt_dhcp_match(self, arg, where, name):
        fields = _split(arg)
        tag, code, rest = None, None, []
        for i, f in enumerate(fields):
            if f.isdigit():
                code = int(f)
            elif f.startswith("option:"):
                oname = _unhide(f[7:]).lower()
                if oname not in OPTION_NAMES:
                    raise self.error(where, name, f"unknown option name {oname!r}")
                code = OPTION_NAMES[oname]
            elif f.startswith("option6:"):
                raise self.error(where, name, "DHCPv6 option: bootstorm serves IPv4 PXE only")
            elif f.startswith("vi-encap:"):
                raise self.error(where, name, "vendor-identifying (option 125) matches: bootstorm "
                                 "cannot match them (missing in TagRule); match option 60 with "
                                 "dhcp-vendorclass instead")
            elif f.startswith(("vendor:", "encap:")):
                raise self.error(where, name, f"inappropriate {f.split(':')[0]}:")
            else:
                t = f[4:] if f.startswith(("tag:", "net:")) else (f[4:] if f.startswith("set:") else f)
                tag = _unhide(t)  # dnsmasq keeps the last one named
                continue
            rest = fields[i + 1:]
            break
        if code is None or tag is None:
            raise self.error(where, name, "expected set:TAG,NUMBER|option:NAME[,VALUE]")
        value = None
        if rest:
            if len(rest) > 1:
                raise self.error(where, name, "a list of values: bootstorm matches one value "
                                 "(number or text) per dhcp-match")
            raw = rest[0]
            if _HEX_VALUE.match(raw):
                raise self.error(where, name, f"hex value {raw!r}: bootstorm matches a number or a "
                                 "text (missing: byte-pattern values in TagRule)")
            value = _unhide(raw)
        self.match_rules.append(TagRule(set=tag, option=code, value=value))

    def opt_tag_if(self, arg, where, name):
        sets, tags = [], []
        for f in _split(arg):
            if len(f) < 5:
                raise self.error(where, name, "bad tag-if")
            if f.startswith("set:"):
                sets.append(_unhide(f[4:]))
            elif f.startswith("tag:"):
                tags.append(_unhide(f[4:]))
                self.referenced.setdefault(_unhide(f[4:]).lstrip("!"), where)
            else:
                raise self.error(where, name, "bad tag-if")
        if not sets:
            raise self.error(where, name, "bad tag-if (no set:)")
        for s in sets:
            self.tag_ifs.append(TagRule(set=s, tags=list(tags)))

    def opt_dhcp_host(self, arg, where, name):
        h = _Host(where, [], [], [], False, False)
        for f in _split(arg):
            if ":" in f:
                if f[:3].lower() == "id:":
                    h.by_id = True
                elif f.startswith(("net:", "set:")):
                    h.sets.append(_unhide(f[4:]))
                elif f.startswith("tag:"):
                    h.filters.append(_unhide(f[4:]))
                    self.referenced.setdefault(_unhide(f[4:]).lstrip("!"), where)
                elif f.startswith("["):
                    pass  # IPv6 address
                else:
                    h.macs.append(self._mac(_unhide(f), where, name))
            elif f == "ignore":
                h.ignore = True
        if (h.sets or h.ignore) and not h.macs:
            raise self.error(where, name, "a host named by client id or host name: bootstorm matches "
                             "hosts by MAC only (missing: client-id/host-name in TagRule); give the MAC")
        if not (h.sets or h.ignore):
            self.notes.append(f"{where}: dhcp-host: address, name and lease concern address leases; "
                              "only its MAC (the 'known' tag) matters to a proxy")
        self.hosts.append(h)

    def _dhcp_option(self, arg, where, name):
        """dnsmasq parse_dhcp_opt's prefix fields: tags, vendor:, encap:, then the option number.
        -> (code, vendor, encap, value, tags); value is the rest of the line as written (None
        when absent), commas and all: its meaning depends on all of it."""
        vendor = encap = None
        code = None
        tags = []
        rest = arg
        while rest is not None:
            comma = rest.find(",")
            f, rest = (rest, None) if comma < 0 else (rest[:comma].rstrip(" "), rest[comma + 1:].lstrip(" "))
            if f.isdigit():
                code = int(f)
            elif f.startswith("option:"):
                code = OPTION_NAMES.get(_unhide(f[7:]).lower())
                if code is None:
                    raise self.error(where, name, f"unknown option name {_unhide(f[7:])!r}")
                if OPTION_TYPES.get(code, 0) & OT_INTERNAL:
                    raise self.error(where, name, f"bad dhcp-option: dnsmasq sets option {code} "
                                     f"({_unhide(f[7:])}) itself and refuses it by name")
                if vendor is not None:
                    raise self.error(where, name, f"vendor:{vendor} with option:{_unhide(f[7:])}: give "
                                     "the PXE sub-option's number (a name means a DHCP option, not a "
                                     "sub-option of option 43)")
                if encap is not None and name == "dhcp-option-pxe":  # dnsmasq would type its value
                    raise self.error(where, name, f"{encap} with option:{_unhide(f[7:])}: give the "
                                     "sub-option's number (a name means a DHCP option)")
            elif f.startswith("option6:"):
                if vendor is not None:
                    raise self.error(where, name, "unsupported encapsulation for IPv6 option")
                self.notes.append(f"{where}: {name}: DHCPv6 option; bootstorm serves IPv4 PXE only")
                return None
            elif f.startswith("vendor:"):
                if encap is not None:
                    raise self.error(where, name, "inappropriate vendor:")
                vendor = _unhide(f[7:])
                continue
            elif f.startswith(("encap:", "vi-encap:")):
                if vendor is not None:
                    raise self.error(where, name, f"inappropriate {f.split(':')[0]}: after vendor:")
                encap = f
                continue
            else:
                t = _unhide(f[4:] if f.startswith(("tag:", "net:", "set:")) else f)
                tags.append(t)
                self.referenced.setdefault(t.lstrip("!"), where)
                continue
            return code, vendor, encap, rest, tags
        raise self.error(where, name, "bad dhcp-option")

    def opt_dhcp_option(self, arg, where, name):
        parsed = self._dhcp_option(arg, where, name)
        if parsed is None:
            return
        code, vendor, encap, value, tags = parsed
        pxe = name == "dhcp-option-pxe"
        if pxe and vendor is not None:
            raise self.error(where, name, "No vendor-encap options allowed in dhcp-option-pxe")
        if vendor is not None:
            self._vendor_option(tags, code, vendor, value, where, name)
        elif pxe:
            self._pxe_option(tags, code, value, encap, where, name)
        else:
            what = f"{encap.split(':')[0]}: option" if encap else f"option {code}"
            self.notes.append(f"{where}: {name}: {what}: dnsmasq sends {name} only with an address "
                              "(dhcp-option-pxe goes into proxy replies); no effect in proxy mode")

    opt_dhcp_option_force = opt_dhcp_option
    opt_dhcp_option_pxe = opt_dhcp_option

    def _pxe_option(self, tags, code, value, encap, where, name):
        """dhcp-option-pxe=[tag:..,][encap:N,|vi-encap:N,]CODE,VALUE: option CODE in proxy
        replies (dnsmasq 2.91), or sub-option CODE of option N or of enterprise N in 125."""
        if not 1 <= code <= 254:
            raise self.error(where, name, f"option {code} does not exist (1..254; 0 is a pad and 255 "
                             "the end of the options)")
        outer = {}
        if encap:
            kind, _, number = encap.partition(":")
            outer = {"encap" if kind == "encap" else "vi_encap": _atoi(_unhide(number))}
        try:
            data, kind = option_value(value, None if encap else code)  # a sub-option is untyped
            if len(data) > OPTION_VALUE_MAX - (5 if "vi_encap" in outer else 2 if outer else 0):
                raise ValueError("dhcp-option too long")
        except ValueError as exc:
            raise self.error(where, name, str(exc)) from None
        try:
            if kind == "addresses" and not outer:  # in a sub-option 0.0.0.0 stays as it is
                opt = DhcpOption(code=code, addresses=[socket.inet_ntoa(data[i:i + 4])
                                                       for i in range(0, len(data), 4)], tags=tags)
            else:
                opt = DhcpOption(code=code, tags=tags, **outer, **_text_or_hex(data, kind == "text"))
        except ValueError as exc:  # an encap number out of range
            raise self.error(where, name, str(exc)) from None
        self.pxe_options.append(opt)

    def _vendor_option(self, tags, code, vendor, value, where, name):
        """dhcp-option=vendor:CLASS,CODE,VALUE: sub-option CODE of option 43, sent to PXE clients
        whose option 60 contains CLASS (rfc2131.c match_vendor_opts), after dnsmasq's own
        sub-options (pxe_opts). dhcp-option-force is the same here: proxy replies ignore 'force'."""
        if not 1 <= code <= 254:
            raise self.error(where, name, f"vendor:{vendor},{code}: PXE sub-option {code} does not exist "
                             "(1..254; 0 is a pad and 255 the end of option 43, dnsmasq would send "
                             "it and break the client's parse)")
        try:
            data, kind = option_value(value)
        except ValueError as exc:
            raise self.error(where, name, str(exc)) from None
        if len(data) > VENDOR_OPTION_MAX:
            raise self.error(where, name, f"dhcp-option too long: {len(data)} bytes, a sub-option of "
                             f"option 43 holds at most {VENDOR_OPTION_MAX}")
        opt = VendorOption(code=code, vendor=vendor, tags=tags, **_text_or_hex(data, kind == "text"))
        self.suboptions.append((self.bank, opt))
        vendors = self.vendors or ["PXEClient"]
        samples = [f"{v}:Arch:{a:05d}:UNDI:003016" for v in vendors for a in range(12)]
        if vendor and not any(vendor in s for s in samples):
            self.notes.append(f"{where}: {name}: vendor:{vendor} is in no usual PXE client's vendor class "
                              f"({samples[0]}, ...): sent only to a PXE client whose option 60 contains it")

    # TFTP

    def opt_enable_tftp(self, arg, where, name):
        self.tftp = True
        self.tftp_where = where
        if arg:
            self.tftp_interfaces += [_unhide(f) for f in _split(arg) if f]

    def opt_tftp_root(self, arg, where, name):
        f = _split(arg)
        if len(f) > 1:
            self.tftp_roots[_unhide(f[1])] = _unhide(f[0])
        else:
            self.tftp_root = _unhide(f[0])

    def opt_tftp_unique_root(self, arg, where, name):
        kind = _unhide(arg or "ip").lower()
        if kind not in ("ip", "mac"):
            raise self.error(where, name, f"{kind!r}: one of ip, mac")
        self.tftp_opts["unique_root"] = (kind, where)

    def opt_tftp_secure(self, arg, where, name):
        self.tftp_opts["secure"] = (True, where)

    def opt_tftp_port_range(self, arg, where, name):
        f = [_unhide(x) for x in _split(arg or "")]
        if len(f) != 2 or not all(x.isdigit() for x in f):
            raise self.error(where, name, "expected FIRST,LAST port numbers")
        self.tftp_opts["port_range"] = ([int(f[0]), int(f[1])], where)

    def opt_tftp_max(self, arg, where, name):
        self.tftp_opts["max_transfers"] = (self._int(arg, where, name), where)

    def opt_tftp_mtu(self, arg, where, name):
        mtu = self._int(arg, where, name)
        self.tftp_opts["blksize_max"] = (mtu - 32 if mtu else 0, where)

    def opt_tftp_lowercase(self, arg, where, name):
        self.tftp_opts["lowercase"] = (True, where)

    def opt_tftp_no_blocksize(self, arg, where, name):
        self.tftp_opts["no_blocksize"] = (True, where)

    def opt_tftp_single_port(self, arg, where, name):
        self.tftp_opts["single_port"] = (True, where)

    def opt_tftp_no_fail(self, arg, where, name):
        self.tftp_no_fail = True

    def _int(self, arg, where, name) -> int:
        v = _unhide(arg or "")
        if not v.isdigit():
            raise self.error(where, name, f"not a number: {v!r}")
        return int(v)

    # -- the result

    def finish(self) -> Result:
        r = Result(config=Config(), notes=self.notes, warnings=self.warnings, settings=self.settings,
                   files=self.files, reloadable=self.reloadable, script=self.script,
                   tftp_no_fail=self.tftp_no_fail)
        if self.port is None:
            self.warnings.append("no port=0: dnsmasq would also serve DNS on port 53; bootstorm serves "
                                 "no DNS (add port=0 to say so)")
        tftp = None
        if self.tftp:
            root = self.tftp_root
            if root is None:
                root = "/"
                self.warnings.append(f"{self.tftp_where}: enable-tftp without tftp-root: dnsmasq serves "
                                     "from its working directory, /; so does bootstorm (set tftp-root)")
            kw = {k: v for k, (v, _) in self.tftp_opts.items()}
            kw["no_fail"] = self.tftp_no_fail
            if self.tftp_roots:
                kw["roots"] = dict(self.tftp_roots)
            # dnsmasq's TFTP answers on enable-tftp's interfaces, else on interface= ones
            ifaces = self.tftp_interfaces or self.interfaces
            if ifaces:
                kw["interfaces"] = list(dict.fromkeys(ifaces))
            listen = self._tftp_listen()
            if listen:
                kw["listen"] = listen
            try:
                tftp = TftpConfig(root=root, **kw)
            except (ValueError, msgspec.ValidationError) as exc:
                wheres = ", ".join(w for _, w in self.tftp_opts.values())
                raise ConfigError(f"{wheres}: {exc}") from None
            if "max_transfers" not in kw:
                self.warnings.append(f"no tftp-max: dnsmasq allows 50 concurrent transfers, bootstorm "
                                     f"{tftp.max_transfers}")
        elif self.tftp_root or self.tftp_opts:
            self.notes.append("tftp-* options without enable-tftp: TFTP is off, as in dnsmasq")
        dhcp = None
        if self.ranges:
            dhcp = self._dhcp()
        else:
            if self.services or self.prompts or self.boots:
                self.warnings.append("pxe-service/pxe-prompt/dhcp-boot without a dhcp-range=...,proxy: "
                                     "DHCP is off, as in dnsmasq")
        r.config = Config(tftp=tftp, dhcp=dhcp)
        return r

    def _tftp_listen(self) -> str | None:
        addrs = [a for a, _ in self.listen if a != "127.0.0.1"] or [a for a, _ in self.listen]
        if not addrs:
            return None
        if len(addrs) > 1:
            wheres = ", ".join(w for a, w in self.listen)
            raise ConfigError(f"{wheres}: listen-address: several addresses ({', '.join(addrs)}): "
                              "bootstorm's TFTP listens on one address (missing: a list in [tftp] "
                              "listen); keep one")
        if len(addrs) < len(self.listen):
            self.notes.append("listen-address=127.0.0.1: loopback dropped; TFTP listens on "
                              f"{addrs[0]} only")
        return addrs[0]

    def _dhcp(self) -> DhcpConfig:
        rules = list(self.match_rules)
        ignore = [list(t) for t in self.ignore]
        known = "known" in self.referenced
        if "known-othernet" in self.referenced:
            raise ConfigError(f"{self.referenced['known-othernet']}: tag known-othernet: bootstorm has "
                              "no per-network hosts (missing); use tag:known")
        for h in self.hosts:
            for mac in h.macs:
                if known:
                    rules.append(TagRule(set="known", mac=mac, tags=list(h.filters)))
                for s in h.sets:
                    rules.append(TagRule(set=s, mac=mac, tags=list(h.filters)))
                if h.ignore:
                    rules.append(TagRule(set="dhcp-host-ignore", mac=mac, tags=list(h.filters)))
            if h.ignore and ["dhcp-host-ignore"] not in ignore:
                ignore.append(["dhcp-host-ignore"])
            if h.ignore:
                self.warnings.append(f"{h.where}: dhcp-host ...,ignore: bootstorm ignores the host; "
                                     "dnsmasq 2.90 still sends it proxy PXE replies")
            if h.by_id and known:
                self.warnings.append(f"{h.where}: dhcp-host by client id: not 'known' to bootstorm "
                                     "(it matches hosts by MAC only)")
        rules += self.tag_ifs
        set_tags = {r.set for r in rules} | {r.set for r in self.ranges if r.set}
        ifnames = set(self.interfaces)
        try:
            ifnames |= set(os.listdir("/sys/class/net"))
        except OSError:
            pass
        for tag, where in self.referenced.items():
            if tag in set_tags:
                continue
            if tag in ifnames:
                raise ConfigError(f"{where}: tag:{tag}: dnsmasq tags each client with its interface's "
                                  "name; bootstorm does not (missing: TagRule interface); use a "
                                  "dhcp-range with set:TAG for that subnet instead")
            self.warnings.append(f"{where}: tag {tag} is never set by this configuration")
        vendors = list(self.vendors) or ["PXEClient"]
        http_boot = "HTTPClient" in vendors
        if http_boot:
            self.warnings.append("dhcp-pxe-vendor HTTPClient: bootstorm answers UEFI HTTP Boot with "
                                 "the dhcp-boot URL (no menu), where dnsmasq would send a PXE reply")
        if self.listen and not self.interfaces:
            self.warnings.append("listen-address: bootstorm's ProxyDHCP answers on every interface "
                                 "(dnsmasq: only those holding a listen-address; missing: addresses "
                                 "in [dhcp]); add interface=NAME to restrict it")
        hosts = self._hosts() if self.port is None else {}
        delay = float(self.reply_delay[0]) if self.reply_delay else 0.0
        try:
            return DhcpConfig(
                interfaces=list(dict.fromkeys(self.interfaces)),
                except_interfaces=list(dict.fromkeys(self.except_interfaces)),
                vendor_classes=vendors, http_boot=http_boot, ranges=self.ranges,
                services=self.services, boot=self.boots[::-1],  # dnsmasq prepends: the last wins
                **self._suboptions(), options=self.pxe_options,
                rules=rules, ignore=ignore, reply_delay=delay, reply_delays=self.reply_delays, hosts=hosts)
        except (ValueError, msgspec.ValidationError) as exc:
            raise ConfigError(f"dhcp: {exc}") from None

    def _suboptions(self) -> dict:
        """prompts and vendor-options in the order dnsmasq sends them in option 43.

        dnsmasq keeps pxe-prompt and dhcp-option lines in one list, each line put in front
        (option.c), and reads the dhcp-optsfile files after every conf file, the last named
        first (reread_dhcp): so the list runs from the first file named back to the conf's first
        line, and every line that applies to a client goes into option 43 in that order
        (rfc2131.c do_encap_opts). The native config sends its prompts first, then the
        vendor-options: where a prompt must come after a vendor option, prompts go into
        vendor-options as sub-option 10."""
        read = [o for b, o in self.suboptions if b == 0]
        for bank in range(self.banks, 0, -1):
            read += [o for b, o in self.suboptions if b == bank]
        order = read[::-1]
        prompts = [o for o in order if isinstance(o, PxePrompt)]
        vendor_options = [o for o in order if isinstance(o, VendorOption)]
        if order[:len(prompts)] == prompts:
            return {"prompts": prompts, "vendor_options": vendor_options}
        if not self.services:  # the prompts must stay: they alone start PXE answers (as in dnsmasq)
            self.warnings.append("pxe-prompt before a dhcp-option=vendor: line and no pxe-service: "
                                 "bootstorm sends the prompt before that sub-option (dnsmasq after it)")
            return {"prompts": prompts, "vendor_options": vendor_options}
        return {"prompts": [], "vendor_options": [
            o if isinstance(o, VendorOption) else
            VendorOption(code=10, hex=f"{o.timeout & 0xFF:02x}", text=o.text, tags=list(o.tags))
            for o in order]}

    def _hosts(self) -> dict[str, str]:
        """With DNS on (no port=0) dnsmasq resolves boot server names from /etc/hosts,
        addn-hosts and host-record; with port=0 they resolve to 0.0.0.0."""
        if not self.names_used:
            return {}
        table: dict[str, str] = {}
        files = ([] if self.no_hosts else ["/etc/hosts"]) + self.addn_hosts
        for path in files:
            try:
                with open(path) as f:
                    for line in f:
                        parts = line.split("#")[0].split()
                        if len(parts) >= 2 and "." in parts[0] and ":" not in parts[0]:
                            for n in parts[1:]:
                                table.setdefault(n, parts[0])
            except OSError:
                continue
        table.update(self.host_records)
        out = {}
        for n, where in self.names_used:
            if n in table:
                out[n] = table[n]
            else:
                self.warnings.append(f"{where}: server name {n} is in no hosts file: its address is "
                                     "sent as 0.0.0.0, as in dnsmasq")
        return out

    def opt_no_hosts(self, arg, where, name):
        self.no_hosts = True
        self.notes.append(f"{where}: {name}: DNS only (with DNS on it also keeps boot server names "
                          "out of /etc/hosts)")

    def opt_addn_hosts(self, arg, where, name):
        self.addn_hosts.append(_unhide(arg))
        self.notes.append(f"{where}: {name}: DNS only (with DNS on, boot server names are looked up there)")

    def opt_host_record(self, arg, where, name):
        f = [_unhide(x) for x in _split(arg)]
        self.notes.append(f"{where}: {name}: DNS only (with DNS on, boot server names are looked up there)")
        addr = next((x for x in f if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", x)), None)
        if addr:
            for n in f:
                if n != addr and not n.isdigit() and ":" not in n:
                    self.host_records[n] = addr


def _getopt(argv: list[str]) -> list[tuple[str, str | None]]:
    """getopt_long over dnsmasq's option table (unique prefixes of long names accepted)."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":
            junk = [x for x in argv[i:] if x.strip()]
            if junk:
                raise ConfigError(f"command line: junk found in command line: {junk[0]!r}")
            break
        if a.startswith("--"):
            name, eq, val = a[2:].partition("=")
            if name in OPTIONS:
                full = name
            else:
                cands = [n for n in OPTIONS if n.startswith(name)]
                if len(cands) != 1:
                    what = "ambiguous" if cands else "unrecognized"
                    raise ConfigError(f"command line: {what} option '--{name}' (try --help)")
                full = cands[0]
            has = OPTIONS[full]
            if has == 0 and eq:
                raise ConfigError(f"command line: option '--{full}' doesn't allow an argument")
            if has == 1 and not eq:
                if i >= len(argv):
                    raise ConfigError(f"command line: option '--{full}' requires an argument")
                val, eq = argv[i], "="
                i += 1
            out.append((full, val if eq else None))
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                c = a[j]
                if c not in SHORT:
                    raise ConfigError(f"command line: invalid option -- '{c}' (try --help)")
                if c in SHORT_WITH_ARG:
                    val = a[j + 1:]
                    if not val:
                        if i >= len(argv):
                            raise ConfigError(f"command line: option requires an argument -- '{c}'")
                        val = argv[i]
                        i += 1
                    out.append((SHORT[c], val))
                    break
                out.append((SHORT[c], None))
                j += 1
        elif a.strip():
            raise ConfigError(f"command line: junk found in command line: {a!r}")
    return out


def parse_args(argv: list[str], default_conf: str | None = DEFAULT_CONF_FILE) -> Result:
    """dnsmasq's read_opts(): the command line, then the first --conf-file (or the default one)."""
    r = _Reader(default_conf)
    conffile = None
    for name, arg in _getopt(argv):
        if name == "conf-file":
            if conffile is None:
                conffile = arg or None
                if conffile is None:
                    continue
            elif arg:
                r.read_file(arg, "command line")
            continue
        if name in ("help", "version"):
            raise _Exit(name)
        r.option(name, arg, "command line")
    if conffile:
        r.read_file(conffile, "command line")
    elif default_conf:
        r.read_file(default_conf, "default", nofile_ok=True)
    return r.finish()


def replay(script: list[tuple[str, str | None, str, bool]]) -> Result:
    """The options of an earlier reading (Result.script) again, the files they name as
    reloadable read afresh."""
    r = _Reader(None)
    for name, arg, where, check_arity in script:
        r.option(name, arg, where, check_arity)
    return r.finish()


class _Exit(Exception):
    pass


def load(path: str) -> Result:
    """One dnsmasq conf file (and what it includes) -> Result."""
    r = _Reader(None)
    r.read_file(path, "command line")
    return r.finish()


# -- TOML out (msgspec's TOML encoder needs tomli_w, which bootstorm does not depend on)

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        import json
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _toml_key(k: str) -> str:
    import json
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def to_toml(config: Config) -> str:
    data = msgspec.to_builtins(config)
    lines: list[str] = []

    def table(path: str, d: dict) -> None:
        scalars = {k: v for k, v in d.items() if not (isinstance(v, list) and v and isinstance(v[0], dict))}
        arrays = {k: v for k, v in d.items() if k not in scalars}
        for k, v in scalars.items():
            if v is not None:
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, items in arrays.items():
            for item in items:
                lines.append("")
                lines.append(f"[[{path}.{k}]]")
                for ik, iv in item.items():
                    if iv is not None and not (k == "vendor-options" and iv == "" and ik != "vendor"):
                        lines.append(f"{_toml_key(ik)} = {_toml_value(iv)}")

    for section in ("tftp", "dhcp"):
        if data.get(section) is not None:
            if lines:
                lines.append("")
            lines.append(f"[{section}]")
            table(section, data[section])
    return "\n".join(lines) + "\n"


# -- bootstorm check: what each kind of client receives

_KINDS = (
    ("BIOS (arch 0)", 0, "PXEClient:Arch:00000:UNDI:002001", None),
    ("UEFI x64 (arch 7)", 7, "PXEClient:Arch:00007:UNDI:003016", None),
    ("UEFI x64 (arch 9)", 9, "PXEClient:Arch:00009:UNDI:003016", None),
    ("UEFI ARM64 (arch 11)", 11, "PXEClient:Arch:00011:UNDI:003016", None),
    ("UEFI HTTP Boot (arch 16)", 16, "HTTPClient:Arch:00016:UNDI:003001", None),
    ("iPXE on BIOS", 0, "PXEClient:Arch:00000:UNDI:002001", b"iPXE"),
    ("iPXE on UEFI x64", 7, "PXEClient:Arch:00007:UNDI:003016", b"iPXE"),
)
_MAC = bytes.fromhex("525400123456")


def _packet(mtype: int, arch: int, vendor: str, user_class: bytes | None, *, ciaddr=b"\0" * 4,
            boot_item: tuple[int, int] | None = None, max_size: int | None = None):
    """A request as firmware sends it; with no option 57 unless max_size is given, as some PXE
    ROMs send none: the reply is then cut to 548 bytes (see _fit)."""
    from bootstorm._native import dhcp

    head = bytes((1, 1, 6, 0)) + (0x12345678).to_bytes(4, "big") + bytes(4) + ciaddr + bytes(12)
    head += _MAC + bytes(10) + bytes(64) + bytes(128) + b"\x63\x82\x53\x63"
    opts = [(53, bytes((mtype,))), (60, vendor.encode()), (93, arch.to_bytes(2, "big")),
            (94, b"\x01\x03\x10"), (97, b"\0" + bytes(range(16)))]
    if user_class:
        opts.append((77, bytes((len(user_class),)) + user_class))
        opts.append((175, b"\x13\x01\x01"))  # iPXE's encapsulated options
    if boot_item:
        opts.append((43, bytes((71, 4)) + boot_item[0].to_bytes(2, "big") + boot_item[1].to_bytes(2, "big") + b"\xff"))
    if max_size is not None:
        opts.append((57, max_size.to_bytes(2, "big")))
    body = b"".join(bytes((c, len(v))) + v for c, v in opts) + b"\xff"
    return dhcp.parse(head + body)


def _describe(a, local: bytes) -> dict:
    def addr(b):
        return "this server" if b == local else socket.inet_ntoa(b)

    d = {"file": a.file.rstrip(b"\0").decode("latin-1"), "siaddr": addr(a.siaddr) if a.siaddr != bytes(4) else "",
         "sname": a.sname.rstrip(b"\0").decode("latin-1"), "menu": [], "prompt": None, "discovery": None,
         "extra": [], "configured": a.options[len(a.options) - a.configured:]}
    own = a.options[:len(a.options) - a.configured]  # without the config's dhcp-option-pxe ones
    d["option43"] = any(c == 43 for c, _ in own)
    seen = set()
    for code, value in _options(b"".join(v for c, v in own if c == 43)):  # RFC 3396: joined
        if code in seen or code not in (6, 8, 9, 10, 71):  # a configured (vendor:) sub-option
            d["extra"].append((code, value))
        elif code == 6 and value:
            d["discovery"] = value[0]
        elif code == 10 and value:
            d["prompt"] = (value[0], value[1:].decode("latin-1"))
        elif code == 9:
            j = 0
            while j + 3 <= len(value):
                t, n = int.from_bytes(value[j:j + 2], "big"), value[j + 2]
                d["menu"].append((t, value[j + 3:j + 3 + n].decode("latin-1")))
                j += 3 + n
        seen.add(code)
    return d


def _fmt(d: dict) -> list[str]:
    out = []
    for t, text in d["menu"]:
        out.append(f"menu item {t}: {text!r}")
    if d["prompt"] is not None and d["menu"]:
        to, text = d["prompt"]
        out.append(f"prompt {text!r}, " + ("waits for a key" if to == 255 else f"timeout {to} s"))
    if d["file"]:
        out.append(f"boot file {d['file']!r}" + (f" from {d['siaddr']}" if d["siaddr"] else ""))
    if d["sname"]:
        out.append(f"server name {d['sname']!r}")
    for what, items in (("vendor sub-options", d["extra"]), ("options", d["configured"])):
        if items:
            out.append(f"{what} " + ", ".join(
                f"{c} = {v.decode()!r}" if v and v.isascii() and v.decode().isprintable()
                else f"{c} = {v.hex(':') or '(empty)'}" for c, v in items))
    return out


def report(config: Config, result: Result | None = None) -> tuple[str, list[str], int]:
    """Text for `bootstorm check`, the boot files it found missing under the TFTP root, and how
    many replies it shows lose options for clients without option 57."""
    from bootstorm.policy import Policy

    lines: list[str] = []
    files: set[str] = set()
    if config.dhcp is None:
        lines.append("ProxyDHCP: off (no dhcp-range=...,proxy / no [dhcp] section)")
    else:
        dcfg = config.dhcp
        local = _server_address(dcfg)
        base = Policy(dcfg)
        if not base.enabled:
            lines.append("ProxyDHCP: silent to every client (no pxe-service or pxe-prompt: dnsmasq answers "
                         "no PXE client then either)")
        tags = set()
        for coll in (dcfg.services, dcfg.prompts, dcfg.boot, dcfg.vendor_options, dcfg.options):
            for x in coll:
                tags |= {t.lstrip("!") for t in x.tags}
        for r in dcfg.ranges:
            tags |= {t.lstrip("!") for t in r.tags}
        for ig in dcfg.ignore:
            tags |= {t.lstrip("!") for t in ig}

        def run(extra: frozenset):
            class Probe(Policy):
                def tags_of(self, pkt, range_tag):
                    return super().tags_of(pkt, range_tag) | extra
            pol = Probe(dcfg)
            results = {}
            for label, arch, vendor, uc in _KINDS:
                results[label] = _client(pol, label, arch, vendor, uc, local)
            return pol, results

        _, plain = run(frozenset())
        lines.append(f"ProxyDHCP (as seen on {socket.inet_ntoa(local)}/24, shown as 'this server'):")
        for label, steps in plain.items():
            lines.append(f"  {label}:")
            lines += [f"    {s}" for s in steps[0]]
            files |= steps[1]
        for tag in sorted(tags):
            _, tagged = run(frozenset({tag}))
            diff = {k: v for k, v in tagged.items() if v[0] != plain[k][0]}
            if diff:
                lines.append(f"  with tag {tag}:")
                for label, steps in diff.items():
                    lines.append(f"    {label}:")
                    lines += [f"      {s}" for s in steps[0]]
                    files |= steps[1]
    cut = sum(line.lstrip().startswith("warning: ") for line in lines)
    missing = []
    if config.tftp is None:
        lines.append("TFTP: off")
    else:
        root = config.tftp.root
        lines.append(f"TFTP: root {root}, listening on {config.tftp.listen}:{config.tftp.port}")
        for f in sorted(files):
            if "://" in f:
                continue
            path = os.path.join(root, f.lstrip("/"))
            if not os.path.isfile(path):
                missing.append(f)
        for f in missing:
            lines.append(f"  missing under the root: {f}")
        local_files = [f for f in files if "://" not in f]
        if not missing and local_files:
            lines.append(f"  all {len(local_files)} boot files present")
    if result is not None:
        if result.warnings:
            lines.append("Differences from dnsmasq and things to check:")
            lines += [f"  {w}" for w in result.warnings]
        if result.notes:
            lines.append("Accepted without effect on PXE clients:")
            lines += [f"  {n}" for n in result.notes]
    return "\n".join(lines) + "\n", missing, cut


def _server_address(dcfg) -> bytes:
    """A plausible address of this server on the first proxy range (its first host)."""
    if not dcfg.ranges:
        return socket.inet_aton("192.0.2.1")
    r = dcfg.ranges[0]
    net = ipaddress.IPv4Network(f"{r.network}/{r.netmask or '255.255.255.0'}", strict=False)
    addr = ipaddress.IPv4Address(r.network)
    if addr == net.network_address and net.num_addresses > 2:
        addr += 1
    return addr.packed


_PXE_SUBOPTIONS = {6: "discovery control", 8: "boot servers", 9: "PXE menu", 10: "prompt"}
_SNAME, _FILE = (44, 64), (108, 128)  # BOOTP header fields (offset, length), RFC 2131 section 2


def _options(area: bytes) -> list[tuple[int, bytes]]:
    """(code, value) of a run of options up to END, pads skipped: an overloaded file or sname
    field, or a joined option 43's sub-options."""
    out, i = [], 0
    while i + 1 < len(area) and area[i] != 255:
        if area[i]:
            out.append((area[i], area[i + 2:i + 2 + area[i + 1]]))
            i += 1 + area[i + 1]
        i += 1
    return out


def _codes(area: bytes) -> list[int]:
    return [code for code, _ in _options(area)]


def _fit(a, *request, **kw) -> tuple[int, int, list[int], list[int], list[int]]:
    """The reply's size for a client that takes it all, and what one of the same kind that sends
    no option 57 misses: (size, its limit, codes left out, codes moved into file/sname,
    option 43 sub-options left out). dhcp.build, the server's encoder, makes both replies:
    the policy's answer holds options, the cut is the codec's, per request."""
    from bootstorm._native import dhcp

    def build(pkt, dropped=None) -> bytes:
        return dhcp.build(pkt, 2, ciaddr=a.ciaddr, yiaddr=a.yiaddr, siaddr=a.siaddr, flags=a.flags,
                          sname=a.sname, file=a.file, options=a.options, dropped=dropped)

    full = len(build(_packet(*request, max_size=0xFFFF, **kw)))  # option 57's largest: no cut
    pkt, dropped = _packet(*request, **kw), []
    sent = build(pkt, dropped)
    got = dhcp.parse(sent).options  # RFC 3396: instances joined, from file and sname too
    # option 52 may be written with nothing after it: what moved is what the fields now hold
    bits = got.get(52, b"\0")[0]
    moved = [c for bit, (at, n) in ((1, _FILE), (2, _SNAME)) if bits & bit for c in _codes(sent[at:at + n])]
    subs, kept = _codes(b"".join(v for c, v in a.options if c == 43)), _codes(got.get(43, b""))
    lost = [c for c in subs if c not in kept] if 43 in dropped else []
    return full, pkt.max_message_size, dropped, moved, lost


def _fit_line(label: str, a, *request, where: str = "", **kw) -> tuple[int, str | None]:
    """The reply's size, and a line when a client of this kind without option 57 would not get
    it whole: a warning when options are left out, a note when they only move into file/sname
    (option 52; a client that ignores it loses them too)."""
    full, limit, dropped, moved, lost = _fit(a, *request, **kw)
    if not dropped and not moved:
        return full, None

    def named(codes, subs=()):
        out = []
        for c in dict.fromkeys(codes):  # once each, in order: option 43 comes in instances
            names = ", ".join(f"{s} {_PXE_SUBOPTIONS.get(s, 'vendor')}" for s in subs) if c == 43 else ""
            out.append(f"option {c}" + (f" (sub-option{'s' * (len(subs) > 1)} {names})" if names else ""))
        return ", ".join(out)

    parts = ([f"lose {named(dropped, lost)}"] if dropped else []) + \
            ([f"get {named(moved)} only in the file/sname field (option 52)"] if moved else [])
    return full, (f"{'warning' if dropped else 'note'}: {label} clients without option 57 ({limit}-byte "
                  f"limit) {' and '.join(parts)}{where}: reply would be {full} bytes")


def _client(pol, label, arch, vendor, uc, local) -> tuple[list[str], set[str]]:
    """What one client kind goes through: DISCOVER on 67, REQUEST on 4011, boot server ACKs;
    with each reply's size and what a client of the kind without option 57 would miss of it."""
    steps, files = [], set()
    mask = socket.inet_aton("255.255.255.0")
    a = pol.answer(_packet(1, arch, vendor, uc), on_pxe_port=False, local=local, local_netmask=mask)
    if a is None:
        return ["nothing (no answer)"], files
    d = _describe(a, local)
    redirect = arch >= 6 and not d["option43"] and vendor.startswith("PXEClient")
    size, cut = _fit_line(label, a, 1, arch, vendor, uc, where=" in the offer on :67" if redirect else "")
    if redirect:
        steps.append("offer on :67 without a menu: asks again on port 4011")
        if cut:
            steps.append(cut)
        ciaddr = local[:3] + b"\x64"
        ack = pol.answer(_packet(3, arch, vendor, uc, ciaddr=ciaddr), on_pxe_port=True,
                         local=local, local_netmask=mask)
        if ack is None:
            steps.append("port 4011: nothing (no answer)")
            return steps, files
        d = _describe(ack, local)
        size, cut = _fit_line(label, ack, 3, arch, vendor, uc, ciaddr=ciaddr, where=" on port 4011")
        steps.append("port 4011: " + "; ".join((_fmt(d) or ["empty answer"]) + [f"reply {size} bytes"]))
    else:
        steps.append("; ".join((_fmt(d) or ["answer without menu or boot file"]) + [f"reply {size} bytes"]))
    if cut:
        steps.append(cut)
    if d["file"] and d["siaddr"] in ("this server", ""):
        files.add(d["file"])
    for t, text in d["menu"]:
        if t == 0:
            steps.append(f"  item {t} ({text!r}): local boot")
            continue
        item = dict(ciaddr=local[:3] + b"\x64", boot_item=(t, 0))
        ack = pol.answer(_packet(3, arch, vendor, uc, **item), on_pxe_port=True, local=local, local_netmask=mask)
        if ack is None:
            steps.append(f"  item {t} ({text!r}): boot server elsewhere, or no answer")
            continue
        bd = _describe(ack, local)
        steps.append(f"  item {t} ({text!r}): boot file {bd['file']!r} from {bd['siaddr'] or 'this server'}")
        _, cut = _fit_line(label, ack, 3, arch, vendor, uc, where=f" for item {t}", **item)
        if cut:
            steps.append(f"  {cut}")
        if bd["siaddr"] in ("this server", ""):
            files.add(bd["file"])
    return steps, files


# -- commands

def cmd_check(args) -> int:
    """`bootstorm check [--conf-file F | --config F]`."""
    from bootstorm.config import load as load_toml

    try:
        if args.config:
            result, config = None, load_toml(args.config)
        else:
            result = load(args.conf_file)
            config = result.config
        text, missing, cut = report(config, result)
    except ConfigError as exc:
        print(f"bootstorm check: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    # both are warnings, exit 0: the config is valid and serves (exit 2 is for one that is not);
    # what a reply loses depends on the client's option 57, which only the client knows
    print("configuration valid" + (f"; {len(missing)} boot file(s) missing" if missing else "")
          + (f"; {cut} reply(s) too big for clients without option 57" if cut else ""))
    return 0


def cmd_convert(args) -> int:
    """`bootstorm convert --conf-file F [-o OUT]`: the native TOML on stdout."""
    try:
        result = load(args.conf_file)
    except ConfigError as exc:
        print(f"bootstorm convert: {exc}", file=sys.stderr)
        return 2
    head = [f"# converted by bootstorm from {args.conf_file}"]
    head += [f"# note: {w}" for w in result.warnings]
    text = "\n".join(head) + "\n" + to_toml(result.config)
    if args.output and args.output != "-":
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    for w in result.warnings:
        print(f"bootstorm convert: {w}", file=sys.stderr)
    return 0


_USAGE = """usage: bootstorm [dnsmasq options]   (or the program linked as `dnsmasq`)
Reads dnsmasq's options and conf files (PXE, ProxyDHCP and TFTP subset), as dnsmasq does:
  -C, --conf-file=FILE   conf file (default /etc/dnsmasq.conf, if present)
  -7, --conf-dir=DIR[,*.conf][,.bak]
  -k, --keep-in-foreground   -d, --no-daemon   --test   -x, --pid-file=FILE
  every other dnsmasq option is accepted with its dnsmasq meaning or refused with a reason.
See `bootstorm check --conf-file FILE` and docs/migrating-from-dnsmasq.md.
"""


def run(argv: list[str]) -> int:
    """dnsmasq-style invocation: parse like dnsmasq, then serve."""
    from bootstorm import cli, privileges

    try:
        result = parse_args(argv)
    except _Exit as e:
        if str(e) == "version":
            print("bootstorm (dnsmasq-compatible command line, PXE/ProxyDHCP/TFTP subset)")
        else:
            sys.stdout.write(_USAGE)
        return 0
    except ConfigError as exc:
        print(f"bootstorm: {exc}", file=sys.stderr)
        return 2
    s = result.settings
    config = result.config
    if config.tftp is not None:
        root = os.path.abspath(config.tftp.root)
        if not os.path.isdir(root) and not result.tftp_no_fail:
            print(f"bootstorm: cannot access TFTP root {root}: not a directory", file=sys.stderr)
            return 2
        config = msgspec.structs.replace(config, tftp=msgspec.structs.replace(config.tftp, root=root))
    if s.test:
        print("bootstorm: syntax check OK.")
        return 0
    become = None
    if os.getuid() == 0 and not s.debug:  # as dnsmasq: root is given up, except with -d
        try:
            become = privileges.resolve(s.user, s.group)
        except ConfigError as exc:
            print(f"bootstorm: {exc}", file=sys.stderr)
            return 2
    if config.tftp is None and config.dhcp is None:
        print("bootstorm: nothing to serve: no enable-tftp and no dhcp-range=...,proxy", file=sys.stderr)
        return 2
    for w in result.warnings:
        print(f"bootstorm: warning: {w}", file=sys.stderr)
    log_file = s.log_file if s.log_file != "-" else None
    if log_file:
        try:
            cli.log_to(log_file, owner=become.uid if become else None)
        except OSError as exc:
            print(f"bootstorm: cannot open log file {log_file}: {exc.strerror}", file=sys.stderr)
            return 2
    serving = None if s.foreground else _daemonize()
    pid_file = None if s.debug else s.pid_file  # as dnsmasq: -d writes none
    if pid_file:
        try:
            _write_pid(pid_file, become)
        except OSError as exc:
            print(f"bootstorm: cannot write pid file {pid_file}: {exc.strerror} "
                  "(--pid-file= for none, as with dnsmasq)", file=sys.stderr)
            return 2

    def reload() -> tuple[DhcpConfig | None, list[str]]:
        """SIGHUP, as dnsmasq: the options as read at the start, with dhcp-hostsfile and
        dhcp-optsfile read again; the conf files are not (a restart applies them).
        ConfigError says why nothing changed."""
        new = replay(result.script)
        return new.config.dhcp, new.reloadable

    try:
        return cli.run_services(config, become=become, log_file=log_file, reload=reload, serving=serving)
    finally:
        if pid_file:
            try:
                os.unlink(pid_file)
            except OSError:
                pass  # root given up: the directory may not let the server's user


def _write_pid(path: str, become) -> None:
    """The pid file as dnsmasq writes it: a stale one replaced, the new one given to the user
    root is given up to (systemd checks that its owner matches)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        if become is not None and become.uid:
            try:
                os.fchown(fd, become.uid, become.gid)
            except OSError:
                pass
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _daemonize():
    """Like dnsmasq without -k/-d: into the background, while the first process waits until
    the daemon serves (exit 0) or dies first (exit 1, its error on the same stderr). Returns
    what the daemon calls once it serves: that also leaves a terminal's stderr."""
    r, w = os.pipe()
    if os.fork():
        os.close(w)
        said = os.read(r, 1)  # b"" when the daemon ended first: every copy of w is closed
        os._exit(0 if said else 1)
    os.close(r)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    _to_devnull(0, 1)

    def serving() -> None:
        os.write(w, b".")
        os.close(w)
        if os.isatty(2):
            _to_devnull(2)

    return serving


def _to_devnull(*fds: int) -> None:
    null = os.open(os.devnull, os.O_RDWR)
    for fd in fds:
        os.dup2(null, fd)
    os.close(null)
