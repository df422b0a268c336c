"""Boot policy: client facts -> ProxyDHCP answer.

The rules follow dnsmasq's proxy mode (src/rfc2131.c), the reference for a drop-in:
which clients are answered, the option 43 PXE menu, the UEFI redirect to port 4011 and
its single-service shortcut, the boot-server ACK. Where dnsmasq fails real firmware,
bootstorm does better, each marked `# beyond dnsmasq` and listed in docs/proxydhcp.md.
The configuration is compiled once per load; a request costs a few dict and list scans.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

import msgspec

from bootstorm.config import DhcpConfig

DISCOVER, OFFER, REQUEST, ACK, INFORM = 1, 2, 3, 5, 8
BROADCAST_FLAG = 0x8000
FIRST_EFI_ARCH = 6  # RFC 4578: below this, BIOS-style PXE with a menu
OPT_SERVER_ID, OPT_VENDOR_CLASS, OPT_VENDOR_SPECIFIC, OPT_UUID = 54, 60, 43, 97
SUB_DISCOVERY, SUB_SERVERS, SUB_MENU, SUB_PROMPT, SUB_BOOT_ITEM = 6, 8, 9, 10, 71
DISCOVERY_NO_MCAST_BCAST = 3  # PXE 2.1: no multicast or broadcast discovery: use the list
DISCOVERY_BCAST_ALLOWED = 2
DISCOVERY_USE_FILE = 8  # no menu: boot the file in the reply
OPTION43_CACHE_MAX = 4096
KINDS_MAX = 4096  # replies kept per kind of client
MENU_MAX = 253  # option 43 holds 255 bytes; each sub-option takes 2
OPTION_MAX, OPT_END = 255, 255  # RFC 2132: an option's length byte; the end option
OPT_VI_VENDOR, VI_ENCAP_MAX = 125, 250  # RFC 3925: enterprise number and data length first
HTTP_CLIENT = "HTTPClient"
ZERO = b"\0\0\0\0"

# dnsmasq pxe-service CSA names, by index. dnsmasq calls 7 "x86-64_EFI" and 9 "BC_EFI",
# the reverse of RFC 4578; firmware sends either number for x64 UEFI.
CSA_NAMES = ("x86PC", "PC98", "IA64_EFI", "Alpha", "Arc_x86", "Intel_Lean_Client", "IA32_EFI",
             "x86-64_EFI", "Xscale_EFI", "BC_EFI", "ARM32_EFI", "ARM64_EFI")


@dataclass
class Answer:
    """What to send back: a reply message and where it goes."""

    message_type: int
    flags: int
    ciaddr: bytes = ZERO
    yiaddr: bytes = ZERO
    siaddr: bytes = ZERO
    sname: bytes = b""
    file: bytes = b""
    options: list = field(default_factory=list)
    configured: int = 0  # how many of the last options are the config's own (dhcp-option-pxe)
    delay: float = 0.0  # seconds before it leaves (dhcp-reply-delay: proxy replies, not boot-server ACKs)


@dataclass
class _Kind:
    """The reply every client of one kind gets (Policy.answer's key), without the request's
    own facts: its flags are ORed with `flags`, its ciaddr echoed when `echo_ciaddr`, its
    UUID (option 97) put between `head` and `tail`."""

    message_type: int
    flags: int = 0
    echo_ciaddr: bool = False
    siaddr: bytes = ZERO
    sname: bytes = b""
    file: bytes = b""
    head: list = field(default_factory=list)
    tail: list = field(default_factory=list)
    configured: int = 0
    delay: float = 0.0

    def answer(self, flags: int, ciaddr: bytes, uuid: bytes | None) -> Answer:
        options = self.head + [(OPT_UUID, uuid)] + self.tail if uuid else self.head + self.tail
        return Answer(self.message_type, flags | self.flags, ciaddr if self.echo_ciaddr else ZERO, ZERO,
                      self.siaddr, self.sname, self.file, options, self.configured, self.delay)


_UNSEEN = object()


def _ip_int(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def _tags_match(wanted, tags: set) -> bool:
    """dnsmasq match_netid: every tag present, every '!tag' absent."""
    for t in wanted:
        if t.startswith("!"):
            if t[1:] in tags:
                return False
        elif t not in tags:
            return False
    return True


def _mac_matcher(pattern: str):
    parts = pattern.lower().replace("-", ":").split(":")
    want = [None if p == "*" else int(p, 16) for p in parts]
    return lambda mac: len(mac) == len(want) and all(w is None or w == b for w, b in zip(want, mac))


# dnsmasq's byte width for a number matched in these options (its option table); any other
# option takes the number in 1, 2 or 4 bytes, whichever holds it (option.c parse_dhcp_opt).
_NUMBER_WIDTH = {13: 2, 19: 1, 20: 1, 22: 2, 23: 1, 26: 2, 27: 1, 31: 1, 34: 1, 35: 4, 36: 1, 37: 1,
                 38: 4, 46: 1, 93: 2}


def _option_matcher(code: int, value: str | None):
    if value is None:
        return lambda pkt: code in pkt.options
    if value.isdigit():
        # dnsmasq (rfc2131.c, dhcp-match): the number as `width` big-endian bytes, found at any
        # multiple of `width` in the option: option 93's list of arches, option 175's iPXE
        # feature bytes (dhcp-match=set:ipxe-http,175,19 tests for the byte 19 anywhere)
        number = int(value)
        width = _NUMBER_WIDTH.get(code) or (4 if number > 0xFFFF else 2 if number > 0xFF else 1)
        want = (number & ((1 << (8 * width)) - 1)).to_bytes(width, "big")

        def match(pkt) -> bool:
            opt = pkt.options.get(code)
            if not opt:
                return False
            return any(opt[i:i + width] == want for i in range(0, len(opt) - width + 1, width))
        return match
    text = value.encode()
    return lambda pkt: text in pkt.options.get(code, b"")


class Policy:
    def __init__(self, config: DhcpConfig):
        self.config = config
        self.vendors = list(config.vendor_classes)
        if config.http_boot and HTTP_CLIENT not in self.vendors:
            self.vendors.append(HTTP_CLIENT)  # beyond dnsmasq: UEFI HTTP Boot
        self.vendor_prefixes = [(v.encode(), v) for v in self.vendors]
        self.hosts = {name: socket.inet_aton(addr) for name, addr in config.hosts.items()}
        self.rules = [(r, self._compile_rule(r)) for r in config.rules]
        # (network, netmask or None for the interface's, range) as 32-bit integers
        self.ranges = [(_ip_int(r.network), _ip_int(r.netmask) if r.netmask else None, r)
                       for r in config.ranges]
        self.range_tags = any(r.set for r in config.ranges)  # else a client's range adds no tag
        self.services = self._number_services(config.services)
        self.option43: dict[tuple, list] = {}  # (arch, tags, local address, vendor matches) -> option 43
        # option 43's configured sub-options in the order sent, prompts first (as dnsmasq keeps them
        # in one list): (code, value, text the client's option 60 must contain or b"", tags)
        self.suboptions = ([(SUB_PROMPT, bytes((p.timeout & 0xFF,)) + p.text.encode(), b"", p.tags)
                            for p in config.prompts]
                           + [(v.code, v.value, v.vendor.encode(), v.tags) for v in config.vendor_options])
        self.vendor_specific = [i for i, sub in enumerate(self.suboptions) if sub[2]]
        # dhcp-option-pxe entries as dnsmasq keeps them, the newest line first: (code, value, tags,
        # text: NUL-terminated for some clients, addresses: 0.0.0.0 is the server's own); and the
        # sub-options, (outer, code, value, tags, text), outer ("encap", N) or ("vi-encap", N)
        newest = list(reversed(config.options))
        self.options = [(o.code, o.value, o.tags, bool(o.text), "0.0.0.0" in o.addresses)
                        for o in newest if o.encap is None and o.vi_encap is None]
        self.suboptions_of = [(("encap", o.encap) if o.encap is not None else ("vi-encap", o.vi_encap),
                               o.code, o.value, o.tags, bool(o.text))
                              for o in newest if o.encap is not None or o.vi_encap is not None]
        self.text_options = any(o.text for o in newest)
        self.kinds: dict[tuple, _Kind | None] = {}  # answer()'s facts -> reply, or None (silence)
        # dnsmasq answers PXE only once a pxe-service or pxe-prompt exists
        self.enabled = bool(config.services or config.prompts)

    @staticmethod
    def _number_services(services):
        """Services with a boot file get boot server types 32768, 32769, ... in order,
        as dnsmasq numbers its pxe-service lines; the client names the type it picked."""
        out, next_type = [], 32768
        for s in services:
            if s.file and s.type == 0:
                s = msgspec.structs.replace(s, type=next_type)
                next_type += 1
            out.append(s)
        return out

    @staticmethod
    def _compile_rule(rule):
        tests = []
        if rule.vendor_class is not None:
            v = rule.vendor_class
            tests.append(lambda pkt: v in pkt.vendor_class)
        if rule.user_class is not None:
            u = rule.user_class
            tests.append(lambda pkt: any(u in c for c in pkt.user_classes))
        if rule.mac is not None:
            m = _mac_matcher(rule.mac)
            tests.append(lambda pkt: m(pkt.mac))
        if rule.arch is not None:
            archs = frozenset(rule.arch)
            tests.append(lambda pkt: pkt.arch in archs)
        if rule.option is not None:
            tests.append(_option_matcher(rule.option, rule.value))
        return tests

    # -- facts

    def vendor_of(self, pkt) -> str | None:
        vc = pkt.options.get(OPT_VENDOR_CLASS, b"")
        for prefix, v in self.vendor_prefixes:
            if vc.startswith(prefix):
                return v
        return None

    def tags_of(self, pkt, range_tag: str | None) -> set:
        tags = set()
        if range_tag:
            tags.add(range_tag)
        for rule, tests in self.rules:
            if tests and all(t(pkt) for t in tests) and _tags_match(rule.tags, tags):
                tags.add(rule.set)
        for rule, tests in self.rules:  # tag-if rules see the tags set above
            if not tests and _tags_match(rule.tags, tags):
                tags.add(rule.set)
        return tags

    def find_range(self, addr: bytes, local_netmask: bytes | None):
        """The first proxy range whose subnet holds addr (dnsmasq is_same_net); a range
        without a netmask takes the interface's, else /24."""
        ip = int.from_bytes(addr, "big")
        default = int.from_bytes(local_netmask, "big") if local_netmask else 0xFFFFFF00
        for net, mask, r in self.ranges:
            m = default if mask is None else mask
            if ip & m == net & m:
                return r
        return None

    def resolve(self, name: str | None) -> bytes:
        """dnsmasq a_record_from_hosts: names from the config's hosts, or a literal IP."""
        if not name:
            return ZERO
        if name in self.hosts:
            return self.hosts[name]
        try:
            return socket.inet_aton(name)
        except OSError:
            return ZERO

    # -- the decision

    def answer(self, pkt, *, on_pxe_port: bool, local: bytes, local_netmask: bytes | None):
        """The Answer for a request, or None to stay silent."""
        if pkt.op != 1 or not self.enabled:
            return None
        vendor = self.vendor_of(pkt)
        if vendor is None:
            return None
        mtype = pkt.message_type
        giaddr = pkt.giaddr
        relayed = giaddr != ZERO
        uuid = pkt.uuid
        if uuid is not None and len(uuid) != 17:
            uuid = None
        # dnsmasq adds a range's set: tag only when it builds the proxy answer (option_filter);
        # dhcp-ignore and the boot-server ACK see the tags without it (rfc2131.c tagif_netid)
        base_tags = self.tags_of(pkt, None)
        if vendor != HTTP_CLIENT:
            item = pkt.boot_item  # read from every PXE request: a malformed option 43 is refused
            if item is not None and mtype in (REQUEST, INFORM):  # the client's address picks the range
                if any(_tags_match(t, base_tags) for t in self.config.ignore):
                    return None
                misc = [(OPT_VENDOR_CLASS, vendor.encode())] + ([(OPT_UUID, uuid)] if uuid else [])
                return self._boot_server_ack(pkt, item, base_tags, local, misc, local_netmask)
        subnet_addr, netmask = (giaddr, None) if relayed else (local, local_netmask)
        tags = base_tags
        if self.range_tags:  # the range is a fact of the key (its subnet): found here only for its tag
            rng = self.find_range(subnet_addr, netmask)
            if rng is not None and rng.set:
                tags = self.tags_of(pkt, rng.set)
        ciaddr = pkt.ciaddr
        # every fact the reply depends on but the client's flags, ciaddr and UUID: a storm's
        # clients of one kind share one entry, whatever their MACs (the tags carry the rules')
        base_key = frozenset(base_tags)
        key = (vendor, mtype, pkt.arch, ciaddr == ZERO, on_pxe_port, local, subnet_addr, netmask,
               base_key, base_key if tags is base_tags else frozenset(tags),
               self._vendor_matches(pkt) if self.vendor_specific else (),
               self.text_options and _nul_terminates(pkt))
        kind = self.kinds.get(key, _UNSEEN)
        if kind is _UNSEEN:
            if len(self.kinds) >= KINDS_MAX:  # arch numbers and relays are the clients' to pick
                self.kinds.clear()
            kind = self.kinds[key] = self._kind(vendor, mtype, key[2], key[3], on_pxe_port, local,
                                                self.find_range(subnet_addr, netmask), base_tags, tags, key[10],
                                                key[11])
        return None if kind is None else kind.answer(pkt.flags, ciaddr, uuid)

    def _kind(self, vendor, mtype, arch, no_ciaddr, on_pxe_port, local, rng, base_tags, tags, matched,
              nul_terminated):
        """The reply for one kind of client (the facts answer() keys it by), or None for silence.
        Reads no packet: what it returns holds for every client with the same facts."""
        ignore = any(_tags_match(t, base_tags) for t in self.config.ignore)
        head = [(OPT_VENDOR_CLASS, vendor.encode())]  # then the UUID, then the rest
        if vendor == HTTP_CLIENT:
            return None if ignore or mtype != DISCOVER else self._http_boot(tags, local, head)
        if arch < 0 or not (mtype == DISCOVER or (on_pxe_port and mtype == REQUEST)):
            return None
        if rng is None or not _tags_match(rng.tags, tags) or ignore:
            return None
        a = _Kind(OFFER if mtype == DISCOVER else ACK, delay=self._delay(tags))
        if mtype == DISCOVER or no_ciaddr:
            a.flags = BROADCAST_FLAG
        else:
            a.echo_ciaddr = True
        redirect = arch >= FIRST_EFI_ARCH
        if redirect:  # UEFI clients ask again on port 4011
            a.siaddr = local
        single = self._uefi_single_service(arch, tags)
        if single is not None and on_pxe_port:
            # broken UEFI menus: one service goes straight into file/siaddr/sname
            if single.server_name:
                a.siaddr = self.resolve(single.server_name)
                a.sname = single.server_name.encode()
            else:
                a.siaddr = socket.inet_aton(single.server) if single.server else local
                a.sname = socket.inet_ntoa(a.siaddr).encode()
            a.file = (single.file if "." in single.file else single.file + ".0").encode()
        elif single is None:
            boot = self.find_boot(tags)
            if boot is not None:
                if boot.server:
                    a.siaddr = socket.inet_aton(boot.server)
                elif boot.server_name:
                    a.siaddr = self.resolve(boot.server_name)
                if boot.file:
                    a.file = boot.file.encode()
                    if a.siaddr == ZERO:
                        a.siaddr = local  # beyond dnsmasq: else iPXE ends in "Nothing to boot"
        a.head = [(53, bytes((a.message_type,))), (OPT_SERVER_ID, local)] + head
        if (on_pxe_port and single is None) or not redirect:
            a.tail = self._pxe_options(arch, tags, local, matched)
        if self.options or self.suboptions_of:  # also where option 43 is left out
            extra = self._extra_options(base_tags, tags, bool(rng.set), local, nul_terminated)
            a.tail, a.configured = a.tail + extra, len(extra)
        return a

    def _extra_options(self, base_tags, tags, range_tag, local, nul_terminated) -> list:
        """The dhcp-option-pxe options of a proxy reply (rfc2131.c, after option 43): one per
        code, dnsmasq's option_filter picking an entry whose tags the client carries without its
        range's tag, else one that matches with it, else an untagged one, the newest of them."""
        best: dict[int, tuple[int, int]] = {}  # code -> (rank, index)
        for i, (code, _, want, _, _) in enumerate(self.options):
            if not want:
                rank = 2
            elif _tags_match(want, base_tags) and (not range_tag or _tags_match(want, tags)):
                rank = 0
            elif range_tag and _tags_match(want, tags):
                rank = 1
            else:
                continue
            if code not in best or rank < best[code][0]:
                best[code] = (rank, i)
        out = []
        for i, (code, value, _, text, self_address) in enumerate(self.options):
            if best.get(code, (0, -1))[1] != i:
                continue
            if text and nul_terminated and len(value) < OPTION_MAX:
                value += b"\0"
            elif self_address:
                value = b"".join(local if value[j:j + 4] == ZERO else value[j:j + 4]
                                 for j in range(0, len(value), 4))
            out.append((code, value))
        # then each encapsulating option (handle_encap), in the order of its newest entry, with
        # every sub-option whose tags the client carries (none picked over another here)
        groups: dict[tuple, list] = {}
        for outer, code, value, want, text in self.suboptions_of:
            subs = groups.setdefault(outer, [])
            if _tags_match(want, tags):  # NUL-terminated text in encap: only (not in 125)
                nul = text and nul_terminated and outer[0] == "encap"
                subs.append((code, value + b"\0" if nul else value))
        for (kind, number), subs in groups.items():
            if kind == "encap":
                out += _encapsulate(subs, number)
            elif subs:
                data = b"".join(bytes((c, len(v))) + v for c, v in subs)
                if len(data) <= VI_ENCAP_MAX:  # else dnsmasq logs "cannot send RFC3925 option"
                    out.append((OPT_VI_VENDOR, number.to_bytes(4, "big") + bytes((len(data),)) + data))
        return out

    def _delay(self, tags) -> float:
        """dnsmasq apply_delay: the first tagged delay whose tags the client carries, else the
        delay for every client."""
        return next((d.seconds for d in self.config.reply_delays if _tags_match(d.tags, tags)),
                    self.config.reply_delay)

    def _http_boot(self, tags, local, head):
        """beyond dnsmasq: UEFI HTTP Boot takes a URL in `file`, no menu, no port 4011."""
        boot = self.find_boot(tags)
        if boot is None or not boot.file:
            return None
        a = _Kind(OFFER, flags=BROADCAST_FLAG, file=boot.file.encode(), delay=self._delay(tags))
        a.head = [(53, bytes((OFFER,))), (OPT_SERVER_ID, local)] + head
        return a

    def _boot_server_ack(self, pkt, item, tags, local, misc, local_netmask):
        btype, layer = item
        if layer & 0x8000:  # PXE BIS (signed images) is not supported, as in dnsmasq
            return None
        service = next((s for s in self.services if s.type == btype), None)
        rng = None
        if pkt.ciaddr != ZERO:
            r = self.find_range(pkt.ciaddr, local_netmask)
            rng = r if r is not None and _tags_match(r.tags, tags) else None
        if service is None or not service.file or rng is None:
            return None
        a = Answer(ACK, pkt.flags, yiaddr=pkt.ciaddr)
        if service.server_name:
            a.siaddr = self.resolve(service.server_name)
        elif service.server:
            a.siaddr = socket.inet_aton(service.server)
        else:
            a.siaddr = local
        a.file = (service.file if "." in service.file else f"{service.file}.{layer}").encode()
        # the item echoed, then the configured sub-options (dnsmasq: no discovery control, no menu)
        subs = [(SUB_BOOT_ITEM, pkt.pxe_suboptions[SUB_BOOT_ITEM][:4])]
        subs += self._configured(tags, self._vendor_matches(pkt))
        a.options = [(53, bytes((ACK,))), (OPT_SERVER_ID, local)] + misc + _encapsulate(subs)
        return a

    def _vendor_matches(self, pkt) -> tuple:
        """Which vendor-specific sub-options the client's option 60 contains the text of,
        anywhere in it (rfc2131.c match_vendor_opts): their indexes in self.suboptions."""
        vc = pkt.options.get(OPT_VENDOR_CLASS, b"")
        return tuple(i for i in self.vendor_specific if self.suboptions[i][2] in vc)

    def _configured(self, tags, matched) -> list:
        """The configured sub-options (prompts, vendor options) a client gets, in order: all
        whose tags fit it and whose vendor text, if any, it matched. Every one, not the first:
        dnsmasq sends each line that applies."""
        return [(code, value) for i, (code, value, vendor, want) in enumerate(self.suboptions)
                if (not vendor or i in matched) and _tags_match(want, tags)]

    def find_boot(self, tags):
        """dnsmasq find_boot: the first entry whose tags all match, preferring tagged ones."""
        for b in self.config.boot:
            if b.tags and _tags_match(b.tags, tags):
                return b
        for b in self.config.boot:
            if not b.tags:
                return b
        return None

    def _uefi_single_service(self, arch, tags):
        if arch < FIRST_EFI_ARCH:
            return None
        found = None
        for s in self.services:
            if s.arch == arch and s.file and _tags_match(s.tags, tags):
                if found is not None:
                    return None
                found = s
        return found

    def _pxe_options(self, arch, tags, local, matched=()) -> list:
        """Option 43 for a PXE client: discovery control, prompt, boot servers, menu, then the
        configured sub-options; [(43, bytes)], more than one when it exceeds 255 bytes.
        The same for every client of an architecture, tag set and vendor match: built once."""
        key = (arch, frozenset(tags), local, matched)
        built = self.option43.get(key)
        if built is None:
            if len(self.option43) >= OPTION43_CACHE_MAX:  # arch numbers are the client's to pick
                self.option43.clear()
            built = self.option43[key] = self._build_pxe_options(arch, tags, local, matched)
        return built

    def _build_pxe_options(self, arch, tags, local, matched=()) -> list:
        configured = self._configured(tags, matched)
        menu, servers, count = bytearray(), bytearray(), 0
        discovery = DISCOVERY_NO_MCAST_BCAST
        for s in self.services:
            if s.arch != arch or not _tags_match(s.tags, tags):
                continue
            text = s.menu.encode()
            if len(menu) + len(text) + 3 >= MENU_MAX:
                return _encapsulate(configured)  # dnsmasq: "PXE menu too large", its own ones left out
            menu += s.type.to_bytes(2, "big") + bytes((len(text),)) + text
            count += 1
            if s.file:
                server = local
            elif s.server_name:
                server = self.resolve(s.server_name)
            else:
                server = socket.inet_aton(s.server) if s.server else ZERO
            if server != ZERO:
                if len(servers) + 3 + len(server) >= MENU_MAX:  # type, count, address
                    return _encapsulate(configured)  # as the menu: too large
                servers += s.type.to_bytes(2, "big") + b"\x01" + server
            elif s.type != 0:
                discovery = DISCOVERY_BCAST_ALLOWED  # unknown server: let the client broadcast
        subs = []
        if count == 0:
            discovery = DISCOVERY_USE_FILE
        subs.append((SUB_DISCOVERY, bytes((discovery,))))
        # dnsmasq's stand-in prompt unless a configured sub-option 10 applies (a pxe-prompt or a
        # vendor one): wait forever only if there is a choice
        if not any(code == SUB_PROMPT for code, _ in configured):
            subs.append((SUB_PROMPT, bytes((255 if count > 1 else 0,)) + b"PXE"))
        if count:
            if servers:
                subs.append((SUB_SERVERS, bytes(servers)))
            subs.append((SUB_MENU, bytes(menu)))
        # then the configured ones, even a second 6 or 8 after dnsmasq's own (rfc2131.c pxe_opts)
        return _encapsulate(subs + configured)


def _nul_terminates(pkt) -> bool:
    """Whether the client ends its name with a NUL (option 81, else 12): dnsmasq then ends the
    text options it sends with one too (rfc2131.c borken_opt, for old Windows clients)."""
    fqdn = pkt.options.get(81)
    if fqdn is not None and len(fqdn) >= 3:
        return not fqdn[0] & 0x04 and len(fqdn) > 3 and fqdn[-1] == 0  # 0x04: binary-encoded name
    name = pkt.options.get(12)
    return bool(name) and name[-1] == 0


def _encapsulate(subs, outer: int = OPT_VENDOR_SPECIFIC) -> list:
    """Sub-options -> instances of option `outer` (43) as dnsmasq's do_encap_opts fills them: whole
    sub-options, up to 255 bytes each, the end marker in the last; none at all for no
    sub-options. Where dnsmasq would write a 256-byte instance (255 bytes and the end) the
    end goes into an instance of its own (beyond dnsmasq: a length of 256 wraps to 0)."""
    if not subs:
        return []
    chunks, chunk = [], b""
    for code, value in subs:
        item = bytes((code, len(value))) + value
        if chunk and len(chunk) + len(item) > OPTION_MAX:
            chunks.append(chunk)
            chunk = b""
        chunk += item
    if len(chunk) == OPTION_MAX:
        chunks.append(chunk)
        chunk = b""
    chunks.append(chunk + bytes((OPT_END,)))
    return [(outer, c) for c in chunks]
