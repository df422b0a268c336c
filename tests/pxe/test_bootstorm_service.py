"""bootstorm as a user runs it: beside an ordinary DHCP server, and under a malformed flood."""

from __future__ import annotations

import re

from . import netns
from .conftest import NBP_FILES, _client_for
from .flood import KINDS, run_flood

SRV = netns.SERVER_ADDR
SRV_HEX = bytes(map(int, SRV.split("."))).hex()

MENU_TOML = """
[tftp]
root = "{root}"

[dhcp]
interfaces = ["eth0"]
ranges = [{{ network = "10.213.0.0" }}]
prompts = [{{ text = "Press F8 for boot menu", timeout = 5 }}]
services = [
  {{ arch = "x86PC", menu = "Network Boot", file = "pxelinux" }},
  {{ arch = "x86PC", menu = "Boot from local disk" }},
  {{ arch = 7, menu = "UEFI Boot", file = "ipxe.efi" }},
  {{ arch = 9, menu = "UEFI BC Boot", file = "bootx64.efi" }},
]
"""


def _stats(log: str) -> dict[str, int]:
    m = re.findall(r"dhcp-stats (.*)", log)
    assert m, f"no dhcp-stats line in the log:\n{log[-2000:]}"
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m[-1])}


def _udp_snmp(ns: str) -> dict[str, int]:
    lines = [ln.split() for ln in netns.run(["ip", "netns", "exec", ns, "cat", "/proc/net/snmp"]).stdout.splitlines()
             if ln.startswith("Udp:")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))


def test_beside_an_ordinary_dhcp_server(lan_with_dhcp, servers, tftp_root, tmp_path):
    """dnsmasq gives the address (no PXE at all), bootstorm the boot information and the NBP."""
    lan = lan_with_dhcp
    servers.dnsmasq(lan["dhcp"], "dhcp-range=10.213.0.100,10.213.0.150,255.255.255.0,1h\nno-ping\n",
                    ports=(67,), name="dhcp")
    toml = tmp_path / "pxe.toml"
    toml.write_text(MENU_TOML.format(root=tftp_root))
    bs = servers.bootstorm(lan["srv"], toml=toml, ports=(67, 4011, 69))
    c = _client_for(lan)
    for arch, nbp in ((0, "pxelinux.0"), (7, "ipxe.efi")):
        offers = c.discover(arch, expect=2).replies
        assert sorted(r["ip_src"] for r in offers) == sorted([netns.DHCP_ADDR, SRV]), offers
        lease = next(r for r in offers if r["ip_src"] == netns.DHCP_ADDR)
        proxy = next(r for r in offers if r["ip_src"] == SRV)
        # the DHCP server: an address, nothing about booting
        assert lease["yiaddr"].startswith("10.213.0.1") and "pxe" not in lease and lease["file"] == ""
        # bootstorm: no address, the boot information
        assert proxy["yiaddr"] == "0.0.0.0" and proxy["vendor_class"] == "PXEClient"
        ack = c.select(lease, arch, xid=lease["xid"]).reply
        assert ack["msg_type"] == "ACK" and ack["ip_src"] == netns.DHCP_ADDR
        leased = ack["yiaddr"]
        if f"{leased}/24" not in lan["cli"].addrs:
            lan["cli"].add_addr(f"{leased}/24")
        c.addr = leased
        if arch == 0:
            item = proxy["pxe"]["menu"][0]["type"]
            assert proxy["pxe"]["boot_servers"] == [{"type": item, "ips": [SRV]}]
            boot = c.boot_server_request((item, 0), broadcast=False).reply
            assert (boot["file"], boot["siaddr"], boot["yiaddr"]) == (nbp, SRV, leased)
        else:  # UEFI: sent on to port 4011 by siaddr, then the single-service ACK
            assert proxy["siaddr"] == SRV and "pxe" not in proxy
            boot = c.request_4011(arch, sport=4011).reply
            assert (boot["file"], boot["siaddr"], boot["ciaddr"], boot["ip_dst"]) == (nbp, SRV, leased, leased)
        got = c.tftp(boot["siaddr"], boot["file"])
        assert got["ok"] and got["size"] == len(NBP_FILES[nbp])
        if got["data"] is not None:
            assert got["data"] == NBP_FILES[nbp]
        else:
            import zlib
            assert got["crc32"] == zlib.crc32(NBP_FILES[nbp])
    bs.stop()
    assert re.search(r"tftp-stats|transfer", bs.log), bs.log[-2000:]


