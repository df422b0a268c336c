"""Boot policy decisions without a network: Policy.answer for each arch, tag, rule and port.

The expected answers are dnsmasq 2.90's in proxy mode (src/rfc2131.c), checked on the
wire by tests/pxe/test_differential.py; here each rule is pinned on its own.
"""
from __future__ import annotations

import struct

import pytest

from bootstorm._native import dhcp
from bootstorm.config import (BootFile, DhcpConfig, DhcpOption, ProxyRange, PxePrompt, PxeService, ReplyDelay,
                              TagRule, VendorOption)
from bootstorm.policy import Policy

MAGIC = b"\x63\x82\x53\x63"
MAC = bytes.fromhex("525400123456")
UUID = b"\x00" + bytes(range(16))
LOCAL = bytes([10, 213, 0, 1])
MASK = bytes([255, 255, 255, 0])
CLI = bytes([10, 213, 0, 50])
ZERO = b"\0" * 4
DISCOVER, REQUEST, INFORM = 1, 3, 8
RANGE = [ProxyRange(network="10.213.0.0")]


def packet(arch=0, *, mtype=DISCOVER, vendor=None, user_class=None, opt175=False, mac=MAC, ciaddr=ZERO,
           giaddr=ZERO, item=None, uuid=UUID, op=1, flags=0, max_size=None, extra=()):
    vendor = vendor if vendor is not None else f"PXEClient:Arch:{arch:05d}:UNDI:003000"
    opts = [(53, bytes((mtype,))), (93, struct.pack("!H", arch)), (60, vendor.encode())]
    if max_size is not None:
        opts.append((57, struct.pack("!H", max_size)))
    if uuid is not None:
        opts.append((97, uuid))
    if user_class is not None:
        opts.append((77, user_class))
    if opt175:
        opts.append((175, b"\x10\x01\x02"))
    if item is not None:
        opts.append((43, bytes((71, 4)) + struct.pack("!HH", *item) + b"\xff"))
    opts += extra
    body = b"".join(bytes((c, len(v))) + v for c, v in opts) + b"\xff"
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, 42, 0, flags, ciaddr, ZERO, ZERO, giaddr,
                      mac.ljust(16, b"\0"), b"", b"")
    return dhcp.parse(hdr + MAGIC + body)


def answer(cfg: DhcpConfig, pkt, pxe_port=False, local=LOCAL):
    return Policy(cfg).answer(pkt, on_pxe_port=pxe_port, local=local, local_netmask=MASK)


def opts(a) -> dict[int, bytes]:
    return dict(a.options)


def subs(a) -> list[tuple[int, bytes]]:
    raw, out, i = opts(a)[43], [], 0
    while raw[i] != 255:
        out.append((raw[i], raw[i + 2:i + 2 + raw[i + 1]]))
        i += 2 + raw[i + 1]
    return out


MENU = DhcpConfig(ranges=RANGE, prompts=[PxePrompt(text="Press F8", timeout=5)], services=[
    PxeService(arch="x86PC", menu="Network Boot", file="pxelinux"),
    PxeService(arch="x86PC", menu="Local"),
    PxeService(arch=7, menu="UEFI", file="ipxe.efi"),
    PxeService(arch=9, menu="shim", file="bootx64.efi"),
    PxeService(arch=9, menu="grub", file="grubx64"),
    PxeService(arch=11, menu="ARM64", file="grubaa64"),
])


# ---------------------------------------------------------------- who is answered
def test_silent_without_services_or_prompts():
    assert answer(DhcpConfig(ranges=RANGE, boot=[BootFile(file="a")]), packet(0)) is None
    assert answer(DhcpConfig(ranges=RANGE, prompts=[PxePrompt(text="x")]), packet(0)) is not None


@pytest.mark.parametrize("vendor", ["MSFT 5.0", "", "pxeclient", "XPXEClient"])
def test_only_pxeclient_prefix(vendor):
    assert answer(MENU, packet(0, vendor=vendor)) is None


def test_more_vendor_prefixes_and_the_matched_one_echoed():
    cfg = DhcpConfig(ranges=RANGE, services=MENU.services, vendor_classes=["PXEClient", "Etherboot"])
    a = answer(cfg, packet(0, vendor="Etherboot-5.4"))
    assert a is not None and opts(a)[60] == b"Etherboot"
    assert opts(answer(cfg, packet(0)))[60] == b"PXEClient"


def test_bootreply_and_other_message_types_ignored():
    assert answer(MENU, packet(0, op=2)) is None
    assert answer(MENU, packet(7, mtype=REQUEST, ciaddr=CLI)) is None  # REQUEST on 67, no item
    assert answer(MENU, packet(7, mtype=INFORM, ciaddr=CLI), pxe_port=True) is None
    assert answer(MENU, packet(7, mtype=7), pxe_port=True) is None  # RELEASE


def test_no_arch_option_no_answer():
    pkt = packet(0)
    del pkt.options[93]
    assert answer(MENU, pkt) is None


