"""The harness proven against dnsmasq 2.90 in proxy mode (the reference bootstorm copies).

Each assertion pins one field of what dnsmasq really sends, so the same scenarios can
later be run against bootstorm (see ``differential.py``).  The module-scoped segment and
dnsmasq serve most tests; scenarios needing another config build their own.
"""

from __future__ import annotations

import socket
import struct

import pytest

from . import netns
from .conftest import NBP_FILES, make_tftp_root
from .differential import Scenario, compare, compare_runs, run_probes
from .simulator import (ClientProfile, build_bootp, decode_bootp, decode_frame, discover,
                        build_frame, encode_options, request)

SRV = netns.SERVER_ADDR
CLI = netns.CLIENT_ADDR
RELAY = netns.RELAY_ADDR
SRV_HEX = socket.inet_aton(SRV).hex()

# dnsmasq names: x86-64_EFI is arch 7 and BC_EFI arch 9 (swapped against RFC 4578's
# list: 7 = EFI BC, 9 = EFI x86-64); firmware sends either for x64, so configs list both.
MENU_CONF = """
dhcp-range=10.213.0.0,proxy
pxe-service=x86PC,"Network Boot",pxelinux
pxe-service=x86PC,"Boot from local disk"
pxe-service=x86-64_EFI,"UEFI Boot",ipxe.efi
pxe-service=BC_EFI,"UEFI BC Boot",bootx64.efi
pxe-service=ARM64_EFI,"ARM64 Boot",grubaa64.efi
pxe-prompt="Press F8 for boot menu",5
enable-tftp
tftp-root={tftp_root}
"""

# Option 43 of the BIOS OFFER, byte for byte (PXE 2.1 sub-options):
BIOS_MENU_43 = (
    "060103"  # 6 discovery control = 3: no broadcast, no multicast discovery; use list 8
    "0807" "8000" "01" + SRV_HEX +  # 8 boot servers: type 0x8000, 1 address
    "0926"  # 9 boot menu: only the x86PC services, in config order
    "8000" "0c" + b"Network Boot".hex() +  # first pxe-service with a file: type 0x8000
    "0000" "14" + b"Boot from local disk".hex() +  # no file = local boot, type 0
    "0a17" "05" + b"Press F8 for boot menu".hex() +  # 10 prompt: timeout 5 s, text
    "ff"  # end
)
PROMPT_HEX = "0a1705" + b"Press F8 for boot menu".hex()

UEFI_FILES = {7: "ipxe.efi", 9: "bootx64.efi", 11: "grubaa64.efi"}


@pytest.fixture(scope="module")
def menu_server(lan_module, servers_module, tmp_path_factory):
    root = make_tftp_root(tmp_path_factory.mktemp("tftp"))
    return servers_module.dnsmasq(lan_module["srv"], MENU_CONF.format(tftp_root=root), ports=(67, 4011, 69))


@pytest.fixture
def cl(client_module, menu_server):
    """The simulated client, with the menu dnsmasq running."""
    return client_module


def opts(reply) -> dict[int, str]:
    return {c: h for c, h in reply["options"]}


# --- port 67: DISCOVER -> OFFER ---------------------------------------------------------
def test_bios_discover_gets_menu_offer(cl):
    ex = cl.discover(0)
    r = ex.reply
    assert r["op"] == 2 and r["htype"] == 1 and r["hlen"] == 6 and r["hops"] == 0
    assert r["xid"] == ex.sent["xid"] and r["secs"] == ex.sent["secs"] == 4
    # dnsmasq sets the broadcast flag in the reply although the DISCOVER had it clear
    assert ex.sent["flags"] == 0 and r["flags"] == 0x8000
    assert (r["ciaddr"], r["yiaddr"], r["siaddr"], r["giaddr"]) == ("0.0.0.0",) * 4
    assert r["chaddr"] == netns.CLIENT_MAC and not r["chaddr_pad_nonzero"]
    assert r["sname"] == "" and r["file"] == ""
    assert r["msg_type"] == "OFFER"
    assert [c for c, _ in r["options"]] == [53, 54, 60, 97, 43]
    o = opts(r)
    assert o[53] == "02" and o[54] == SRV_HEX and bytes.fromhex(o[60]) == b"PXEClient"
    assert o[97] == opts(ex.sent)[97]  # UUID echoed
    assert o[43] == BIOS_MENU_43
    assert [c for c, _ in r["pxe"]["subs"]] == [6, 8, 9, 10]
    assert r["pxe"]["menu"] == [{"type": 0x8000, "desc": "Network Boot"}, {"type": 0, "desc": "Boot from local disk"}]
    assert r["pxe"]["prompt"] == {"timeout": 5, "text": "Press F8 for boot menu"}
    # on the wire: broadcast to 255.255.255.255:68 from the server's own address and port 67
    assert (r["eth_dst"], r["eth_src"]) == ("ff:ff:ff:ff:ff:ff", netns.SERVER_MAC)
    assert (r["ip_src"], r["ip_dst"], r["udp_sport"], r["udp_dport"]) == (SRV, "255.255.255.255", 67, 68)
    assert r["ip_tos"] == 0xC0  # dnsmasq marks DHCP with IPTOS_CLASS_CS6
    # 240 + options, ending in END with nothing after: 360 bytes, no padding above 300
    assert r["length"] == 360 and r["options_facts"]["after_end"] == 0 and r["cookie"]


