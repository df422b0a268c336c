"""PXE client simulator: realistic DHCP/PXE packets in, decoded replies out.

Standard library only, and runnable as a script, because it runs in two places:

* in the test process: packet builders (:func:`discover`, :func:`request`...), an
  independent decoder (:func:`decode_frame`, :func:`decode_bootp`) that shares no code
  with bootstorm, and :class:`Client`, which drives the part below;
* inside the client's network namespace (``ip netns exec NS python3 simulator.py
  --spec -``): a dumb sender and sniffer.  It reads a JSON list of steps on stdin; each
  step sends prepared BOOTP payloads (a raw Ethernet frame from 0.0.0.0 for the
  firmware's broadcast, or an ordinary UDP socket for unicast and relayed packets),
  then captures, on an AF_PACKET socket, every BOOTREPLY with the step's xid, with
  its Ethernet, IP and UDP headers; it prints JSON with the frames in hex.

Every send loop is bounded in count and in time, and packets only ever leave through
the namespace's own ``eth0``.

By hand, inside a namespace::

    ip netns exec bs-cli-... python3 tests/pxe/simulator.py discover --arch 7
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
import uuid as uuidlib
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

# --- constants (RFC 2131 / 2132 / 4578 / PXE 2.1) -------------------------------------
BOOTREQUEST, BOOTREPLY = 1, 2
MAGIC = b"\x63\x82\x53\x63"  # RFC 2131 section 3: the options field's magic cookie
BOOTP_FIXED = 236  # op .. file, before the cookie
BOOTP_MIN = 300  # RFC 1542 section 3.4: minimum BOOTP message the relay must accept
FLAG_BROADCAST = 0x8000
DHCPDISCOVER, DHCPOFFER, DHCPREQUEST, DHCPDECLINE, DHCPACK, DHCPNAK, DHCPRELEASE, DHCPINFORM = range(1, 9)
MSG_NAMES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}
OPT_PAD, OPT_END = 0, 255
PXE_SUB_NAMES = {
    1: "MTFTP_IP", 2: "MTFTP_CPORT", 3: "MTFTP_SPORT", 4: "MTFTP_TMOUT", 5: "MTFTP_DELAY",
    6: "DISCOVERY_CONTROL", 7: "DISCOVERY_MCAST_ADDR", 8: "BOOT_SERVERS", 9: "BOOT_MENU",
    10: "MENU_PROMPT", 11: "MCAST_ADDRS_ALLOC", 12: "CREDENTIAL_TYPES", 71: "BOOT_ITEM",
}
ETH_P_IP = 0x0800
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET, PACKET_AUXDATA = 263, 8  # linux/if_packet.h
TP_STATUS_CSUMNOTREADY, TP_STATUS_CSUM_VALID = 1 << 3, 1 << 7
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
MAX_STEPS = 64  # per simulator process: every run is bounded

# OVMF's parameter request list (EDK2 PxeBcDhcp4.c mPxeDhcp4ParamRequest... in spirit):
# the classic subnet/router/DNS set plus 43, 60, 66, 67, 97 and the PXE 128-135 range.
PXE_PARAM_LIST = [1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51,
                  54, 58, 59, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135]
# iPXE's request list (src/net/udp/dhcp.c dhcp_request_settings), for chainloaded iPXE.
IPXE_PARAM_LIST = [1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132,
                   133, 134, 135, 175, 203]
# RFC 4578 / IANA client system architecture types, and the option 60 each sends.
ARCH_NAMES = {0: "x86 BIOS", 6: "IA32 EFI", 7: "x64 EFI (BC)", 9: "x64 EFI", 10: "ARM32 EFI",
              11: "ARM64 EFI", 15: "x86 UEFI HTTP", 16: "x64 UEFI HTTP", 18: "ARM32 UEFI HTTP",
              19: "ARM64 UEFI HTTP"}
HTTP_ARCHES = {15, 16, 18, 19}


def vendor_class(arch: int, undi: str | None = None) -> str:
    """Option 60 as firmware sends it: ``PXEClient:Arch:00007:UNDI:003000``."""
    if arch in HTTP_ARCHES:
        return f"HTTPClient:Arch:{arch:05d}:UNDI:{undi or '003001'}"
    return f"PXEClient:Arch:{arch:05d}:UNDI:{undi or ('002001' if arch == 0 else '003000')}"


def ipxe_features(arch: int) -> bytes:
    """A plausible option 175 (iPXE encapsulated options: feature flags and version)."""
    subs = [(0x10, b"\x02"),  # PXEEXT
            (0x13, b"\x01"),  # HTTP
            (0x15, b"\x01"),  # TFTP
            (0x17, b"\x01"),  # DNS
            (0x24 if arch else 0x21, b"\x01"),  # EFI image / PXE image
            (0xEB, b"\x01\x15\x00")]  # version 1.21.0
    return b"".join(bytes([c, len(v)]) + v for c, v in subs)


# --- packet building ---------------------------------------------------------------
def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "").replace("-", ""))


def mac_str(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def encode_options(options: Sequence[tuple[int, bytes]]) -> bytes:
    """TLV-encode; a value longer than 255 bytes is split over instances (RFC 3396)."""
    out = bytearray()
    for code, value in options:
        if code in (OPT_PAD, OPT_END):
            out.append(code)
            continue
        chunks = [value[i:i + 255] for i in range(0, len(value), 255)] or [b""]
        for chunk in chunks:
            out += bytes([code, len(chunk)]) + chunk
    return bytes(out)


def build_bootp(*, op: int = BOOTREQUEST, htype: int = 1, hlen: int = 6, hops: int = 0,
                xid: int = 0, secs: int = 0, flags: int = 0, ciaddr: str = "0.0.0.0",
                yiaddr: str = "0.0.0.0", siaddr: str = "0.0.0.0", giaddr: str = "0.0.0.0",
                chaddr: str = "00:00:00:00:00:00", sname: bytes = b"", file: bytes = b"",
                options: Sequence[tuple[int, bytes]] = (), min_len: int = BOOTP_MIN,
                raw_options: bytes | None = None) -> bytes:
    """A BOOTP/DHCP message; options end with 255 and the message is 0-padded to min_len."""
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, htype, hlen, hops, xid, secs, flags,
                      socket.inet_aton(ciaddr), socket.inet_aton(yiaddr), socket.inet_aton(siaddr),
                      socket.inet_aton(giaddr), mac_bytes(chaddr).ljust(16, b"\0"), sname, file)
    body = raw_options if raw_options is not None else encode_options(options) + b"\xff"
    msg = hdr + MAGIC + body
    return msg.ljust(min_len, b"\0")


def pxe_options_43(subs: Sequence[tuple[int, bytes]]) -> bytes:
    """Option 43 as a PXE client sends it: sub-options then an end marker."""
    return encode_options(subs) + b"\xff"


def boot_item(item_type: int, layer: int = 0) -> bytes:
    """PXE sub-option 71 (PXE_BOOT_ITEM): boot server type, then layer (both 16-bit)."""
    return struct.pack("!HH", item_type, layer)


@dataclass
class ClientProfile:
    """What one simulated machine says about itself in every packet."""

    arch: int = 0
    mac: str = "52:54:00:12:34:56"
    uuid: bytes = field(default_factory=lambda: uuidlib.UUID("8a0c4d1e-5b1f-4c6e-9e2a-0123456789ab").bytes)
    undi: str | None = None  # the UNDI:yyyzzz part of option 60; None = per firmware kind
    nii: bytes = b"\x01\x03\x10"  # option 94: UNDI 3.16
    max_size: int | None = 1472  # option 57; None: not sent (the reply must fit 576-byte IP)
    ipxe: bool = False  # chainloaded iPXE: user class iPXE and option 175
    user_class_form: str = "plain"  # "plain" ("iPXE", as iPXE sends it) or "rfc3004"
    user_class: str | None = None  # another user class string
    features_175: bool | None = None  # default: sent when ipxe
    vendor_class: str | None = None  # override option 60 entirely
    param_list: list[int] | None = None

    def option60(self) -> str:
        return self.vendor_class if self.vendor_class is not None else vendor_class(self.arch, self.undi)

    def base_options(self, msg_type: int) -> list[tuple[int, bytes]]:
        """Options in the order EDK2/iPXE write them: 53, 57, 55, 97, 94, 93, 60, 77, 175."""
        params = self.param_list or (IPXE_PARAM_LIST if self.ipxe else PXE_PARAM_LIST)
        opts: list[tuple[int, bytes]] = [
            (53, bytes([msg_type])),
            *([(57, struct.pack("!H", self.max_size))] if self.max_size is not None else []),
            (55, bytes(params)),
            (97, b"\x00" + self.uuid),
            (94, self.nii),
            (93, struct.pack("!H", self.arch)),
            (60, self.option60().encode()),
        ]
        uc = "iPXE" if self.ipxe and self.user_class is None else self.user_class
        if uc is not None:
            raw = uc.encode()
            opts.append((77, bytes([len(raw)]) + raw if self.user_class_form == "rfc3004" else raw))
        if self.features_175 or (self.features_175 is None and self.ipxe):
            opts.append((175, ipxe_features(self.arch)))
        return opts


def discover(profile: ClientProfile, *, xid: int, secs: int = 4, flags: int = 0,
             giaddr: str = "0.0.0.0", hops: int = 0, extra: Sequence[tuple[int, bytes]] = (),
             min_len: int = 548) -> bytes:
    """The firmware's DHCPDISCOVER (548 bytes like a PXE ROM: options then zero padding)."""
    return build_bootp(xid=xid, secs=secs, flags=flags, giaddr=giaddr, hops=hops,
                       chaddr=profile.mac, options=profile.base_options(DHCPDISCOVER) + list(extra),
                       min_len=min_len)