def test_ranges_select_the_subnet():
    assert answer(MENU, packet(0), local=bytes([10, 9, 0, 1])) is None  # no range for this subnet
    assert answer(MENU, packet(0, giaddr=bytes([10, 213, 0, 254])), local=bytes([10, 9, 0, 1])) is not None
    cfg = DhcpConfig(ranges=[ProxyRange(network="10.214.0.0", netmask="255.255.255.0", set="remote")],
                     services=[PxeService(arch=0, menu="R", file="r", tags=["remote"])])
    a = answer(cfg, packet(0, giaddr=bytes([10, 214, 0, 9])))
    assert dict(subs(a))[9] == b"\x80\x00\x01R"
    assert answer(cfg, packet(0)) is None
    filt = DhcpConfig(ranges=[ProxyRange(network="10.213.0.0", tags=["known"])], services=MENU.services,
                      rules=[TagRule(set="known", mac="52:54:00:*:*:*")])
    assert answer(filt, packet(0)) is not None and answer(filt, packet(0, mac=b"\x02" * 6)) is None


# ---------------------------------------------------------------- port 67 and 4011 by arch
def test_bios_discover_menu_offer():
    a = answer(MENU, packet(0))
    assert (a.message_type, a.flags, a.siaddr, a.file, a.sname) == (2, 0x8000, ZERO, b"", b"")
    assert [c for c, _ in a.options] == [53, 54, 60, 97, 43]
    assert opts(a)[54] == LOCAL and opts(a)[60] == b"PXEClient" and opts(a)[97] == UUID
    assert subs(a) == [(6, b"\x03"), (8, b"\x80\x00\x01" + LOCAL),
                       (9, b"\x80\x00\x0cNetwork Boot" + b"\x00\x00\x05Local"), (10, b"\x05Press F8")]


@pytest.mark.parametrize("arch", [6, 7, 9, 10, 11, 12, 255, 1000])
def test_uefi_discover_redirects_to_4011(arch):
    a = answer(MENU, packet(arch))
    assert a.siaddr == LOCAL and a.file == b"" and [c for c, _ in a.options] == [53, 54, 60, 97]


@pytest.mark.parametrize("arch,file", [(7, b"ipxe.efi"), (11, b"grubaa64.0")])
def test_uefi_4011_single_service_shortcut(arch, file):
    a = answer(MENU, packet(arch, mtype=REQUEST, ciaddr=CLI), pxe_port=True)
    assert (a.message_type, a.flags, a.ciaddr, a.siaddr, a.sname, a.file) == (5, 0, CLI, LOCAL, b"10.213.0.1", file)
    assert 43 not in opts(a)


def test_uefi_4011_two_services_menu():
    a = answer(MENU, packet(9, mtype=REQUEST, ciaddr=CLI), pxe_port=True)
    assert a.file == b"" and a.siaddr == LOCAL
    assert dict(subs(a))[9] == b"\x80\x02\x04shim" + b"\x80\x03\x04grub"
    assert dict(subs(a))[8] == b"\x80\x02\x01" + LOCAL + b"\x80\x03\x01" + LOCAL


def test_4011_without_ciaddr_broadcasts():
    a = answer(MENU, packet(7, mtype=REQUEST), pxe_port=True)
    assert a.flags & 0x8000 and a.ciaddr == ZERO


@pytest.mark.parametrize("arch", [1, 2, 3, 4, 5, 8, 10, 12, 15, 255])
def test_arch_without_services(arch):
    a = answer(MENU, packet(arch, mtype=REQUEST, ciaddr=CLI), pxe_port=True)
    assert a.file == b"" and subs(a) == [(6, b"\x08"), (10, b"\x05Press F8")]


def test_uuid_echoed_only_when_17_bytes():
    assert 97 not in opts(answer(MENU, packet(0, uuid=b"\x00" * 16)))
    assert 97 not in opts(answer(MENU, packet(0, uuid=None)))


def test_stand_in_prompt_without_pxe_prompt():
    one = DhcpConfig(ranges=RANGE, services=[PxeService(arch=0, menu="A", file="a")])
    two = DhcpConfig(ranges=RANGE, services=one.services + [PxeService(arch=0, menu="B", file="b")])
    assert subs(answer(one, packet(0)))[:2] == [(6, b"\x03"), (10, b"\x00PXE")]
    assert subs(answer(two, packet(0)))[:2] == [(6, b"\x03"), (10, b"\xffPXE")]


def test_menu_too_large_leaves_only_configured_suboptions():
    # dnsmasq logs "PXE menu too large" and sends only the configured sub-options: none, no 43
    cfg = DhcpConfig(ranges=RANGE, services=[PxeService(arch=0, menu="m" * 100, file=f"f{i}") for i in range(3)])
    assert 43 not in opts(answer(cfg, packet(0)))
    cfg = DhcpConfig(ranges=RANGE, services=cfg.services, vendor_options=[VendorOption(code=6, hex="02")])
    assert opts(answer(cfg, packet(0)))[43] == b"\x06\x01\x02\xff"
    # the boot server list too: 37 servers of 7 bytes exceed it while the menu still fits
    many = [PxeService(arch=0, menu="m", file=f"f{i}") for i in range(37)]
    assert 43 not in opts(answer(DhcpConfig(ranges=RANGE, services=many), packet(0)))
    assert 43 in opts(answer(DhcpConfig(ranges=RANGE, services=many[:36]), packet(0)))