@pytest.mark.parametrize("arch", [6, 7, 9, 11])
def test_uefi_discover_gets_siaddr_no_43(cl, arch):
    ex = cl.discover(arch)
    r = ex.reply
    assert r["msg_type"] == "OFFER" and r["flags"] == 0x8000
    assert r["siaddr"] == SRV and r["yiaddr"] == "0.0.0.0"
    assert r["file"] == "" and r["sname"] == ""
    assert [c for c, _ in r["options"]] == [53, 54, 60, 97] and "pxe" not in r
    assert (r["ip_dst"], r["udp_dport"], r["eth_dst"]) == ("255.255.255.255", 68, "ff:ff:ff:ff:ff:ff")
    # short replies are zero-padded to the BOOTP minimum of 300 bytes
    assert r["length"] == 300 and r["options_facts"]["after_end"] > 0
    assert not r["options_facts"]["after_end_nonzero"]


@pytest.mark.parametrize("kw", [dict(arch=16), dict(arch=0, vendor_class="MSFT 5.0"),
                                dict(arch=0, vendor_class="")], ids=["httpclient", "not-pxe", "empty-60"])
def test_no_answer(cl, kw):
    assert cl.discover(expect=None, wait=0.5, **kw).replies == []


@pytest.mark.parametrize("form", ["plain", "rfc3004"])
def test_ipxe_user_class_changes_nothing_here(cl, form):
    """Without dhcp-userclass/tag rules, iPXE gets the same offer as the firmware."""
    plain = cl.discover(0).reply
    ipxe = cl.discover(0, ipxe=True, user_class_form=form).reply
    assert compare(plain, ipxe, allow=["xid"]) == []


# --- port 4011 --------------------------------------------------------------------------
@pytest.mark.parametrize("sport", [4011, 68], ids=["ovmf-sport4011", "ipxe-sport68"])
@pytest.mark.parametrize("arch", [7, 9, 11])
def test_request_4011_acked_to_source_port(cl, arch, sport):
    ex = cl.request_4011(arch, sport=sport)
    r = ex.reply
    assert r["msg_type"] == "ACK" and r["xid"] == ex.sent["xid"] and r["flags"] == 0
    assert (r["ciaddr"], r["yiaddr"], r["siaddr"], r["giaddr"]) == (CLI, "0.0.0.0", SRV, "0.0.0.0")
    assert r["file"] == UEFI_FILES[arch]
    assert r["sname"] == SRV  # dnsmasq puts the boot server's address, as text, in sname
    assert [c for c, _ in r["options"]] == [53, 54, 60, 97]
    assert opts(r)[53] == "05" and opts(r)[54] == SRV_HEX
    # unicast straight back to the request's source address and port
    assert (r["ip_src"], r["udp_sport"]) == (SRV, 4011)
    assert (r["ip_dst"], r["udp_dport"], r["eth_dst"]) == (CLI, sport, netns.CLIENT_MAC)
    assert r["length"] == 300


def test_request_4011_arch_without_service(cl):
    """IA32 EFI (6) has no pxe-service: ACK without a file, 43 = control 8 + prompt."""
    r = cl.request_4011(6).reply
    assert r["msg_type"] == "ACK" and r["file"] == "" and r["sname"] == "" and r["siaddr"] == SRV
    assert opts(r)[43] == "060108" + PROMPT_HEX + "ff"