def request(profile: ClientProfile, *, xid: int, ciaddr: str = "0.0.0.0", secs: int = 4,
            flags: int = 0, giaddr: str = "0.0.0.0", hops: int = 0,
            item: tuple[int, int] | None = None, requested_ip: str | None = None,
            server_id: str | None = None, extra: Sequence[tuple[int, bytes]] = (),
            msg_type: int = DHCPREQUEST, min_len: int = 548) -> bytes:
    """DHCPREQUEST (or INFORM): the 4011 request (ciaddr set), the boot-server request
    (option 43 with sub-option 71 = ``item`` (type, layer)), or an ordinary
    SELECTING-state request (``requested_ip`` and ``server_id``)."""
    opts = profile.base_options(msg_type)
    if requested_ip:
        opts.insert(1, (50, socket.inet_aton(requested_ip)))
    if server_id:
        opts.insert(1, (54, socket.inet_aton(server_id)))
    if item is not None:
        opts.append((43, pxe_options_43([(71, boot_item(*item))])))
    return build_bootp(xid=xid, ciaddr=ciaddr, secs=secs, flags=flags, giaddr=giaddr, hops=hops,
                       chaddr=profile.mac, options=opts + list(extra), min_len=min_len)


# --- decoding (independent of bootstorm) ----------------------------------------------
def _ip(b: bytes) -> str:
    return socket.inet_ntoa(b)