def test_malformed_flood_then_good_discover(lan, client, servers, tmp_path, tftp_root):
    """5000 malformed datagrams at :67 and :4011 (bounded: at most 10 s); afterwards a good
    DISCOVER is answered within a second; every one is counted as dropped, none answered,
    and the log is not flooded (at most 10 dhcp-malformed lines a second plus summaries)."""
    toml = tmp_path / "pxe.toml"
    toml.write_text(MENU_TOML.format(root=tftp_root))
    bs = servers.bootstorm(lan["srv"], toml=toml, extra=["--no-tftp"])
    before = _udp_snmp(lan["srv"].ns)
    res = run_flood(lan["cli"].ns, "malformed", "--server", SRV, "--count", "5000", "--seconds", "10")
    assert res["sent"] == 5000 and set(res["by_kind"]) == set(KINDS), res
    ex = client.discover(0, wait=1.0)
    r = ex.reply
    assert r["msg_type"] == "OFFER" and r["t"] < 1.0 and r["pxe"]["menu"]
    assert bs.alive(), bs.log[-2000:]
    after = _udp_snmp(lan["srv"].ns)
    bs.stop()
    st = _stats(bs.log)
    kernel_dropped = after["RcvbufErrors"] - before["RcvbufErrors"]
    # every datagram that reached the service was counted as malformed and never answered
    assert st["malformed"] + kernel_dropped == 5000, (st, kernel_dropped)
    assert st["received"] == st["malformed"] + 1 and st["answered"] == 1 and st["send_errors"] == 0
    lines = bs.log.count("dhcp-malformed ")
    suppressed = sum(int(n) for n in re.findall(r"dhcp-malformed-suppressed .*count=(\d+)", bs.log))
    assert lines + suppressed == st["malformed"]
    assert lines <= 10 * (1 + int(res["seconds"]) + 2), f"{lines} dhcp-malformed lines: the log is flooded"


def test_a_reply_cut_for_a_small_client_is_logged_and_counted(lan, client, servers, tmp_path):
    """A client without option 57 takes 548 bytes: a menu with a 240-byte prompt loses the
    prompt there (one dhcp-reply-cut line, cut_replies=1); a client at 1472 gets it all."""
    toml = tmp_path / "pxe.toml"
    toml.write_text(MENU_TOML.format(root=tmp_path).replace("Press F8 for boot menu", "P" * 240))
    bs = servers.bootstorm(lan["srv"], toml=toml, extra=["--no-tftp"])
    small = client.discover(0, max_size=None).reply
    big = client.discover(0).reply
    bs.stop()
    assert small["length"] <= 548 and "prompt" not in small["pxe"] and small["pxe"]["menu"]
    assert big["length"] > 548 and big["pxe"]["prompt"]["text"] == "P" * 240
    (line,) = re.findall(r"dhcp-reply-cut .*", bs.log)
    assert line == f"dhcp-reply-cut options left out: 43 mac={lan['cli'].mac} max_size=548", line
    assert _stats(bs.log)["cut_replies"] == 1


def test_pxe_options_from_a_dnsmasq_conf_reach_the_client(lan, servers, client):
    """dhcp-option-pxe lines (dnsmasq 2.91) through the drop-in contract, on the wire: after
    option 43 on port 67 (BIOS) and 4011 (UEFI, no 43 on 67 but the options still), newest
    line first, 0.0.0.0 as the server's address, iPXE's encap:175 sub-options in one 175."""
    servers.bootstorm(lan["srv"], body=(
        "dhcp-range=10.213.0.0,proxy\n"
        'pxe-service=x86PC,"Network Boot",pxelinux\n'
        'pxe-service=x86-64_EFI,"UEFI",ipxe.efi\npxe-service=x86-64_EFI,"Other",bootx64.efi\n'
        "dhcp-option-pxe=encap:175,176,1b\n"  # iPXE: no proxyDHCP wait
        "dhcp-option-pxe=209,pxelinux.cfg/lab\n"
        "dhcp-option-pxe=option:ntp-server,0.0.0.0\n"
        "dhcp-option-pxe=encap:175,190,admin\n"))
    want = [[42, SRV_HEX], [209, b"pxelinux.cfg/lab".hex()],
            [175, (bytes([190, 5]) + b"admin" + bytes([176, 1, 1, 255])).hex()]]
    bios = client.discover(0).reply
    assert [c for c, _ in bios["options"]][:5] == [53, 54, 60, 97, 43] and bios["options"][5:] == want
    uefi = client.discover(7).reply
    assert 43 not in [c for c, _ in uefi["options"]] and uefi["options"][-3:] == want
    ack = client.request_4011(7, sport=4011).reply
    assert ack["pxe"]["menu"] and ack["options"][-3:] == want


def test_reply_delay_holds_proxy_replies_not_boot_server_acks(lan, servers, client, tftp_root):
    """dhcp-reply-delay, as dnsmasq applies it: the proxy OFFER (and the 4011 ACK) leave
    no sooner than the delay after the request, so that the site's DHCP server answers
    first; the boot-server ACK, which no DHCP server competes for, leaves at once."""
    delay = 2
    servers.bootstorm(lan["srv"], body=(
        f"dhcp-range=10.213.0.0,proxy\ndhcp-reply-delay={delay}\n"
        'pxe-service=x86PC,"Network Boot",pxelinux\npxe-service=x86PC,"Local"\n'))
    with client.batch():
        offer = client.discover(0, wait=delay + 2)
        ack = client.boot_server_request((0x8000, 0), wait=delay + 2)
    assert offer.reply["msg_type"] == "OFFER" and offer.reply["t"] >= delay
    assert ack.reply["file"] == "pxelinux.0" and ack.reply["t"] < delay
