"""bootstorm alone: every field of every reply, and the whole PXE flow down to the NBP.

One bootstorm (``bootstorm serve --config pxe.toml``, TFTP in the same process) answers
arch 0, 6, 7, 9, 11 and 16, with and without the iPXE user class, direct and relayed,
on port 67 and 4011 (from source ports 4011 and 68) and the boot-server REQUEST.  Each
reply is checked against a complete expected picture: header, every option in order
with its value, option 43 sub-options, and where it went on the wire.
"""

from __future__ import annotations

import socket
import struct
import zlib

import pytest

from . import netns
from .conftest import NBP_FILES, make_tftp_root
from .differential import HEADER_FIELDS, LINK_FIELDS, Probe
from .simulator import decode_pxe

SRV, CLI, RELAY = netns.SERVER_ADDR, netns.CLIENT_ADDR, netns.RELAY_ADDR
SRV_B = socket.inet_aton(SRV)
BCAST = "255.255.255.255"
PROMPT = b"Press F8 for boot menu"
IPXE_URL = "http://10.213.0.1/boot.ipxe"
HTTP_URL = "http://10.213.0.1/ipxe.efi"

TOML = """
[tftp]
root = "{root}"

[dhcp]
interfaces = ["eth0"]
ranges = [{{ network = "10.213.0.0" }}]
prompts = [{{ text = "Press F8 for boot menu", timeout = 5 }}]
rules = [
  {{ set = "ipxe", user-class = "iPXE" }},
  {{ set = "http", vendor-class = "HTTPClient" }},
]
boot = [
  {{ tags = ["ipxe"], file = "{ipxe_url}" }},
  {{ tags = ["http"], file = "{http_url}" }},
]
services = [
  {{ arch = "x86PC", menu = "Network Boot", file = "pxelinux", tags = ["!ipxe"] }},   # 0x8000
  {{ arch = "x86PC", menu = "Boot from local disk", tags = ["!ipxe"] }},             # type 0
  {{ arch = 6, menu = "IA32 iPXE", file = "ipxe.efi", tags = ["!ipxe"] }},           # 0x8001
  {{ arch = 6, menu = "IA32 shim", file = "bootx64.efi", tags = ["!ipxe"] }},        # 0x8002
  {{ arch = 7, menu = "UEFI x64", file = "bootx64.efi", tags = ["!ipxe"] }},         # 0x8003
  {{ arch = 9, menu = "UEFI x64", file = "bootx64.efi", tags = ["!ipxe"] }},         # 0x8004
  {{ arch = 11, menu = "ARM64 GRUB", file = "grubaa64.efi", tags = ["!ipxe"] }},     # 0x8005
]
"""
SINGLE = {7: "bootx64.efi", 9: "bootx64.efi", 11: "grubaa64.efi"}  # the 4011 shortcut


@pytest.fixture(scope="module")
def bootstorm(lan_module, servers_module, tmp_path_factory):
    root = make_tftp_root(tmp_path_factory.mktemp("tftp"))
    conf = tmp_path_factory.mktemp("conf") / "pxe.toml"
    conf.write_text(TOML.format(root=root, ipxe_url=IPXE_URL, http_url=HTTP_URL))
    srv = servers_module.bootstorm(lan_module["srv"], toml=conf, ports=(67, 4011, 69))
    yield srv
    assert srv.alive(), srv.log


@pytest.fixture
def cl(client_module, bootstorm):
    return client_module


# --- the expected picture ----------------------------------------------------------------
def sub(code: int, value: bytes) -> bytes:
    return bytes((code, len(value))) + value


def pxe43(*subs: bytes) -> bytes:
    return b"".join(subs) + b"\xff"


def menu(*items: tuple[int, str]) -> bytes:
    return b"".join(struct.pack("!HB", t, len(d)) + d.encode() for t, d in items)


PROMPT_SUB = sub(10, b"\x05" + PROMPT)
BIOS_MENU = pxe43(sub(6, b"\x03"), sub(8, struct.pack("!HB", 0x8000, 1) + SRV_B),
                  sub(9, menu((0x8000, "Network Boot"), (0, "Boot from local disk"))), PROMPT_SUB)
IA32_MENU = pxe43(sub(6, b"\x03"), sub(8, struct.pack("!HB", 0x8001, 1) + SRV_B + struct.pack("!HB", 0x8002, 1) + SRV_B),
                  sub(9, menu((0x8001, "IA32 iPXE"), (0x8002, "IA32 shim"))), PROMPT_SUB)
USE_FILE = pxe43(sub(6, b"\x08"), PROMPT_SUB)  # no menu entry fits (iPXE): boot the file