def parse_tlv(data: bytes, *, stop_at_end: bool = True) -> tuple[list[list[Any]], dict[str, Any]]:
    """TLV options -> ordered [[code, hex]], plus facts: where END was, what followed it."""
    out: list[list[Any]] = []
    i, n = 0, len(data)
    facts: dict[str, Any] = {"end": None, "pads": 0, "truncated": False}
    while i < n:
        code = data[i]
        if code == OPT_PAD:
            facts["pads"] += 1
            i += 1
            continue
        if code == OPT_END:
            facts["end"] = i
            break
        if i + 1 >= n or i + 2 + data[i + 1] > n:
            facts["truncated"] = True
            break
        ln = data[i + 1]
        out.append([code, data[i + 2:i + 2 + ln].hex()])
        i += 2 + ln
    if facts["end"] is not None:
        tail = data[facts["end"] + 1:]
        facts["after_end"] = len(tail)
        facts["after_end_nonzero"] = any(tail)
    return out, facts


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("latin-1")


def _tail_nonzero(field_: bytes) -> bool:
    """Bytes after a string field's terminating NUL are not all zero (stale memory?)."""
    nul = field_.find(b"\0")
    return nul >= 0 and any(field_[nul:])


def _merged(options: list[list[Any]]) -> dict[int, bytes]:
    """Concatenate every instance of each option (RFC 3396)."""
    merged: dict[int, bytes] = {}
    for code, hx in options:
        merged[code] = merged.get(code, b"") + bytes.fromhex(hx)
    return merged