def test_service_with_unknown_server_allows_broadcast_discovery():
    cfg = DhcpConfig(ranges=RANGE, services=[PxeService(arch=0, menu="Remote", type=5)])
    assert subs(answer(cfg, packet(0)))[0] == (6, b"\x02")
    cfg = DhcpConfig(ranges=RANGE, services=[PxeService(arch=0, menu="Remote", type=5, server="10.0.0.9")])
    assert dict(subs(answer(cfg, packet(0))))[8] == b"\x00\x05\x01" + bytes([10, 0, 0, 9])


# ---------------------------------------------------------------- boot server REQUEST
@pytest.mark.parametrize("item,file", [((0x8000, 0), b"pxelinux.0"), ((0x8000, 3), b"pxelinux.3"),
                                       ((0x8001, 0), b"ipxe.efi")])
def test_boot_server_ack(item, file):
    a = answer(MENU, packet(0, mtype=REQUEST, ciaddr=CLI, item=item))
    assert (a.message_type, a.flags, a.ciaddr, a.yiaddr, a.siaddr, a.file) == (5, 0, ZERO, CLI, LOCAL, file)
    assert subs(a) == [(71, struct.pack("!HH", *item)), (10, b"\x05Press F8")]


@pytest.mark.parametrize("item,ciaddr", [((0, 0), CLI), ((0x8000, 0x8000), CLI), ((0x9999, 0), CLI),
                                         ((0x8000, 0), ZERO), ((0x8000, 0), bytes([10, 9, 9, 9]))],
                         ids=["local-boot", "bis", "unknown", "no-ciaddr", "ciaddr-out-of-range"])
def test_boot_server_request_unanswered(item, ciaddr):
    assert answer(MENU, packet(0, mtype=REQUEST, ciaddr=ciaddr, item=item)) is None


def test_boot_server_service_server_address():
    cfg = DhcpConfig(ranges=RANGE, services=[PxeService(arch=0, menu="X", file="x", server="10.213.0.9")])
    assert answer(cfg, packet(0, mtype=REQUEST, ciaddr=CLI, item=(0x8000, 0))).siaddr == bytes([10, 213, 0, 9])


# ---------------------------------------------------------------- tags, rules, boot files
IPXE = DhcpConfig(
    ranges=RANGE, prompts=[PxePrompt(text="P", timeout=1)],
    rules=[TagRule(set="ipxe", user_class="iPXE")],
    boot=[BootFile(file="http://10.213.0.1/boot.ipxe", tags=["ipxe"])],
    services=[PxeService(arch=0, menu="iPXE", file="undionly.kpxe", tags=["!ipxe"]),
              PxeService(arch=7, menu="iPXE", file="ipxe.efi", tags=["!ipxe"])])


@pytest.mark.parametrize("uc", [b"iPXE", b"\x04iPXE", b"\x03foo\x04iPXE"])
def test_ipxe_gets_the_script_not_the_binary(uc):
    bios = answer(IPXE, packet(0, user_class=uc))
    assert bios.file == b"http://10.213.0.1/boot.ipxe" and subs(bios) == [(6, b"\x08"), (10, b"\x01P")]
    assert bios.siaddr == LOCAL  # beyond dnsmasq (0.0.0.0 there): iPXE needs a next-server
    uefi = answer(IPXE, packet(7, mtype=REQUEST, ciaddr=CLI, user_class=uc), pxe_port=True)
    assert uefi.file == b"http://10.213.0.1/boot.ipxe"
    assert answer(IPXE, packet(7, mtype=REQUEST, ciaddr=CLI), pxe_port=True).file == b"ipxe.efi"


def test_option_175_rule():
    cfg = DhcpConfig(ranges=IPXE.ranges, prompts=IPXE.prompts, boot=IPXE.boot, services=IPXE.services,
                     rules=[TagRule(set="ipxe", option=175)])
    assert answer(cfg, packet(0, opt175=True)).file == b"http://10.213.0.1/boot.ipxe"
    assert answer(cfg, packet(0)).file == b""


@pytest.mark.parametrize("rule,hit,miss", [
    (TagRule(set="t", mac="52:54:00:12:34:56"), {}, {"mac": b"\x52\x54\x00\x12\x34\x57"}),
    (TagRule(set="t", mac="52:54:00:*:*:*"), {}, {"mac": b"\x02\x54\x00\x12\x34\x56"}),
    (TagRule(set="t", vendor_class="Arch:00000"), {}, {"vendor": "PXEClient:Arch:00009:UNDI:003000"}),
    (TagRule(set="t", user_class="gold"), {"user_class": b"\x04gold"}, {"user_class": b"silver"}),
    (TagRule(set="t", arch=[0, 6]), {}, {"arch": 7}),
    (TagRule(set="t", option=93, value="0"), {}, {"arch": 9}),
    (TagRule(set="t", option=60, value="UNDI:003000"), {}, {"vendor": "PXEClient:Arch:00000:UNDI:002001"}),
], ids=["mac", "mac-wildcard", "vendor-class", "user-class", "arch", "option-number", "option-text"])
def test_tag_rules(rule, hit, miss):
    cfg = DhcpConfig(ranges=RANGE, prompts=[PxePrompt(text="P")], rules=[rule],
                     boot=[BootFile(file="tagged", tags=["t"]), BootFile(file="untagged")])
    assert answer(cfg, packet(**{"arch": 0, **hit})).file == b"tagged"
    assert answer(cfg, packet(**{"arch": 0, **miss})).file == b"untagged"


