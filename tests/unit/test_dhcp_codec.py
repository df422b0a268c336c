"""DHCP/BOOTP codec of the native module: parse, build, PXE sub-options.

RFC 2131 (BOOTP header, magic cookie), RFC 2132 (options, overload 52, option 43),
RFC 3396 (long options split over instances), RFC 3004 (user class), RFC 4578 (93, 94,
97), PXE 2.1 (sub-option 71).  Packets are built here with struct, independently of
the codec under test.
"""
from __future__ import annotations

import random
import socket
import struct

import pytest

from bootstorm import udp
from bootstorm._native import dhcp
from bootstorm.errors import DhcpError

MAGIC = b"\x63\x82\x53\x63"
MAC = bytes.fromhex("525400123456")
UUID = b"\x00" + bytes(range(16))


def tlv(options) -> bytes:
    return b"".join(bytes((c, len(v))) + v for c, v in options)


def bootp(*, op=1, htype=1, hlen=6, hops=0, xid=0x11223344, secs=7, flags=0, ciaddr=b"\0" * 4,
          yiaddr=b"\0" * 4, siaddr=b"\0" * 4, giaddr=b"\0" * 4, chaddr=MAC, sname=b"", file=b"",
          options=(), raw=None, end=True, pad_to=300) -> bytes:
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, htype, hlen, hops, xid, secs, flags, ciaddr,
                      yiaddr, siaddr, giaddr, chaddr.ljust(16, b"\0"), sname, file)
    body = raw if raw is not None else tlv(options) + (b"\xff" if end else b"")
    return (hdr + MAGIC + body).ljust(pad_to, b"\0")


PXE_DISCOVER = [(53, b"\x01"), (57, b"\x05\xc0"), (55, bytes([1, 3, 43, 60, 66, 67])), (97, UUID),
                (94, b"\x01\x03\x10"), (93, b"\x00\x07"), (60, b"PXEClient:Arch:00007:UNDI:003000")]


# ---------------------------------------------------------------- parse: valid
def test_parse_pxe_discover_every_field():
    p = dhcp.parse(bootp(hops=2, secs=4, flags=0x8000, giaddr=bytes([10, 0, 0, 1]), options=PXE_DISCOVER))
    assert (p.op, p.htype, p.hlen, p.hops, p.xid, p.secs, p.flags) == (1, 1, 6, 2, 0x11223344, 4, 0x8000)
    assert p.giaddr == bytes([10, 0, 0, 1]) and p.ciaddr == p.yiaddr == p.siaddr == b"\0" * 4
    assert p.mac == MAC and p.chaddr == MAC.ljust(16, b"\0")
    assert p.order == [53, 57, 55, 97, 94, 93, 60]
    assert p.message_type == 1 and p.arch == 7 and p.uuid == UUID
    assert p.vendor_class == "PXEClient:Arch:00007:UNDI:003000"
    assert p.options[94] == b"\x01\x03\x10" and p.options[57] == b"\x05\xc0"
    assert p.user_classes == [] and p.boot_item is None and p.pxe_suboptions == {}
    assert p.sname == b"" and p.file == b""


def test_parse_strings_stop_at_nul_and_pads_are_skipped():
    p = dhcp.parse(bootp(sname=b"srv\0junk", file=b"pxelinux.0\0old", raw=b"\0\0\x35\x01\x03\0\xff"))
    assert p.sname == b"srv" and p.file == b"pxelinux.0" and p.message_type == 3 and p.order == [53]


def test_parse_without_end_and_without_options():
    assert dhcp.parse(bootp(options=[(53, b"\x01")], end=False, pad_to=0)).message_type == 1
    p = dhcp.parse(bootp(raw=b"", pad_to=0))
    assert p.options == {} and p.message_type == 0 and p.arch == -1


@pytest.mark.parametrize("value,arch", [(b"\x00\x00", 0), (b"\x00\x10", 16), (b"\x00\x0b\x00\x07", 11),
                                        (b"\x01\x00", 256), (b"\x07", -1), (b"", -1)])
def test_arch_first_listed(value, arch):
    assert dhcp.parse(bootp(options=[(93, value)])).arch == arch


def test_rfc3396_long_option_split_and_concatenated():
    long = bytes(range(256)) * 2  # 512 bytes: three instances
    parts = [long[:255], long[255:510], long[510:]]
    p = dhcp.parse(bootp(options=[(53, b"\x01"), (224, parts[0]), (60, b"PXE"), (224, parts[1]),
                                  (224, parts[2]), (60, b"Client")], pad_to=0))
    assert p.options[224] == long and p.options[60] == b"PXEClient"
    assert p.order == [53, 224, 60]  # first appearance