def test_request_4011_bios_without_item_gets_menu(cl):
    r = cl.request_4011(0).reply
    assert r["msg_type"] == "ACK" and r["siaddr"] == "0.0.0.0" and r["file"] == ""
    assert opts(r)[43] == BIOS_MENU_43


def test_inform_4011_unanswered(cl):
    assert cl.request_4011(7, msg_type=8, expect=None, wait=0.5).replies == []


@pytest.mark.parametrize("broadcast", [True, False], ids=["bcast67", "unicast4011"])
@pytest.mark.parametrize("layer,file", [(0, "pxelinux.0"), (1, "pxelinux.1")])
def test_boot_server_request(cl, broadcast, layer, file):
    """PXE boot-server discovery: REQUEST with 43/71 (type 0x8000 from the menu)."""
    ex = cl.boot_server_request((0x8000, layer), broadcast=broadcast)
    r = ex.reply
    assert r["msg_type"] == "ACK" and r["flags"] == 0
    # dnsmasq answers with ciaddr cleared and the client's address in yiaddr
    assert (r["ciaddr"], r["yiaddr"], r["siaddr"]) == ("0.0.0.0", CLI, SRV)
    assert r["file"] == file and r["sname"] == ""
    assert [c for c, _ in r["options"]] == [53, 54, 60, 97, 43]
    assert opts(r)[43] == "4704" + f"8000{layer:04x}" + PROMPT_HEX + "ff"
    assert r["pxe"]["boot_item"] == {"type": 0x8000, "layer": layer}
    assert (r["ip_dst"], r["udp_dport"], r["udp_sport"]) == (CLI, 68, 67 if broadcast else 4011)
    assert r["length"] == 314


def test_nbp_over_tftp(cl):
    res = cl.tftp(SRV, "pxelinux.0")
    assert res["ok"] and res["data"] == NBP_FILES["pxelinux.0"]


# --- relay ------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", [0, 7])
def test_relayed_discover_goes_to_relay(cl, arch):
    direct = cl.discover(arch).reply
    ex = cl.discover(arch, relay=True)
    r = ex.reply
    assert ex.sent["giaddr"] == RELAY and ex.sent["hops"] == 1
    assert (r["giaddr"], r["hops"], r["flags"]) == (RELAY, 1, 0x8000)
    assert (r["ip_src"], r["udp_sport"], r["ip_dst"], r["udp_dport"]) == (SRV, 67, RELAY, 67)
    assert r["eth_dst"] == netns.CLIENT_MAC  # the relay's MAC: it lives in the client namespace
    # otherwise identical to the direct answer
    assert compare(direct, r, allow=["xid", "giaddr", "hops", "eth_dst", "ip_dst", "udp_dport"]) == []


# --- other configs --------------------------------------------------------------------
def test_dhcp_boot_leaves_bios_siaddr_zero(lan, client, servers, tftp_root):
    """dhcp-boot without a server address: BIOS gets file but siaddr 0.0.0.0 (real iPXE
    then fails with "Nothing to boot"); UEFI gets siaddr and the same file, no 43."""
    servers.dnsmasq(lan["srv"], "dhcp-range=10.213.0.0,proxy\ndhcp-boot=pxelinux.0\npxe-prompt=\"Booting\",0\n")
    bios = client.discover(0).reply
    assert (bios["file"], bios["siaddr"]) == ("pxelinux.0", "0.0.0.0")
    assert opts(bios)[43] == "060108" + "0a08" + "00" + b"Booting".hex() + "ff"
    uefi = client.discover(7).reply
    assert (uefi["file"], uefi["siaddr"]) == ("pxelinux.0", SRV) and 43 not in opts(uefi)


def test_default_prompt_and_suboption_order_without_pxe_prompt(lan, client, servers):
    """No pxe-prompt: dnsmasq invents prompt "PXE" timeout 0, and writes 10 before 8 and 9."""
    servers.dnsmasq(lan["srv"], 'dhcp-range=10.213.0.0,proxy\npxe-service=x86PC,"Network Boot",pxelinux\n'
                                'pxe-service=x86-64_EFI,"UEFI",ipxe\n')
    r = client.discover(0).reply
    assert [c for c, _ in r["pxe"]["subs"]] == [6, 10, 8, 9]
    assert r["pxe"]["prompt"] == {"timeout": 0, "text": "PXE"}
    # a basename without a dot gets ".0" (layer 0) also for UEFI
    assert client.request_4011(7).reply["file"] == "ipxe.0"