def test_tag_if_sees_tags_set_by_rules():
    cfg = DhcpConfig(ranges=RANGE, prompts=[PxePrompt(text="P")],
                     rules=[TagRule(set="both", tags=["a", "b"]), TagRule(set="a", arch=[0]),
                            TagRule(set="b", user_class="iPXE")],
                     boot=[BootFile(file="both", tags=["both"])])
    assert answer(cfg, packet(0, user_class=b"iPXE")).file == b"both"
    assert answer(cfg, packet(0)).file == b""


def test_find_boot_prefers_tagged_then_first():
    cfg = DhcpConfig(ranges=RANGE, prompts=[PxePrompt(text="P")], rules=[TagRule(set="x", arch=[0])],
                     boot=[BootFile(file="plain"), BootFile(file="x1", tags=["x"]), BootFile(file="x2", tags=["x"])])
    assert answer(cfg, packet(0)).file == b"x1" and answer(cfg, packet(6)).file == b"plain"


def test_boot_file_server_address_and_name():
    cfg = DhcpConfig(ranges=RANGE, prompts=[PxePrompt(text="P")], hosts={"tftp1": "10.213.0.7"},
                     boot=[BootFile(file="a", server="10.213.0.9", tags=["!named"]),
                           BootFile(file="b", server_name="tftp1", tags=["named"])],
                     rules=[TagRule(set="named", arch=[6])])
    assert answer(cfg, packet(0)).siaddr == bytes([10, 213, 0, 9])
    assert answer(cfg, packet(6)).siaddr == bytes([10, 213, 0, 7])


def test_prompt_by_tags():
    cfg = DhcpConfig(ranges=RANGE, services=MENU.services[:1], rules=[TagRule(set="x", mac="52:54:00:*:*:*")],
                     prompts=[PxePrompt(text="tagged", timeout=3, tags=["x"]), PxePrompt(text="other", timeout=4)])
    # every prompt that applies is sent, in the list's order (dnsmasq sends each line that applies)
    assert subs(answer(cfg, packet(0)))[-2:] == [(10, b"\x03tagged"), (10, b"\x04other")]
    assert subs(answer(cfg, packet(0, mac=b"\x02" * 6)))[-2:] == [(9, b"\x80\x00\x0cNetwork Boot"),
                                                                 (10, b"\x04other")]


@pytest.mark.parametrize("kw,pxe_port", [({"arch": 0}, False), ({"arch": 7, "mtype": REQUEST, "ciaddr": CLI}, True),
                                         ({"arch": 0, "mtype": REQUEST, "ciaddr": CLI, "item": (0x8000, 0)}, False),
                                         ({"arch": 16, "vendor": "HTTPClient:Arch:00016:UNDI:003001"}, False)],
                         ids=["discover", "4011", "boot-server", "http"])
def test_ignore_rule(kw, pxe_port):
    cfg = DhcpConfig(ranges=RANGE, services=MENU.services, prompts=MENU.prompts, boot=[BootFile(file="http://x/y")],
                     rules=[TagRule(set="bad", mac="52:54:00:12:34:56")], ignore=[["bad"]])
    assert answer(cfg, packet(**kw), pxe_port) is None
    assert answer(cfg, packet(**{**kw, "mac": b"\x02" * 6}), pxe_port) is not None


# ---------------------------------------------------------------- UEFI HTTP Boot (beyond dnsmasq)
HTTP = "HTTPClient:Arch:00016:UNDI:003001"


def test_http_boot_gets_url():
    cfg = DhcpConfig(ranges=RANGE, prompts=[PxePrompt(text="P")], rules=[TagRule(set="http", vendor_class="HTTPClient")],
                     boot=[BootFile(file="http://10.213.0.1/x.efi", tags=["http"])])
    a = answer(cfg, packet(16, vendor=HTTP))
    assert (a.message_type, a.flags, a.siaddr, a.yiaddr, a.file) == (2, 0x8000, ZERO, ZERO, b"http://10.213.0.1/x.efi")
    assert a.options == [(53, b"\x02"), (54, LOCAL), (60, b"HTTPClient"), (97, UUID)]
    assert answer(cfg, packet(16, vendor=HTTP, mtype=REQUEST, ciaddr=CLI), True) is None
    off = DhcpConfig(ranges=cfg.ranges, prompts=cfg.prompts, rules=cfg.rules, boot=cfg.boot, http_boot=False)
    assert answer(off, packet(16, vendor=HTTP)) is None