@pytest.mark.parametrize("overload,in_file,in_sname", [(1, True, False), (2, False, True), (3, True, True)])
def test_overload_into_file_and_sname(overload, in_file, in_sname):
    file_opts = tlv([(67, b"boot.efi"), (60, b"Client")]) + b"\xff"
    sname_opts = tlv([(66, b"10.0.0.1"), (60, b":Arch")]) + b"\xff"
    p = dhcp.parse(bootp(file=file_opts if in_file else b"plain.file",
                         sname=sname_opts if in_sname else b"plain-sname",
                         options=[(53, b"\x01"), (52, bytes((overload,))), (60, b"PXE")]))
    # RFC 2131 4.1: options field, then file, then sname; split values concatenated
    want60 = b"PXE" + (b"Client" if in_file else b"") + (b":Arch" if in_sname else b"")
    assert p.options[60] == want60
    assert (67 in p.options) == in_file and (66 in p.options) == in_sname
    assert p.file == (b"" if in_file else b"plain.file")
    assert p.sname == (b"" if in_sname else b"plain-sname")


def test_overload_zero_and_empty_value_mean_nothing():
    for v in (b"\x00", b""):
        p = dhcp.parse(bootp(file=b"\x0c\xff", options=[(52, v)]))  # file is not options
        assert p.file == b"\x0c\xff" and 12 not in p.options


@pytest.mark.parametrize("raw,classes", [
    (b"iPXE", ["iPXE"]),  # iPXE sends the bare string
    (b"\x04iPXE", ["iPXE"]),  # RFC 3004: length-prefixed list
    (b"\x04iPXE\x05gPXE1", ["iPXE", "gPXE1"]),
    (b"\x03abc\x09x", ["\x03abc\tx"]),  # not a valid list: the whole option as one string
    (b"\x00iPXE", ["\x00iPXE"]),  # a zero length is no RFC 3004 list
    (b"", []),
])
def test_user_class_forms(raw, classes):
    assert dhcp.parse(bootp(options=[(77, raw)])).user_classes == classes


def test_boot_item_from_option_43():
    p = dhcp.parse(bootp(options=[(53, b"\x03"), (43, tlv([(71, b"\x80\x01\x00\x02")]) + b"\xff")]))
    assert p.boot_item == (0x8001, 2) and p.pxe_suboptions == {71: b"\x80\x01\x00\x02"}
    short = dhcp.parse(bootp(options=[(43, tlv([(71, b"\x80\x01")]) + b"\xff")]))
    assert short.boot_item is None
    assert dhcp.parse(bootp(options=[(43, tlv([(6, b"\x03")]) + b"\xff")])).boot_item is None


def test_ipxe_option_175_kept_raw():
    enc = tlv([(0x10, b"\x02"), (0x13, b"\x01"), (0xEB, b"\x01\x15\x00")])
    assert dhcp.parse(bootp(options=[(175, enc)])).options[175] == enc