def expected(sent: dict, *, msg: str, vendor: str = "PXEClient", flags: int, ciaddr="0.0.0.0",
             yiaddr="0.0.0.0", siaddr="0.0.0.0", sname="", file="", opt43: bytes | None = None,
             dst: tuple[str, int], sport: int, eth_dst: str) -> dict:
    uuid = dict((c, h) for c, h in sent["options"])[97]
    options = [[53, "02" if msg == "OFFER" else "05"], [54, SRV_B.hex()], [60, vendor.encode().hex()], [97, uuid]]
    if opt43 is not None:
        options.append([43, opt43.hex()])
    length = max(300, 240 + sum(2 + len(h) // 2 for _, h in options) + 1)
    return {
        "op": 2, "htype": 1, "hlen": 6, "hops": sent["hops"], "xid": sent["xid"], "secs": sent["secs"],
        "flags": flags, "ciaddr": ciaddr, "yiaddr": yiaddr, "siaddr": siaddr, "giaddr": sent["giaddr"],
        "chaddr": netns.CLIENT_MAC, "sname": sname, "file": file, "msg_type": msg, "cookie": True,
        "chaddr_pad_nonzero": False, "sname_tail_nonzero": False, "file_tail_nonzero": False,
        "eth_src": netns.SERVER_MAC, "eth_dst": eth_dst, "ip_src": SRV, "ip_dst": dst[0],
        "udp_sport": sport, "udp_dport": dst[1], "ip_ttl": 64, "ip_tos": 0xC0, "ip_df": False,
        "length": length, "options": options,
        "pxe_decoded": decode_pxe(opt43) if opt43 is not None else None,
    }


def check(r: dict, exp: dict) -> None:
    missing = set(HEADER_FIELDS + LINK_FIELDS) - set(exp)
    assert not missing, f"expected picture lacks {missing}"
    got = {k: r.get(k) for k in exp if k != "pxe_decoded"}
    got["pxe_decoded"] = r.get("pxe")
    assert got == exp
    assert r["options_facts"]["end"] is not None and not r["options_facts"]["after_end_nonzero"]
    assert r["udp_csum_ok"] in (True, None) and r["udp_len"] == 8 + r["length"]


def offer_expect(sent: dict, arch: int, ipxe: bool, relay: bool) -> dict:
    dst, eth = ((RELAY, 67), netns.CLIENT_MAC) if relay else ((BCAST, 68), "ff:ff:ff:ff:ff:ff")
    kw = dict(msg="OFFER", flags=0x8000, dst=dst, sport=67, eth_dst=eth)
    if arch == 16:  # UEFI HTTP Boot: the URL in file, no siaddr, option 60 HTTPClient
        return expected(sent, vendor="HTTPClient", file=IPXE_URL if ipxe else HTTP_URL, **kw)
    if arch == 0:
        if ipxe:  # no menu for iPXE: the script URL, our own address (beyond dnsmasq)
            return expected(sent, siaddr=SRV, file=IPXE_URL, opt43=USE_FILE, **kw)
        return expected(sent, opt43=BIOS_MENU, **kw)
    # UEFI: siaddr, no option 43, ask again on 4011; iPXE gets its script straight away
    return expected(sent, siaddr=SRV, file=IPXE_URL if ipxe else "", **kw)


ARCHS = (0, 6, 7, 9, 11, 16)
CASES = [(a, ipxe, relay) for a in ARCHS for ipxe in (False, True) for relay in (False, True)]


def test_every_discover(cl):
    probes = [Probe(f"d{a}-{int(i)}-{int(r)}", "discover", {"arch": a, "ipxe": i, "relay": r})
              for a, i, r in CASES]
    with cl.batch():
        exs = {p.name: cl.discover(xid=p.xid("fields"), **p.kwargs) for p in probes}
    for (a, i, r), p in zip(CASES, probes):
        ex = exs[p.name]
        assert ex.sent["hops"] == (1 if r else 0) and ex.sent["giaddr"] == (RELAY if r else "0.0.0.0")
        check(ex.reply, offer_expect(ex.sent, a, i, r))


@pytest.mark.parametrize("sport", [4011, 68])
def test_every_4011_request(cl, sport):
    cases = [(a, i) for a in (0, 6, 7, 9, 11) for i in (False, True)]
    with cl.batch():
        exs = [cl.request_4011(a, sport=sport, ipxe=i) for a, i in cases]
    for (a, i), ex in zip(cases, exs):
        kw = dict(msg="ACK", flags=0, ciaddr=CLI, dst=(CLI, sport), sport=4011, eth_dst=netns.CLIENT_MAC)
        if i:
            exp = expected(ex.sent, siaddr=SRV, file=IPXE_URL, opt43=USE_FILE, **kw)
        elif a == 0:
            exp = expected(ex.sent, opt43=BIOS_MENU, **kw)
        elif a == 6:  # two IA32 entries: the menu, here on 4011
            exp = expected(ex.sent, siaddr=SRV, opt43=IA32_MENU, **kw)
        else:  # one service: file, siaddr and sname (as text) straight in the ACK, no 43
            exp = expected(ex.sent, siaddr=SRV, sname=SRV, file=SINGLE[a], **kw)
        check(ex.reply, exp)


@pytest.mark.parametrize("bcast", [True, False], ids=["bcast67", "unicast4011"])
@pytest.mark.parametrize("item,arch,file", [((0x8000, 0), 0, "pxelinux.0"), ((0x8000, 1), 0, "pxelinux.1"),
                                            ((0x8002, 0), 6, "bootx64.efi"), ((0x8005, 0), 11, "grubaa64.efi")])
def test_boot_server_request(cl, bcast, item, arch, file):
    ex = cl.boot_server_request(item, arch, broadcast=bcast)
    exp = expected(ex.sent, msg="ACK", flags=0, yiaddr=CLI, siaddr=SRV, file=file,
                   opt43=pxe43(sub(71, struct.pack("!HH", *item)), PROMPT_SUB),
                   dst=(CLI, 68), sport=67 if bcast else 4011, eth_dst=netns.CLIENT_MAC)
    check(ex.reply, exp)
    assert ex.reply["pxe"]["boot_item"] == {"type": item[0], "layer": item[1]}


@pytest.mark.parametrize("item", [(0, 0), (0x8000, 0x8000), (0x9999, 0)], ids=["local", "bis", "unknown"])
def test_boot_server_request_unanswered(cl, item):
    assert cl.boot_server_request(item, expect=None, wait=0.4).replies == []


@pytest.mark.parametrize("kw", [dict(vendor_class="MSFT 5.0"), dict(vendor_class=""), dict(msg_type=8)],
                         ids=["not-pxe", "empty-60", "inform"])
def test_silent(cl, kw):
    if "msg_type" in kw:
        assert cl.request_4011(7, expect=None, wait=0.4, **kw).replies == []
    else:
        assert cl.discover(0, expect=None, wait=0.4, **kw).replies == []


# --- the whole flow, down to the bytes of the NBP ------------------------------------------
def test_bios_flow_menu_prompt_bootserver_tftp(cl):
    offer = cl.discover(0).reply
    pxe = offer["pxe"]
    assert pxe["discovery_control"] == 3  # use the boot server list, unicast
    assert pxe["prompt"] == {"timeout": 5, "text": "Press F8 for boot menu"}
    assert pxe["menu"] == [{"type": 0x8000, "desc": "Network Boot"}, {"type": 0, "desc": "Boot from local disk"}]
    chosen = pxe["menu"][0]["type"]  # the user pressed F8 and picked "Network Boot"
    (server,) = [s for s in pxe["boot_servers"] if s["type"] == chosen]
    assert server["ips"] == [SRV]
    ack = cl.boot_server_request((chosen, 0), broadcast=False).reply
    assert (ack["msg_type"], ack["file"], ack["siaddr"]) == ("ACK", "pxelinux.0", SRV)
    got = cl.tftp(ack["siaddr"], ack["file"])
    assert got["ok"] and got["data"] == NBP_FILES["pxelinux.0"]


@pytest.mark.parametrize("arch,sport", [(7, 4011), (9, 68), (11, 4011)])
def test_uefi_flow_4011_tftp(cl, arch, sport):
    offer = cl.discover(arch).reply
    assert offer["siaddr"] == SRV and offer["file"] == "" and "pxe" not in offer
    ack = cl.request_4011(arch, sport=sport).reply
    assert (ack["file"], ack["siaddr"], ack["sname"]) == (SINGLE[arch], SRV, SRV)
    got = cl.tftp(ack["siaddr"], ack["file"])
    assert got["ok"] and got["data"] == NBP_FILES[SINGLE[arch]]


def test_ia32_menu_flow_tftp(cl):
    ack = cl.request_4011(6).reply
    items = ack["pxe"]["menu"]
    assert [i["type"] for i in items] == [0x8001, 0x8002]
    boot = cl.boot_server_request((items[0]["type"], 0), 6, broadcast=False).reply
    assert boot["file"] == "ipxe.efi"
    got = cl.tftp(boot["siaddr"], boot["file"], blksize=1468)
    want = NBP_FILES["ipxe.efi"]  # > 64 KiB: the simulator reports size and CRC, not the bytes
    assert got["ok"] and (got["size"], got["crc32"]) == (len(want), zlib.crc32(want))


def test_ipxe_gets_script_not_binary_again(cl):
    """The chainloaded iPXE (user class iPXE) gets the script URL, never the binary (no loop)."""
    for arch in (0, 7):
        assert cl.discover(arch, ipxe=True).reply["file"] == IPXE_URL
    assert cl.request_4011(7, sport=68, ipxe=True).reply["file"] == IPXE_URL
    assert cl.discover(7, ipxe=True, user_class_form="rfc3004").reply["file"] == IPXE_URL