def test_http_boot_without_boot_entry_is_silent():
    assert answer(MENU, packet(16, vendor=HTTP)) is None


def test_number_match_finds_a_byte_anywhere_in_the_option():
    """dhcp-match=set:ipxe-http,175,19 (LTSP, forester): dnsmasq looks for the byte 19 at every
    position of option 175, not for the whole option to equal 19."""
    cfg = DhcpConfig(ranges=RANGE, prompts=[PxePrompt(text="P")],
                     rules=[TagRule(set="pxeext", option=175, value="16"), TagRule(set="http", option=175, value="19")],
                     boot=[BootFile(file="http", tags=["http"]), BootFile(file="pxeext", tags=["pxeext"]),
                           BootFile(file="untagged")])
    assert answer(cfg, packet(opt175=True)).file == b"pxeext"  # 175 = 10 01 02: byte 16 at 0
    assert answer(cfg, packet()).file == b"untagged"
    arch = DhcpConfig(ranges=RANGE, prompts=[PxePrompt(text="P")], rules=[TagRule(set="t", option=93, value="7")],
                      boot=[BootFile(file="tagged", tags=["t"]), BootFile(file="untagged")])
    assert answer(arch, packet(arch=7)).file == b"tagged"
    assert answer(arch, packet(arch=0x0700)).file == b"untagged"  # two bytes wide for option 93


def test_boot_server_ack_and_ignore_do_not_see_the_range_tag():
    """dnsmasq adds a dhcp-range's set: tag only to the proxy offer's tags: a prompt tagged with
    it is not sent in the boot-server ACK."""
    cfg = DhcpConfig(ranges=[ProxyRange(network="10.213.0.0", set="local")],
                     prompts=[PxePrompt(text="Local boot", timeout=2, tags=["local"])],
                     services=[PxeService(arch=0, menu="Linux", file="pxelinux")])
    offer = answer(cfg, packet())
    assert b"Local boot" in opts(offer)[43]
    ack = answer(cfg, packet(mtype=3, ciaddr=bytes((10, 213, 0, 50)), item=(0x8000, 0)), pxe_port=True)
    assert ack.file == b"pxelinux.0" and b"Local boot" not in opts(ack)[43]


# ---------------------------------------------------------------- one reply per kind of client
def test_a_shared_policy_answers_as_a_fresh_one():
    """Policy.answer keeps one reply per kind of client and adds each request's own flags,
    ciaddr and UUID: across configs with every kind of rule, a policy that has answered
    thousands of clients answers each exactly as a policy that never saw one."""
    import random
    rnd = random.Random(4578)
    configs = [
        MENU,
        DhcpConfig(ranges=[ProxyRange(network="10.213.0.0", set="local"), ProxyRange(network="10.9.0.0", tags=["far"])],
                   services=MENU.services, prompts=[PxePrompt(text="L", timeout=2, tags=["local"]), PxePrompt(text="P")],
                   rules=[TagRule(set="t", mac="52:54:00:*:*:01"), TagRule(set="far", user_class="iPXE"),
                          TagRule(set="both", tags=["local", "t"]), TagRule(set="o", option=175, value="16"),
                          TagRule(set="r", vendor_class="Arch:00007")],
                   boot=[BootFile(file="ipxe-script", tags=["far"]), BootFile(file="both", tags=["both"], server="10.213.0.9"),
                         BootFile(file="http://10.213.0.1/x.efi", tags=["r"]), BootFile(file="plain")],
                   ignore=[["t", "o"]], hosts={"tftp1": "10.213.0.7"}),
        DhcpConfig(ranges=RANGE, prompts=[PxePrompt(text="P")], rules=[TagRule(set="x", arch=[0, 16])],
                   services=[PxeService(arch=7, menu="one", file="ipxe", server_name="tftp1")],
                   boot=[BootFile(file="http://x/y", tags=["x"]), BootFile(file="z", server_name="tftp1")],
                   hosts={"tftp1": "10.213.0.7"}),
    ]
    relay = bytes([10, 9, 0, 254])
    for cfg in configs:
        shared = Policy(cfg)
        for _ in range(3000):
            arch = rnd.choice([0, 6, 7, 9, 11, 16])
            pkt = packet(
                arch, mtype=rnd.choice([DISCOVER, DISCOVER, REQUEST, INFORM]),
                vendor=rnd.choice([None, None, f"HTTPClient:Arch:{arch:05d}", "MSFT 5.0"]),
                user_class=rnd.choice([None, b"iPXE", b"\x04gold"]), opt175=rnd.random() < 0.3,
                mac=bytes([0x52, 0x54, 0, rnd.randrange(256), rnd.randrange(256), rnd.choice([1, 2])]),
                ciaddr=rnd.choice([ZERO, CLI, bytes([10, 9, 0, 7])]), giaddr=rnd.choice([ZERO, ZERO, relay]),
                item=rnd.choice([None, None, (0x8000, 0), (0x8002, 1)]),
                uuid=rnd.choice([UUID, None, b"\x00" + rnd.randbytes(16), b"short"]),
                flags=rnd.choice([0, 0x8000, 0x0001]))
            kw = dict(on_pxe_port=rnd.random() < 0.5, local=rnd.choice([LOCAL, bytes([10, 9, 0, 1])]),
                      local_netmask=rnd.choice([MASK, None]))
            assert shared.answer(pkt, **kw) == Policy(cfg).answer(pkt, **kw)
        assert 0 < len(shared.kinds) < 3000