# ---------------------------------------------------------------- parse: malformed
MALFORMED = {
    "empty": b"",
    "one-byte": b"\x01",
    "header-only": bootp(pad_to=0)[:236],
    "short-239": bootp()[:239],
    "bad-cookie": bootp()[:236] + b"\x63\x82\x53\x64" + bootp()[240:],
    "zero-cookie": bootp()[:236] + b"\0\0\0\0" + bootp()[240:],
    "hlen-17": bootp(hlen=17),
    "hlen-255": bootp(hlen=255),
    "option-past-end": bootp(raw=b"\x35\x01\x01\x3c\xc8PXEClient", pad_to=0),
    "option-code-without-length": bootp(raw=b"\x35\x01\x01\x3c", pad_to=0),
    "option-length-one-too-many": bootp(raw=b"\x3c\x04abc", pad_to=0),
    "overload-file-garbage": bootp(file=b"\x0c\xfa" + b"x" * 126, options=[(52, b"\x01")]),
    "overload-sname-garbage": bootp(sname=b"\x0c\x40" + b"x" * 62, options=[(52, b"\x02")]),
    "overload-file-cut-header": bootp(file=b"\x01" * 127 + b"\x0c", options=[(52, b"\x01")]),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_raises_dhcp_error(name):
    with pytest.raises(DhcpError):
        dhcp.parse(MALFORMED[name])


def test_dhcp_error_is_a_value_error():
    assert issubclass(DhcpError, ValueError)


def test_fuzz_only_dhcp_error():
    """Random mutations of a good packet: parse returns a Packet or raises DhcpError, nothing else."""
    rng = random.Random(4578)
    good = bootp(options=PXE_DISCOVER + [(77, b"iPXE"), (43, tlv([(71, b"\x80\x00\x00\x00")]) + b"\xff")])
    outcomes = {"ok": 0, "error": 0}
    for _ in range(3000):
        b = bytearray(good)
        for _ in range(rng.randrange(1, 8)):
            b[rng.randrange(236, len(b)) if rng.random() < 0.8 else rng.randrange(len(b))] = rng.randrange(256)
        if rng.random() < 0.3:
            del b[rng.randrange(240, len(b)):]
        try:
            p = dhcp.parse(bytes(b))
            p.arch, p.user_classes, p.vendor_class, p.message_type, p.uuid
            try:
                p.boot_item
            except DhcpError:
                pass  # a malformed option 43 is found when it is read
            outcomes["ok"] += 1
        except DhcpError:
            outcomes["error"] += 1
    assert outcomes["ok"] and outcomes["error"]


# ---------------------------------------------------------------- sub-options
def test_suboptions_parse():
    items = [(6, b"\x03"), (8, b"\x80\x00\x01\x0a\x00\x00\x01"), (9, b"\x80\x00\x04Boot"), (10, b"\x05Go")]
    assert dhcp.parse_suboptions(tlv(items) + b"\xff") == dict(items)
    assert dhcp.parse_suboptions(b"\xff") == {} and dhcp.parse_suboptions(b"") == {}


def test_suboptions_errors():
    with pytest.raises(DhcpError):
        dhcp.parse_suboptions(b"\x47\x04\x80")
    with pytest.raises(DhcpError):
        dhcp.parse_suboptions(b"\x06")


# ---------------------------------------------------------------- build
def test_build_reply_round_trip():
    req = dhcp.parse(bootp(hops=1, secs=9, flags=0, giaddr=bytes([10, 9, 8, 7]), options=PXE_DISCOVER))
    srv = bytes([10, 213, 0, 1])
    opt43 = b"\x06\x01\x08\xff"  # discovery control 8, END
    out = dhcp.build(req, 2, ciaddr=b"\0" * 4, yiaddr=b"\0" * 4, siaddr=srv, flags=0x8000, sname=b"10.213.0.1",
                     file=b"pxelinux.0", options=[(53, b"\x02"), (54, srv), (60, b"PXEClient"), (97, UUID), (43, opt43)])
    assert len(out) == 300 and out[236:240] == MAGIC
    r = dhcp.parse(out)
    assert (r.op, r.htype, r.hlen, r.hops, r.xid, r.secs, r.flags) == (2, 1, 6, 1, 0x11223344, 9, 0x8000)
    assert (r.siaddr, r.giaddr, r.chaddr, r.sname, r.file) == (srv, req.giaddr, req.chaddr, b"10.213.0.1", b"pxelinux.0")
    assert r.order == [53, 54, 60, 97, 43] and r.options[43] == opt43 and r.options[97] == UUID
    end = 240 + sum(2 + len(v) for v in (b"\x02", srv, b"PXEClient", UUID, opt43))
    assert out[end] == 255 and not any(out[end + 1:])  # END, then zero padding only


def test_build_flags_default_to_the_request_and_long_options_split():
    req = dhcp.parse(bootp(flags=0x8000, options=PXE_DISCOVER))
    big = bytes(600)
    out = dhcp.build(req, 2, options=[(53, b"\x05"), (224, big), (12, b"")])
    assert struct.unpack("!H", out[10:12])[0] == 0x8000 and len(out) > 300
    # RFC 3396: 255 + 255 + 90, each its own instance; an empty option is kept
    i = 240 + 3
    lens = []
    while out[i] == 224:
        lens.append(out[i + 1])
        i += 2 + out[i + 1]
    assert lens == [255, 255, 90] and out[i:i + 3] == b"\x0c\x00\xff"
    r = dhcp.parse(out)
    assert r.options[224] == big and r.options[12] == b""


def test_build_refuses_fields_that_do_not_fit():
    req = dhcp.parse(bootp(options=PXE_DISCOVER))
    with pytest.raises(ValueError):
        dhcp.build(req, 2, file=b"x" * 128)  # 127 bytes at most: always NUL-terminated
    with pytest.raises(ValueError):
        dhcp.build(req, 2, sname=b"x" * 64)
    assert dhcp.parse(dhcp.build(req, 2, file=b"x" * 127)).file == b"x" * 127


# -- build: the client's maximum message size (option 57) and option overload (52)
# Expected layouts were taken from dnsmasq 2.90's replies on the wire to the same options
# (tests/pxe/test_differential.py, scenario max-size, pins them there too).

def request_with_max(value: bytes | None):
    opts = [(53, b"\x01")] + ([(57, value)] if value is not None else [])
    return dhcp.parse(bootp(options=opts))


@pytest.mark.parametrize("value,size", [
    (None, 548), (b"\x02\x40", 548), (b"\x02\x58", 572), (b"\x05\xc0", 1444), (b"\x00\x1c", 548),
    (b"\x40\x1b", 16383), (b"\x40\x1c", 16384), (b"\xff\xff", 16384), (b"\x02\x58\x00", 572),
    (b"\x02", 548),  # dnsmasq reads option 57 only with 2 bytes or more
    (b"\x00\x14", 548),  # beyond dnsmasq: below 28 its unsigned subtraction wraps to 16384
])
def test_max_message_size_as_dnsmasq_clamps_it(value, size):
    assert request_with_max(value).max_message_size == size


def areas(out: bytes) -> dict:
    """Where each option sits: [(code, length)] for the options field, `file` and `sname`
    (read only when option 52 names them), and option 52's value."""
    def walk(b):
        i, got = 0, []
        while b[i] != 255:
            got.append((b[i], b[i + 2:i + 2 + b[i + 1]]))
            i += 2 + b[i + 1]
        return got

    def sizes(opts):
        return [(c, len(v)) for c, v in opts]
    main = walk(out[240:])
    ov = dict(main).get(52, b"\0")[0]
    return {"main": sizes(main), "file": sizes(walk(out[108:236])) if ov & 1 else out[108:236].rstrip(b"\0"),
            "sname": sizes(walk(out[44:108])) if ov & 2 else out[44:108].rstrip(b"\0"), "ov": ov}


# a PXE offer whose option 43 dnsmasq split in six: 240 + 110 + 220 + 50 + 255 + 20 bytes
HEAD = [(53, b"\x02"), (54, bytes([10, 213, 0, 1])), (60, b"PXEClient"), (97, UUID)]
SIX = [(43, bytes([i]) * n) for i, n in enumerate((240, 110, 220, 50, 255, 20))]


def test_no_option_57_overflow_goes_to_file_then_sname_then_back_to_the_field():
    dropped = []
    out = dhcp.build(request_with_max(None), 2, options=HEAD + SIX, dropped=dropped)
    assert len(out) == 547  # END at 546: within 548
    assert areas(out) == {"main": [(53, 1), (54, 4), (60, 9), (97, 17), (43, 240), (52, 1), (43, 20)],
                          "file": [(43, 110)], "sname": [(43, 50)], "ov": 3}
    assert dropped == [43, 43]  # the 220 and 255 bytes fit nowhere
    r = dhcp.parse(out)  # RFC 2131 4.1 order: the options field, then file, then sname
    assert r.options[43] == SIX[0][1] + SIX[5][1] + SIX[1][1] + SIX[3][1]
    assert r.file == r.sname == b""


def test_a_bigger_option_57_moves_the_layout():
    out = dhcp.build(request_with_max(struct.pack("!H", 620)), 2, options=HEAD + SIX)  # 592 bytes
    assert len(out) == 577
    assert areas(out) == {"main": [(53, 1), (54, 4), (60, 9), (97, 17), (43, 240), (52, 1), (43, 50)],
                          "file": [(43, 110)], "sname": [(43, 20)], "ov": 3}
    whole = dhcp.build(request_with_max(b"\x05\xc0"), 2, options=HEAD + SIX)
    assert len(whole) == 1187 and areas(whole)["ov"] == 0 and len(areas(whole)["main"]) == 10


def test_a_boot_file_leaves_only_sname_and_the_spare_byte_decides():
    dropped = []
    last = [(43, b"\x05" * 21)]  # one byte more than SIX's last: the field would end at 548
    out = dhcp.build(request_with_max(None), 2, file=b"http://10.213.0.1/boot.ipxe",
                     options=HEAD + SIX[:5] + last, dropped=dropped)
    assert len(out) == 525
    assert areas(out) == {"main": [(53, 1), (54, 4), (60, 9), (97, 17), (43, 240), (52, 1)],
                          "file": b"http://10.213.0.1/boot.ipxe", "sname": [(43, 50)], "ov": 2}
    assert dropped == [43, 43, 43, 43]


def test_the_field_holds_the_options_end_and_one_spare_byte():
    # 240 + 3 + 257 + 2 + m + END: m = 44 ends at 547 and fits; m = 45 would end at 548
    opts = [(53, b"\x02"), (224, bytes(255))]
    out = dhcp.build(request_with_max(None), 2, options=opts + [(225, b"a" * 44)])
    assert len(out) == 547 and areas(out)["ov"] == 0
    out = dhcp.build(request_with_max(None), 2, options=opts + [(225, b"a" * 45)])
    assert len(out) == 504 and out[500:504] == b"\x34\x01\x01\xff"
    assert out[108:108 + 48] == b"\xe1\x2d" + b"a" * 45 + b"\xff" and not any(out[44:108])
    assert dhcp.parse(out).options[225] == b"a" * 45


def test_overload_into_sname_alone_when_file_holds_a_name():
    out = dhcp.build(request_with_max(None), 2, file=b"pxelinux.0",
                     options=[(53, b"\x02"), (224, bytes(255)), (225, b"b" * 45)])
    assert areas(out) == {"main": [(53, 1), (224, 255), (52, 1)], "file": b"pxelinux.0",
                          "sname": [(225, 45)], "ov": 2}
    r = dhcp.parse(out)
    assert r.options[225] == b"b" * 45 and r.sname == b"" and r.file == b"pxelinux.0"


def test_no_overload_when_file_and_sname_are_taken():
    dropped = []
    out = dhcp.build(request_with_max(None), 2, file=b"pxelinux.0", sname=b"boot-server",
                     options=[(53, b"\x02"), (224, bytes(255)), (225, b"c" * 45), (226, b"d" * 30)],
                     dropped=dropped)
    assert areas(out) == {"main": [(53, 1), (224, 255), (226, 30)], "file": b"pxelinux.0",
                          "sname": b"boot-server", "ov": 0}
    assert dropped == [225] and len(out) == 533


def test_option_52_itself_never_takes_the_reply_past_the_limit():
    # beyond dnsmasq: the field ends at 546 when the next option overflows; dnsmasq writes
    # option 52 at 546..548 and sends 550 bytes (the last ones stale memory); here it is left out
    dropped = []
    opts = HEAD + [(43, bytes(240)), (43, bytes(23)), (43, bytes(241))]
    out = dhcp.build(request_with_max(None), 2, options=opts, dropped=dropped)
    assert len(out) == 547 and areas(out)["ov"] == 0 and dropped == [43]
    out = dhcp.build(request_with_max(None), 2, options=HEAD + [(43, bytes(240)), (43, bytes(21)), (43, bytes(241))])
    assert len(out) == 548 and areas(out)["ov"] == 3  # 544 + 52's three bytes + END: exactly the limit


def test_overflow_without_dropped_list_and_short_replies_still_padded():
    out = dhcp.build(request_with_max(None), 2, file=b"f", sname=b"s", options=[(224, bytes(255))] * 3)
    assert len(out) == 498 and areas(out)["main"] == [(224, 255)]
    out = dhcp.build(request_with_max(None), 2, options=[(53, b"\x02")])
    assert len(out) == 300


# -- Receiver: the datagrams waiting on a socket, by one recvmmsg

@pytest.fixture
def udp_pair():
    server = udp.listening_socket("127.0.0.1", 0)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    yield server, client
    server.close()
    client.close()


def test_receiver_returns_each_datagram_with_source_interface_and_local_address(udp_pair):
    server, client = udp_pair
    r = dhcp.Receiver(server.fileno())
    sent = [bytes([i]) * (100 + i) for i in range(3)]
    for d in sent:
        client.sendto(d, server.getsockname())
    got = r.receive()
    assert [g[0] for g in got] == sent
    assert {g[1] for g in got} == {client.getsockname()}
    assert {g[2] for g in got} == {socket.if_nametoindex("lo")}
    assert {g[3] for g in got} == {socket.inet_aton("127.0.0.1")}
    assert r.receive() == []  # nothing waits: no exception


def test_receiver_takes_at_most_its_slots_and_cuts_long_datagrams(udp_pair):
    server, client = udp_pair
    r = dhcp.Receiver(server.fileno(), 2, 64)
    for i in range(5):
        client.sendto(bytes([i]) * 100, server.getsockname())
    batches = [r.receive() for _ in range(4)]
    assert [len(b) for b in batches] == [2, 2, 1, 0]
    assert [g[0] for b in batches for g in b] == [bytes([i]) * 64 for i in range(5)]


def test_receiver_without_pktinfo_and_on_a_bad_descriptor():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.sendto(b"x", s.getsockname())
    r = dhcp.Receiver(s.fileno())
    [(data, _src, ifindex, local)] = r.receive()
    assert (data, ifindex, local) == (b"x", 0, b"\0\0\0\0")
    s.close()
    with pytest.raises(OSError):
        r.receive()
    with pytest.raises(ValueError):
        dhcp.Receiver(0, 0)