def decode_pxe(value: bytes) -> dict[str, Any]:
    """Option 43 as PXE 2.1 sub-options, with the menu, servers and prompt spelled out."""
    subs, facts = parse_tlv(value)
    out: dict[str, Any] = {"subs": subs, "end": facts["end"] is not None}
    if facts["end"] is not None and facts["end"] + 1 < len(value):
        out["after_end"] = value[facts["end"] + 1:].hex()  # more sub-options, or junk
    m = _merged(subs)
    if 6 in m and m[6]:
        out["discovery_control"] = m[6][0]
    if 8 in m:
        servers, d = [], m[8]
        while len(d) >= 3:
            t, cnt = struct.unpack("!HB", d[:3])
            ips = [_ip(d[3 + 4 * k:7 + 4 * k]) for k in range(cnt)]
            servers.append({"type": t, "ips": ips})
            d = d[3 + 4 * cnt:]
        out["boot_servers"] = servers
    if 9 in m:
        items, d = [], m[9]
        while len(d) >= 3:
            t, ln = struct.unpack("!HB", d[:3])
            items.append({"type": t, "desc": d[3:3 + ln].decode("latin-1")})
            d = d[3 + ln:]
        out["menu"] = items
    if 10 in m and m[10]:
        out["prompt"] = {"timeout": m[10][0], "text": m[10][1:].decode("latin-1")}
    if 71 in m and len(m[71]) >= 4:
        t, layer = struct.unpack("!HH", m[71][:4])
        out["boot_item"] = {"type": t, "layer": layer}
    return out