def test_one_reply_per_kind_whatever_size_its_clients_take():
    """The kind cache holds options, not packets: the codec cuts each reply to its client's
    option 57, so a small client first does not cost a big one the prompt, nor the reverse."""
    cfg = DhcpConfig(ranges=RANGE, services=MENU.services, prompts=[PxePrompt(text="P" * 240, timeout=5)])
    shared = Policy(cfg)
    small, big = packet(0, mac=MAC[:5] + b"\x01"), packet(0, mac=MAC[:5] + b"\x02", max_size=1472)
    replies = {}
    for pkt in (small, big, small):
        a = shared.answer(pkt, on_pxe_port=False, local=LOCAL, local_netmask=MASK)
        replies[pkt.max_message_size] = dhcp.parse(dhcp.build(pkt, 2, flags=a.flags, options=a.options))
    assert len(shared.kinds) == 1
    prompt = bytes((10, 241, 5)) + b"P" * 240
    assert prompt in replies[1444].options[43] and prompt not in replies[548].options[43]
    assert replies[548].options[43].startswith(bytes((6, 1, 3)))  # the first instance stays


# ---------------------------------------------------------------- vendor sub-options (dhcp-option=vendor:)
LTSP = DhcpConfig(ranges=RANGE, prompts=[PxePrompt(text="Press F8", timeout=3)],
                  services=[PxeService(arch=0, menu="Boot", file="pxelinux"), PxeService(arch=0, menu="Disk")],
                  vendor_options=[VendorOption(code=6, hex="02", vendor="PXEClient")])


def test_vendor_options_follow_dnsmasq_own_and_the_prompts():
    # dnsmasq's 6 stays: the configured 6 comes as a second sub-option 6 (rfc2131.c pxe_opts)
    assert [c for c, _ in subs(answer(LTSP, packet(0)))] == [6, 8, 9, 10, 6]
    assert subs(answer(LTSP, packet(0)))[-2:] == [(10, b"\x03Press F8"), (6, b"\x02")]
    # the same on port 4011, and after the echoed item in a boot-server ACK
    assert subs(answer(LTSP, packet(0, mtype=REQUEST, ciaddr=CLI), pxe_port=True))[-1] == (6, b"\x02")
    ack = answer(LTSP, packet(0, mtype=REQUEST, ciaddr=CLI, item=(0x8000, 0)), pxe_port=True)
    assert subs(ack) == [(71, b"\x80\x00\x00\x00"), (10, b"\x03Press F8"), (6, b"\x02")]


def test_vendor_options_where_dnsmasq_sends_no_43():
    # UEFI on port 67 (redirected), the single-service shortcut on 4011: no option 43 at all
    cfg = DhcpConfig(ranges=RANGE, services=[PxeService(arch=7, menu="UEFI", file="ipxe.efi")],
                     vendor_options=[VendorOption(code=6, hex="02")])
    assert 43 not in opts(answer(cfg, packet(7)))
    assert 43 not in opts(answer(cfg, packet(7, mtype=REQUEST, ciaddr=CLI), pxe_port=True))
    # with a UEFI menu, 4011 gets the menu and the vendor option
    cfg = DhcpConfig(ranges=RANGE, vendor_options=cfg.vendor_options,
                     services=cfg.services + [PxeService(arch=7, menu="Other", file="other.efi")])
    assert subs(answer(cfg, packet(7, mtype=REQUEST, ciaddr=CLI), pxe_port=True))[-1] == (6, b"\x02")


def test_vendor_options_by_vendor_text_and_tags():
    cfg = DhcpConfig(ranges=RANGE, services=[PxeService(arch=0, menu="A", file="a"), PxeService(arch=7, menu="B"),
                                             PxeService(arch=7, menu="C")],
                     rules=[TagRule(set="lab", mac="52:54:00:*:*:*")], vendor_options=[
                         VendorOption(code=20, text="bios", vendor="Arch:00000"),
                         VendorOption(code=21, text="any"),
                         VendorOption(code=22, hex="01", vendor="MSFT"),
                         VendorOption(code=23, hex="02", tags=["lab"]),
                         VendorOption(code=24, hex="03", tags=["!lab"])])
    bios = [c for c, _ in subs(answer(cfg, packet(0)))]
    assert bios[-3:] == [20, 21, 23]
    efi = [c for c, _ in subs(answer(cfg, packet(7, mtype=REQUEST, ciaddr=CLI), pxe_port=True))]
    assert efi[-2:] == [21, 23] and 20 not in efi
    other = [c for c, _ in subs(answer(cfg, packet(0, mac=b"\x02" * 6)))]
    assert other[-3:] == [20, 21, 24]
    # the vendor text anywhere in option 60, which the kept replies must tell apart
    pol = Policy(cfg)
    kw = dict(on_pxe_port=False, local=LOCAL, local_netmask=MASK)
    a = pol.answer(packet(0, vendor="PXEClient:Arch:00000:UNDI:002001 MSFT"), **kw)
    b = pol.answer(packet(0, vendor="PXEClient:Arch:00000:UNDI:002001"), **kw)
    assert 22 in dict(subs(a)) and 22 not in dict(subs(b))