def test_beside_an_ordinary_dhcp_server(lan_with_dhcp, servers, tftp_root):
    """Three hosts on a bridge: dnsmasq as a plain DHCP server (no PXE) leases the address,
    the proxy gives the boot information, the NBP comes over TFTP byte-exact."""
    lan = lan_with_dhcp
    servers.dnsmasq(lan["dhcp"], "dhcp-range=10.213.0.100,10.213.0.150,255.255.255.0,1h\nno-ping\n",
                    ports=(67,), name="dhcp")
    servers.dnsmasq(lan["srv"], MENU_CONF.format(tftp_root=tftp_root), ports=(67, 4011, 69))
    from .conftest import _client_for
    c = _client_for(lan)
    offers = c.discover(0, expect=2).replies
    assert sorted(r["ip_src"] for r in offers) == sorted([netns.DHCP_ADDR, SRV])
    lease_offer = next(r for r in offers if r["ip_src"] == netns.DHCP_ADDR)
    proxy_offer = next(r for r in offers if r["ip_src"] == SRV)
    assert lease_offer["yiaddr"].startswith("10.213.0.1") and "pxe" not in lease_offer
    assert proxy_offer["yiaddr"] == "0.0.0.0" and opts(proxy_offer)[43] == BIOS_MENU_43
    ack = c.select(lease_offer, 0, xid=lease_offer["xid"]).reply
    assert ack["msg_type"] == "ACK" and ack["ip_src"] == netns.DHCP_ADDR
    leased = ack["yiaddr"]
    lan["cli"].add_addr(f"{leased}/24")
    c.addr = leased
    boot = c.boot_server_request((0x8000, 0), broadcast=False).reply
    assert (boot["file"], boot["siaddr"], boot["yiaddr"]) == ("pxelinux.0", SRV, leased)
    got = c.tftp(boot["siaddr"], boot["file"])
    assert got["ok"] and got["data"] == NBP_FILES["pxelinux.0"]


# --- the differential core -----------------------------------------------------------
def test_differential_dnsmasq_against_itself(lan, client, servers, tftp_root):
    """Two dnsmasq runs (stopped and restarted between) agree on every probe; a changed
    prompt shows up as exactly the differences it should."""
    scen = Scenario("menu", MENU_CONF)
    conf = scen.conf_for(str(tftp_root))
    runs = []
    for body in (conf, conf):
        srv = servers.dnsmasq(lan["srv"], body)
        runs.append(run_probes(client, scen.probes, salt=scen.name))
        srv.stop()
    assert len(runs[0]) == len(scen.probes) >= 20
    assert sum(1 for r in runs[0].values() if r) >= 15  # most probes get an answer
    assert compare_runs(runs[0], runs[1], names=("dnsmasq", "dnsmasq")) == []
    # the same probes against a changed prompt: only the prompt and what follows from it
    bios = [p for p in scen.probes if p.name in ("discover-arch0", "relay-discover-arch0", "request4011-arch6")]
    with servers.dnsmasq(lan["srv"], conf.replace("Press F8 for boot menu", "Hit F8")):
        changed = run_probes(client, bios, salt=scen.name)
    diff = compare_runs({k: runs[0][k] for k in changed}, changed, names=("before", "after"))
    assert any(d.startswith("discover-arch0: pxe:10: before=05") for d in diff), diff
    assert all(d.split(": ")[1] in ("pxe:10", "length") for d in diff), diff
    assert compare_runs({k: runs[0][k] for k in changed}, changed, allow=["pxe:10", "length"]) == []


# --- units: the simulator's codec and compare() (no namespaces needed) ------------------
def test_codec_roundtrip_and_rfc3396_split():
    prof = ClientProfile(arch=7, ipxe=True, user_class_form="rfc3004")
    pkt = discover(prof, xid=0xDEADBEEF, extra=[(224, bytes(300))])
    assert len(pkt) == 548 or len(pkt) > 548
    d = decode_bootp(pkt)
    assert d["xid"] == 0xDEADBEEF and d["chaddr"] == prof.mac and d["op"] == 1
    codes = [c for c, _ in d["options"]]
    assert codes[:7] == [53, 57, 55, 97, 94, 93, 60] and codes.count(224) == 2  # split at 255
    o = {c: bytes.fromhex(h) for c, h in d["options"] if c != 224}
    assert o[60] == b"PXEClient:Arch:00007:UNDI:003000" and o[93] == b"\x00\x07"
    assert o[77] == b"\x04iPXE" and o[94] == b"\x01\x03\x10" and o[57] == struct.pack("!H", 1472)
    assert o[97][0] == 0 and len(o[97]) == 17 and 175 in o
    http = decode_bootp(discover(ClientProfile(arch=16), xid=1))
    assert {c: h for c, h in http["options"]}[60] == b"HTTPClient:Arch:00016:UNDI:003001".hex()
    req = decode_bootp(request(ClientProfile(arch=0), xid=2, ciaddr=CLI, item=(0x8000, 1)))
    assert req["ciaddr"] == CLI and req["pxe"]["boot_item"] == {"type": 0x8000, "layer": 1}