def decode_bootp(data: bytes) -> dict[str, Any]:
    """A BOOTP/DHCP message -> a normalized, JSON-friendly dict (see module doc)."""
    if len(data) < BOOTP_FIXED + 4:
        return {"error": f"short BOOTP message ({len(data)} bytes)", "length": len(data)}
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
     sname, file) = struct.unpack("!BBBBIHH4s4s4s4s16s64s128s", data[:BOOTP_FIXED])
    d: dict[str, Any] = {
        "op": op, "htype": htype, "hlen": hlen, "hops": hops, "xid": xid, "secs": secs,
        "flags": flags, "ciaddr": _ip(ciaddr), "yiaddr": _ip(yiaddr), "siaddr": _ip(siaddr),
        "giaddr": _ip(giaddr), "chaddr": mac_str(chaddr[:min(hlen, 16)]),
        "chaddr_pad_nonzero": any(chaddr[min(hlen, 16):]),
        "length": len(data), "cookie": data[BOOTP_FIXED:BOOTP_FIXED + 4] == MAGIC,
    }
    options, facts = parse_tlv(data[BOOTP_FIXED + 4:])
    d["options_facts"] = facts
    overload = _merged(options).get(52, b"\0")[:1]
    ov = overload[0] if overload else 0
    # where each option instance sits: [area, code, length], area "main", "file" or "sname"
    areas = [["main", c, len(h) // 2] for c, h in options]
    # RFC 2131 section 4.1: options field first, then file, then sname.
    if ov & 1:
        more, _ = parse_tlv(file)
        options += more
        areas += [["file", c, len(h) // 2] for c, h in more]
    if ov & 2:
        more, _ = parse_tlv(sname)
        options += more
        areas += [["sname", c, len(h) // 2] for c, h in more]
    d["overload"] = ov
    d["option_areas"] = areas
    d["overloaded"] = [a for a in areas if a[0] != "main"]
    d["sname"] = "" if ov & 2 else _cstr(sname)
    d["file"] = "" if ov & 1 else _cstr(file)
    # bytes after the terminating NUL must be zero: no stale memory on the wire
    d["sname_tail_nonzero"] = not (ov & 2) and _tail_nonzero(sname)
    d["file_tail_nonzero"] = not (ov & 1) and _tail_nonzero(file)
    d["options"] = options
    merged = _merged(options)
    d["option_codes"] = [c for c, _ in options]
    if 53 in merged and merged[53]:
        d["msg_type"] = MSG_NAMES.get(merged[53][0], str(merged[53][0]))
    if 54 in merged and len(merged[54]) == 4:
        d["server_id"] = _ip(merged[54])
    if 60 in merged:
        d["vendor_class"] = merged[60].decode("latin-1")
    if 43 in merged:
        d["pxe"] = decode_pxe(merged[43])
    return d


def decode_frame(frame: bytes, tp_status: int | None = None) -> dict[str, Any]:
    """Ethernet II + IPv4 + UDP + BOOTP -> the BOOTP dict plus the link facts.

    ``tp_status`` (from PACKET_AUXDATA) tells whether the sender's kernel left the UDP
    checksum to offload (veth does): then ``udp_csum_ok`` is None, not False."""
    eth_dst, eth_src, etype = frame[:6], frame[6:12], struct.unpack("!H", frame[12:14])[0]
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    tot_len = struct.unpack("!H", ip[2:4])[0]
    ttl, proto = ip[8], ip[9]
    udp = ip[ihl:tot_len]
    sport, dport, ulen, csum = struct.unpack("!HHHH", udp[:8])
    payload = udp[8:ulen]
    d = decode_bootp(payload)
    d.update({
        "eth_dst": mac_str(eth_dst), "eth_src": mac_str(eth_src), "ethertype": etype,
        "ip_src": _ip(ip[12:16]), "ip_dst": _ip(ip[16:20]), "ip_ttl": ttl, "ip_proto": proto,
        "ip_tos": ip[1], "ip_df": bool(struct.unpack("!H", ip[6:8])[0] & 0x4000),
        "udp_sport": sport, "udp_dport": dport, "udp_len": ulen, "udp_csum": csum,
        "udp_csum_ok": None if tp_status is not None and tp_status & TP_STATUS_CSUMNOTREADY
        else (csum == 0 or _udp_checksum(ip[12:16], ip[16:20], udp[:ulen]) == 0),
    })
    return d


def _csum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _udp_checksum(src: bytes, dst: bytes, udp: bytes) -> int:
    """0 when a received datagram's checksum verifies; the checksum to store otherwise."""
    pseudo = src + dst + struct.pack("!BBH", 0, 17, len(udp))
    return (~_csum16(pseudo + udp)) & 0xFFFF


def build_frame(payload: bytes, *, src_mac: str, dst_mac: str = BROADCAST_MAC,
                src_ip: str = "0.0.0.0", dst_ip: str = "255.255.255.255",
                sport: int = 68, dport: int = 67, ttl: int = 64) -> bytes:
    """Ethernet + IPv4 + UDP around ``payload`` with real checksums (a firmware's frame)."""
    s, d = socket.inet_aton(src_ip), socket.inet_aton(dst_ip)
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = _udp_checksum(s, d, udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", c) + udp[8:]
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, ttl, 17, 0, s, d)
    iph = iph[:10] + struct.pack("!H", (~_csum16(iph)) & 0xFFFF) + iph[12:]
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack("!H", ETH_P_IP) + iph + udp


# --- in-namespace runner ---------------------------------------------------------------
def _sniffer(iface: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.bind((iface, 0))
    s.setblocking(False)
    return s


def _udp_socket(iface: str, src: str, sport: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    s.bind((src, sport))
    s.setblocking(False)
    return s


def _bootreply_xid(frame: bytes) -> int | None:
    """xid of a received IPv4/UDP BOOTREPLY frame, else None (cheap pre-filter)."""
    if len(frame) < 14 + 20 + 8 + BOOTP_FIXED or frame[12:14] != b"\x08\x00":
        return None
    ihl = (frame[14] & 0x0F) * 4
    if frame[14 + 9] != 17:
        return None
    bootp = frame[14 + ihl + 8:]
    if len(bootp) < 8 or bootp[0] != BOOTREPLY:
        return None
    return struct.unpack("!I", bootp[4:8])[0]


def run_step(step: dict[str, Any], iface: str, mac: str) -> dict[str, Any]:
    """Send one step's packet(s), capture the BOOTREPLYs with its xid."""
    payload = bytes.fromhex(step["payload"])
    xid = struct.unpack("!I", payload[4:8])[0]
    mode = step.get("mode", "raw")
    count = max(1, min(int(step.get("count", 1)), 10))
    interval = min(float(step.get("interval", 0.5)), 5.0)
    wait = min(float(step.get("wait", 1.0)), 10.0)
    expect = step.get("expect")  # stop this long after the expected number arrived
    linger = min(float(step.get("linger", 0.1)), 2.0)
    sniff = _sniffer(iface)
    sock = None
    if mode == "raw":
        raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        raw.bind((iface, 0))
        frame = build_frame(payload, src_mac=mac, dst_mac=step.get("eth_dst", BROADCAST_MAC),
                            src_ip=step.get("src", "0.0.0.0"), dst_ip=step.get("dst", "255.255.255.255"),
                            sport=step.get("sport", 68), dport=step.get("dport", 67))
        send = lambda: raw.send(frame)  # noqa: E731
    else:
        sock = _udp_socket(iface, step.get("src", "0.0.0.0"), step.get("sport", 68))
        dst = (step["dst"], step.get("dport", 67))
        send = lambda: sock.sendto(payload, dst)  # noqa: E731
    replies: list[dict[str, Any]] = []
    t0 = time.monotonic()
    deadline = t0 + wait
    sent = 0
    next_send = t0
    stop_at = None
    while True:
        now = time.monotonic()
        if sent < count and now >= next_send and stop_at is None:
            send()
            sent += 1
            next_send = now + interval
        end = deadline if stop_at is None else min(deadline, stop_at)
        if now >= end:
            break
        limit = min(end, next_send) if sent < count and stop_at is None else end
        r, _, _ = select.select([sniff] + ([sock] if sock else []), [], [], max(0.0, limit - now))
        if sock in r:
            try:
                sock.recv(65535)  # the sniffer has the copy with headers; just drain
            except OSError:
                pass
        if sniff in r:
            while True:
                try:
                    frame, anc, _flags, addr = sniff.recvmsg(65535, socket.CMSG_SPACE(32))
                except BlockingIOError:
                    break
                if addr[2] == PACKET_OUTGOING or _bootreply_xid(frame) != xid:
                    continue
                status = None
                for lvl, typ, data in anc:
                    if lvl == SOL_PACKET and typ == PACKET_AUXDATA and len(data) >= 4:
                        status = struct.unpack("=I", data[:4])[0]
                replies.append({"t": round(time.monotonic() - t0, 4), "frame": frame.hex(), "status": status})
                if expect is not None and len(replies) >= expect and stop_at is None:
                    stop_at = time.monotonic() + linger
    sniff.close()
    if sock:
        sock.close()
    return {"sent": sent, "replies": replies}


def tftp_get(server: str, filename: str, *, blksize: int | None = None, port: int = 69,
             timeout: float = 1.0, retries: int = 5, max_bytes: int = 1 << 28) -> dict[str, Any]:
    """A minimal lock-step TFTP RRQ (octet mode, RFC 1350/2347/2348) for NBP fetches."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    req = b"\0\1" + filename.encode() + b"\0octet\0"
    if blksize:
        req += b"blksize\0" + str(blksize).encode() + b"\0"
    size = 512
    data = bytearray()
    expected = 1
    peer = None
    pkt = req
    dest = (server, port)
    tries = 0
    oack: dict[str, str] = {}
    while True:
        s.sendto(pkt, dest)
        try:
            resp, addr = s.recvfrom(65536)
        except socket.timeout:
            tries += 1
            if tries > retries:
                return {"ok": False, "error": "timeout", "bytes": len(data)}
            continue
        if peer is None:
            peer = addr
            dest = addr
        elif addr != peer:
            continue
        tries = 0
        opcode = struct.unpack("!H", resp[:2])[0]
        if opcode == 5:
            code = struct.unpack("!H", resp[2:4])[0]
            return {"ok": False, "error_code": code, "error": _cstr(resp[4:]), "oack": oack}
        if opcode == 6:
            parts = resp[2:].split(b"\0")
            oack = {parts[i].decode().lower(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2)}
            size = int(oack.get("blksize", size))
            pkt = b"\0\4\0\0"
            continue
        if opcode == 3:
            block = struct.unpack("!H", resp[2:4])[0]
            if block == expected & 0xFFFF:
                data += resp[4:]
                expected += 1
                if len(data) > max_bytes:
                    return {"ok": False, "error": "too big"}
            pkt = b"\0\4" + resp[2:4]
            if len(resp) - 4 < size and block == (expected - 1) & 0xFFFF:
                s.sendto(pkt, dest)
                return {"ok": True, "size": len(data), "crc32": zlib.crc32(data), "data": data.hex()
                        if len(data) <= 65536 else None, "oack": oack}


def main_spec(spec: dict[str, Any]) -> dict[str, Any]:
    iface = spec.get("iface", "eth0")
    mac = spec["mac"]
    out = []
    for step in spec["steps"][:MAX_STEPS]:
        if step.get("kind") == "tftp":
            out.append(tftp_get(step["server"], step["file"], blksize=step.get("blksize")))
        else:
            out.append(run_step(step, iface, mac))
    return {"steps": out}


# --- test-process side: drive the in-namespace runner ---------------------------------
@dataclass
class Exchange:
    """One sent request and every reply seen for its xid, decoded."""

    sent: dict[str, Any]
    replies: list[dict[str, Any]]
    step: dict[str, Any]

    @property
    def reply(self) -> dict[str, Any]:
        """The single reply; fails loudly if there were none or several."""
        assert len(self.replies) == 1, f"expected exactly one reply, got {len(self.replies)}: {self.replies}"
        return self.replies[0]

    def by_server(self, ip: str) -> list[dict[str, Any]]:
        return [r for r in self.replies if r.get("ip_src") == ip]


class Client:
    """A simulated PXE client living in namespace ``ns``; every call runs the
    simulator there once (a fresh process: nothing leaks between scenarios)."""

    def __init__(self, ns: str, *, mac: str, iface: str = "eth0", server: str = "10.213.0.1",
                 addr: str = "10.213.0.50", relay: str = "10.213.0.254", timeout: float = 20.0):
        self.ns, self.mac, self.iface = ns, mac, iface
        self.server, self.addr, self.relay = server, addr, relay
        self.timeout = timeout
        self._xid = 0x42530000 + (zlib.crc32(mac.encode()) & 0xFF00)
        self._pending: list[Exchange] | None = None

    def next_xid(self) -> int:
        self._xid += 1
        return self._xid

    def profile(self, arch: int = 0, **kw: Any) -> ClientProfile:
        return ClientProfile(arch=arch, mac=self.mac, **kw)

    def run(self, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
        spec = {"iface": self.iface, "mac": self.mac, "steps": steps}
        cp = subprocess.run(["ip", "netns", "exec", self.ns, sys.executable, os.path.abspath(__file__), "--spec", "-"],
                            input=json.dumps(spec), capture_output=True, text=True, timeout=self.timeout)
        if cp.returncode != 0:
            raise RuntimeError(f"simulator failed ({cp.returncode}): {cp.stderr}")
        return json.loads(cp.stdout)["steps"]

    def exchange(self, payload: bytes, **step: Any) -> Exchange:
        """Send ``payload`` as described by ``step`` (see :func:`run_step`).  Inside
        :meth:`batch` the Exchange is returned empty and filled when the batch ends."""
        step = {"payload": payload.hex(), **step}
        ex = Exchange(sent=decode_bootp(payload), replies=[], step=step)
        if self._pending is not None:
            self._pending.append(ex)
        else:
            self._fill([ex], self.run([step]))
        return ex

    @staticmethod
    def _fill(exchanges: list[Exchange], results: list[dict[str, Any]]) -> None:
        for ex, res in zip(exchanges, results):
            ex.replies[:] = [decode_frame(bytes.fromhex(r["frame"]), r.get("status")) | {"t": r["t"]}
                             for r in res["replies"]]

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Collect the exchanges made in the block and run them in one simulator process
        (saves the ~0.15 s interpreter start per packet)::

            with client.batch():
                a = client.discover(0); b = client.discover(7)
            a.reply, b.reply  # filled here
        """
        if self._pending is not None:
            raise RuntimeError("batches do not nest")
        self._pending = []
        try:
            yield
            pending = self._pending
        finally:
            self._pending = None
        for i in range(0, len(pending), MAX_STEPS):
            chunk = pending[i:i + MAX_STEPS]
            self._fill(chunk, self.run([ex.step for ex in chunk]))

    # the usual moves -------------------------------------------------------------------
    def discover(self, arch: int = 0, *, relay: bool = False, xid: int | None = None, expect: int | None = 1,
                 wait: float = 1.0, flags: int = 0, profile: ClientProfile | None = None, **kw: Any) -> Exchange:
        """DHCPDISCOVER broadcast from 0.0.0.0:68, or relayed (giaddr=relay, from relay:67
        unicast to the server's :67).  ``kw`` goes to :class:`ClientProfile`."""
        prof = profile or self.profile(arch, **kw)
        xid = xid if xid is not None else self.next_xid()
        if relay:
            pkt = discover(prof, xid=xid, flags=flags, giaddr=self.relay, hops=1)
            return self.exchange(pkt, mode="udp", src=self.relay, sport=67, dst=self.server, dport=67,
                                 expect=expect, wait=wait)
        return self.exchange(discover(prof, xid=xid, flags=flags), mode="raw", expect=expect, wait=wait)

    def request_4011(self, arch: int = 7, *, sport: int = 4011, xid: int | None = None,
                     item: tuple[int, int] | None = None, expect: int | None = 1, wait: float = 1.0,
                     profile: ClientProfile | None = None, msg_type: int = DHCPREQUEST, **kw: Any) -> Exchange:
        """The unicast request to the proxy's port 4011 with ciaddr set, from ``sport``
        (4011 like OVMF, 68 like iPXE); ``item`` adds option 43 sub-option 71."""
        prof = profile or self.profile(arch, **kw)
        xid = xid if xid is not None else self.next_xid()
        pkt = request(prof, xid=xid, ciaddr=self.addr, item=item, msg_type=msg_type)
        return self.exchange(pkt, mode="udp", src=self.addr, sport=sport, dst=self.server, dport=4011,
                             expect=expect, wait=wait)

    def boot_server_request(self, item: tuple[int, int], arch: int = 0, *, broadcast: bool = True,
                            xid: int | None = None, expect: int | None = 1, wait: float = 1.0,
                            profile: ClientProfile | None = None, **kw: Any) -> Exchange:
        """PXE 2.1 boot-server discovery: DHCPREQUEST with 43/71 from ciaddr:68, broadcast
        to :67 or unicast to the server's :4011."""
        prof = profile or self.profile(arch, **kw)
        xid = xid if xid is not None else self.next_xid()
        pkt = request(prof, xid=xid, ciaddr=self.addr, item=item)
        if broadcast:
            return self.exchange(pkt, mode="udp", src=self.addr, sport=68, dst="255.255.255.255", dport=67,
                                 expect=expect, wait=wait)
        return self.exchange(pkt, mode="udp", src=self.addr, sport=68, dst=self.server, dport=4011,
                             expect=expect, wait=wait)

    def select(self, offer: dict[str, Any], arch: int = 0, *, xid: int, expect: int | None = 1,
               wait: float = 1.0, **kw: Any) -> Exchange:
        """SELECTING-state DHCPREQUEST for an ordinary server's offer (broadcast, 50 + 54)."""
        pkt = request(self.profile(arch, **kw), xid=xid, requested_ip=offer["yiaddr"],
                      server_id=offer["server_id"])
        return self.exchange(pkt, mode="raw", expect=expect, wait=wait)

    def tftp(self, server: str, filename: str, blksize: int | None = None) -> dict[str, Any]:
        res = self.run([{"kind": "tftp", "server": server, "file": filename, "blksize": blksize}])[0]
        if res.get("data") is not None:
            res["data"] = bytes.fromhex(res["data"])
        return res


def _cli(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", help="JSON spec file ('-' = stdin): the harness's mode")
    ap.add_argument("what", nargs="?", choices=["discover"], help="by hand: send one DISCOVER")
    ap.add_argument("--arch", type=int, default=0)
    ap.add_argument("--ipxe", action="store_true")
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--mac", default=None)
    ap.add_argument("--wait", type=float, default=1.0)
    a = ap.parse_args(argv)
    if a.spec:
        spec = json.load(sys.stdin if a.spec == "-" else open(a.spec))
        json.dump(main_spec(spec), sys.stdout)
        return 0
    if a.what == "discover":
        mac = a.mac or open(f"/sys/class/net/{a.iface}/address").read().strip()
        pkt = discover(ClientProfile(arch=a.arch, mac=mac, ipxe=a.ipxe), xid=0x1234ABCD)
        res = run_step({"payload": pkt.hex(), "wait": a.wait}, a.iface, mac)
        for r in res["replies"]:
            json.dump(decode_frame(bytes.fromhex(r["frame"]), r["status"]), sys.stdout, indent=1)
            print()
        return 0
    ap.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