def test_vendor_prompt_replaces_the_stand_in_only_when_it_applies():
    one = [PxeService(arch=0, menu="A", file="a")]
    cfg = DhcpConfig(ranges=RANGE, services=one, vendor_options=[VendorOption(code=10, hex="05", text="Hi",
                                                                              tags=["x"])],
                     rules=[TagRule(set="x", mac="52:54:00:*:*:*")])
    assert subs(answer(cfg, packet(0))) == [(6, b"\x03"), (8, b"\x80\x00\x01" + LOCAL),
                                            (9, b"\x80\x00\x01A"), (10, b"\x05Hi")]
    assert subs(answer(cfg, packet(0, mac=b"\x02" * 6)))[1] == (10, b"\x00PXE")
    # a vendor 10 alone does not start PXE answers (only pxe-service and pxe-prompt do)
    assert answer(DhcpConfig(ranges=RANGE, vendor_options=cfg.vendor_options), packet(0)) is None


def test_option_43_over_255_bytes_is_split_between_suboptions():
    menu = [PxeService(arch=0, menu="m" * 200, file="a")]
    cfg = DhcpConfig(ranges=RANGE, services=menu, vendor_options=[VendorOption(code=20, text="t" * 100)])
    parts = [v for c, v in answer(cfg, packet(0)).options if c == 43]
    # dnsmasq do_encap_opts: whole sub-options per instance, the end marker in the last one
    assert [len(p) for p in parts] == [3 + 6 + 9 + 205, 102 + 1]
    assert parts[1] == b"\x14\x64" + b"t" * 100 + b"\xff"


# -- dhcp-option-pxe (dnsmasq 2.91): options of the config's own in proxy replies

PXE_OPTIONS = [DhcpOption(code=175, hex="01"), DhcpOption(code=176, hex="02", tags=["!nothere"]),
               DhcpOption(code=60, text="override"), DhcpOption(code=3, addresses=["0.0.0.0", "1.2.3.4"]),
               DhcpOption(code=43, hex="ab:cd"), DhcpOption(code=175, hex="09:09"), DhcpOption(code=180)]


def test_pxe_options_follow_option_43_newest_first_one_per_code():
    """As dnsmasq 2.92 answered the same lines (in its proxy OFFER and 4011 ACK): after its
    option 43, the newest line first; of two lines for a code the newer; a 43 and a 60 of the
    config's sent besides dnsmasq's own; 0.0.0.0 the address the reply comes from."""
    cfg = DhcpConfig(ranges=RANGE, services=MENU.services, options=PXE_OPTIONS)
    for a in (answer(cfg, packet(0)), answer(cfg, packet(9, mtype=REQUEST, ciaddr=CLI), pxe_port=True)):
        assert [c for c, _ in a.options[:5]] == [53, 54, 60, 97, 43]
        assert a.options[5:] == [(180, b""), (175, b"\x09\x09"), (43, b"\xab\xcd"), (3, LOCAL + bytes([1, 2, 3, 4])),
                                 (60, b"override"), (176, b"\x02")]


def test_pxe_options_also_where_option_43_is_left_out_but_not_in_a_boot_server_ack():
    cfg = DhcpConfig(ranges=RANGE, services=MENU.services, options=[DhcpOption(code=175, hex="01")])
    redirect = answer(cfg, packet(7))  # UEFI on port 67: sent to port 4011, no menu
    assert 43 not in opts(redirect) and redirect.options[-1] == (175, b"\x01")
    ack = answer(cfg, packet(0, mtype=REQUEST, ciaddr=CLI, item=(32768, 0)), pxe_port=True)
    assert ack.file == b"pxelinux.0" and 175 not in opts(ack)


def test_pxe_options_pick_by_tags_as_dnsmasq_option_filter():
    """Per code: an entry whose tags the client carries beats an untagged one, whatever their
    order; one matched only with the range's own tag comes between the two."""
    cfg = DhcpConfig(ranges=[ProxyRange(network="10.213.0.0", set="lab")], services=MENU.services,
                     rules=[TagRule(set="bios", arch=[0])], options=[
        DhcpOption(code=175, hex="01", tags=["bios"]), DhcpOption(code=175, hex="02"),
        DhcpOption(code=176, hex="03", tags=["lab"]), DhcpOption(code=176, hex="04"),
        DhcpOption(code=177, hex="05", tags=["bios"]), DhcpOption(code=177, hex="06", tags=["lab"]),
        DhcpOption(code=178, hex="07", tags=["other"])])
    bios, uefi = answer(cfg, packet(0)), answer(cfg, packet(7))
    assert opts(bios)[175] == b"\x01" and opts(uefi)[175] == b"\x02"
    assert opts(bios)[176] == opts(uefi)[176] == b"\x03"
    assert opts(bios)[177] == b"\x05" and opts(uefi)[177] == b"\x06"
    assert 178 not in opts(bios) and 178 not in opts(uefi)