def test_codec_overload_and_frame():
    opts_in_file = encode_options([(67, b"boot.efi")]) + b"\xff"
    pkt = build_bootp(op=2, xid=5, file=opts_in_file, options=[(53, b"\x02"), (52, b"\x01")])
    d = decode_bootp(pkt)
    assert d["file"] == "" and [c for c, _ in d["options"]] == [53, 52, 67]
    frame = build_frame(pkt, src_mac="02:00:00:00:00:01", src_ip=SRV, dst_ip="255.255.255.255", sport=67, dport=68)
    f = decode_frame(frame)
    assert f["udp_csum_ok"] is True and f["ip_src"] == SRV and f["udp_dport"] == 68 and f["xid"] == 5


def test_compare_reports_and_allows():
    base = decode_bootp(build_bootp(op=2, xid=7, siaddr=SRV, file=b"a.efi",
                                    options=[(53, b"\x02"), (54, socket.inet_aton(SRV)),
                                             (43, bytes.fromhex("060103" "0a0305414200") + b"\xff")]))
    other = decode_bootp(build_bootp(op=2, xid=7, file=b"b.efi",
                                     options=[(54, socket.inet_aton(SRV)), (53, b"\x02"),
                                              (43, bytes.fromhex("060108") + b"\xff")]))
    diff = compare(base, other, names=("dnsmasq", "bootstorm"))
    assert "siaddr: dnsmasq='10.213.0.1' bootstorm='0.0.0.0'" in diff
    assert "file: dnsmasq='a.efi' bootstorm='b.efi'" in diff
    assert "option-order: dnsmasq=[53, 54, 43] bootstorm=[54, 53, 43]" in diff
    assert any(d.startswith("pxe:6: dnsmasq=03") for d in diff)
    assert any(d.startswith("pxe:10: dnsmasq=") and "bootstorm=absent" in d for d in diff)
    assert compare(base, other, allow=["siaddr", "file", "option-order", "pxe:*"]) == []
    assert compare(base, None) == ["reply: a=OFFER b=none"]
    assert compare(base, base) == []


def test_compare_sees_where_an_overloaded_reply_put_its_options():
    """The same options, once in `file` and once in `sname`: option 52, the areas and the
    sub-options after option 43's end marker (file's, read after the options field's) differ."""
    tail = bytes.fromhex("200141") + b"\xff"  # sub-option 32 after the end marker's instance
    opts = [(53, b"\x02"), (43, bytes.fromhex("060103ff"))]
    in_file = decode_bootp(build_bootp(op=2, xid=7, file=bytes([43, len(tail)]) + tail + b"\xff",
                                       options=opts + [(52, b"\x01")]))
    in_sname = decode_bootp(build_bootp(op=2, xid=7, sname=bytes([43, len(tail)]) + tail + b"\xff",
                                        options=opts + [(52, b"\x02")]))
    assert in_file["overloaded"] == [["file", 43, 4]] and in_file["pxe"]["after_end"] == tail.hex()
    assert compare(in_file, in_sname) == ["overload: a=1 b=2", "overloaded: a=[['file', 43, 4]] b=[['sname', 43, 4]]",
                                          "option:52: a=01 b=02"]
    alone = decode_bootp(build_bootp(op=2, xid=7, options=opts + [(52, b"\x02")]))  # 52 names an empty sname
    assert compare(in_sname, alone, allow=["overloaded", "option-order"]) == [f"pxe-after-end: a={tail.hex()} b=None"]


def test_lan_is_removed_even_on_failure(netns_required):
    names = []
    with pytest.raises(RuntimeError):
        with netns.pxe_lan(with_dhcp=True) as segment:
            names = segment.namespaces
            assert len(names) == 4  # srv, cli, dhcp and the bridge
            raise RuntimeError("boom")
    left = set(netns.list_namespaces())
    assert names and not (set(names) & left)