@pytest.mark.parametrize("extra, nul", [
    ((), False),
    (((12, b"pc1\0"),), True),  # a NUL-terminated host name: text options get one too
    (((12, b"pc1"),), False),
    (((81, b"\0\0\0pc1\0"),), True),  # option 81's name (flags, rcodes, name) rules over 12
    (((81, b"\x04\0\0\3pc1\0"), (12, b"pc1\0")), False),  # binary-encoded: not that case
])
def test_pxe_text_options_nul_terminated_for_clients_that_send_one(extra, nul):
    cfg = DhcpConfig(ranges=RANGE, services=MENU.services,
                     options=[DhcpOption(code=66, text="boot.lan"), DhcpOption(code=175, hex="01")])
    o = opts(answer(cfg, packet(0, extra=extra)))
    assert o[66] == b"boot.lan" + b"\0" * nul and o[175] == b"\x01"


def test_pxe_suboptions_grouped_by_their_option_after_the_plain_ones():
    """encap:N and vi-encap:N entries (dnsmasq handle_encap): each outer option in the order of
    its newest entry, holding every entry whose tags the client carries, newest first, two of
    one code included; 125 as enterprise number, length, sub-options; text NUL-terminated for
    a client whose name is, in encap: only."""
    cfg = DhcpConfig(ranges=RANGE, services=MENU.services, rules=[TagRule(set="bios", arch=[0])], options=[
        DhcpOption(code=176, hex="01", encap=175), DhcpOption(code=1, text="x", vi_encap=3561),
        DhcpOption(code=190, text="admin", encap=175, tags=["bios"]), DhcpOption(code=180, hex="07"),
        DhcpOption(code=176, hex="02", encap=175), DhcpOption(code=5, hex="09", encap=43, tags=["other"])])
    bios = answer(cfg, packet(0))
    assert bios.options[5:] == [
        (180, b"\x07"), (175, bytes([176, 1, 2, 190, 5]) + b"admin" + bytes([176, 1, 1, 255])),
        (125, (3561).to_bytes(4, "big") + bytes([3, 1, 1]) + b"x")]  # no 43: its one entry's tag is not set
    assert bios.configured == 3
    uefi = answer(cfg, packet(9, extra=((12, b"pc\0"),)))
    assert opts(uefi)[175] == bytes([176, 1, 2, 176, 1, 1, 255])
    assert opts(uefi)[125] == (3561).to_bytes(4, "big") + bytes([3, 1, 1]) + b"x"
    named = answer(cfg, packet(0, extra=((12, b"pc\0"),)))
    assert opts(named)[175] == bytes([176, 1, 2, 190, 6]) + b"admin\0" + bytes([176, 1, 1, 255])


def test_pxe_suboptions_over_255_bytes_split_and_125_over_250_left_out():
    cfg = DhcpConfig(ranges=RANGE, services=MENU.services, options=[
        DhcpOption(code=c, hex="ab" * 100, encap=175) for c in (1, 2, 3)] + [
        DhcpOption(code=c, hex="cd" * 100, vi_encap=9) for c in (1, 2, 3)])
    a = answer(cfg, packet(0))
    parts = [v for c, v in a.options if c == 175]
    assert [len(p) for p in parts] == [204, 103]  # two whole sub-options, then one and the end
    assert b"".join(parts) == b"".join(bytes((c, 100)) + b"\xab" * 100 for c in (3, 2, 1)) + b"\xff"
    assert 125 not in opts(a)


def test_reply_delay_by_tags_and_none_for_the_boot_server_ack():
    """dnsmasq apply_delay: the first tagged delay the client fits (its range's tag counts),
    else the delay for everyone; the boot-server ACK is never delayed."""
    cfg = DhcpConfig(ranges=[ProxyRange(network="10.213.0.0", set="lab")], services=MENU.services,
                     rules=[TagRule(set="bios", arch=[0])], reply_delay=1,
                     reply_delays=[ReplyDelay(seconds=3, tags=["bios", "!lab"]), ReplyDelay(seconds=2, tags=["lab"])])
    assert answer(cfg, packet(0)).delay == 2  # bios, but in range lab: the second entry
    assert answer(cfg, packet(9)).delay == 2
    assert answer(cfg, packet(9, mtype=REQUEST, ciaddr=CLI), pxe_port=True).delay == 2
    assert answer(DhcpConfig(ranges=RANGE, services=MENU.services, reply_delay=1), packet(0)).delay == 1
    ack = answer(cfg, packet(0, mtype=REQUEST, ciaddr=CLI, item=(32768, 0)), pxe_port=True)
    assert ack.file == b"pxelinux.0" and ack.delay == 0
