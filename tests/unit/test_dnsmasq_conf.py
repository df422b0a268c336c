"""dnsmasq conf files and command line -> Config (src/bootstorm/dnsmasq.py)."""
from __future__ import annotations

import os

import msgspec
import pytest

from bootstorm import cli, dnsmasq
from bootstorm.config import (BootFile, Config, DhcpOption, ProxyRange, PxePrompt, PxeService, ReplyDelay,
                              TagRule, TftpConfig, VendorOption)
from bootstorm.errors import ConfigError

HEAD = "port=0\ndhcp-range=192.168.1.0,proxy\n"


def conf(tmp_path, text, name="pxe.conf"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def load(tmp_path, text):
    return dnsmasq.load(conf(tmp_path, text))


def dhcp(tmp_path, text):
    return load(tmp_path, HEAD + text).config.dhcp


def error(tmp_path, text) -> str:
    path = conf(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        dnsmasq.load(path)
    return str(e.value)


# -- the line syntax


def H(s):
    return "".join(dnsmasq._HIDE.get(c, c) for c in s)


@pytest.mark.parametrize("raw, want", [
    ('pxe-service=x86PC, "Boot, now" ,pxelinux', "pxe-service=x86PC, " + H("Boot, now") + " ,pxelinux"),
    ("  port = 0   # comment", "port = 0"),
    ("tftp-root=/srv/a#b", "tftp-root=/srv/a#b"),  # '#' not after white space is no comment
    ('pxe-prompt="a\\tb\\"c"', "pxe-prompt=" + H('a\tb"c')),
    ("# whole line", ""),
    ("log-dhcp\t", "log-dhcp"),
    ('a="x"" y', "a=" + H("x") + '" y'),  # the character after a closing quote opens nothing
])
def test_scan_line(raw, want):
    assert dnsmasq.scan_line(raw) == want


def test_scan_line_unterminated_quote():
    with pytest.raises(ValueError):
        dnsmasq.scan_line('a="x"" y"')


def test_missing_quote_names_line(tmp_path):
    assert error(tmp_path, "port=0\npxe-prompt=\"oops\n").endswith('pxe.conf:2: missing "')


def test_quoted_comma_and_hash_kept(tmp_path):
    d = dhcp(tmp_path, 'pxe-service=x86PC,"Boot, #1 \\"fast\\"",pxelinux\n')
    assert d.services == [PxeService(arch=0, menu='Boot, #1 "fast"', file="pxelinux")]


def test_spaces_around_equals_and_commas(tmp_path):
    d = dhcp(tmp_path, "pxe-prompt = \"Hi\" , 7\n")
    assert d.prompts == [PxePrompt(text="Hi", timeout=7)]


def test_unknown_option_and_arity(tmp_path):
    assert "pxe.conf:3: no-such-thing: bad option" in error(tmp_path, HEAD + "no-such-thing=1\n")
    assert "pxe.conf:3: log-dhcp: extraneous parameter" in error(tmp_path, HEAD + "log-dhcp=yes\n")
    assert "pxe.conf:3: pxe-service: missing parameter" in error(tmp_path, HEAD + "pxe-service\n")


# -- conf-file and conf-dir


def test_conf_dir_filters_and_order(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "b.conf").write_text('pxe-service=x86PC,"B"\n')
    (d / "a.conf").write_text('pxe-service=x86PC,"A"\n')
    (d / "c.bak").write_text("bad option\n")
    (d / "x.txt").write_text("bad option\n")
    (d / ".hidden.conf").write_text("bad option\n")
    (d / "e.conf~").write_text("bad option\n")
    (d / "#f.conf#").write_text("bad option\n")
    r = load(tmp_path, HEAD + f"conf-dir={d},*.conf\n")
    assert [s.menu for s in r.config.dhcp.services] == ["A", "B"]
    r = load(tmp_path, HEAD + f"conf-dir={d},.bak,.txt\n")
    assert [s.menu for s in r.config.dhcp.services] == ["A", "B"]
    assert "x.txt:1: bad option: bad option" in error(tmp_path, HEAD + f"conf-dir={d},.bak\n")


def test_conf_file_included_once(tmp_path):
    inc = conf(tmp_path, 'pxe-service=x86PC,"A"\n', "inc.conf")
    r = load(tmp_path, HEAD + f"conf-file={inc}\nconf-file={inc}\n")
    assert len(r.config.dhcp.services) == 1
    assert r.files[-1] == inc


def test_missing_conf_file(tmp_path):
    assert "pxe.conf:3: cannot read /nonexistent.conf" in error(tmp_path, HEAD + "conf-file=/nonexistent.conf\n")


# -- DHCP mappings


def test_dhcp_range_forms(tmp_path):
    d = load(tmp_path, "port=0\ndhcp-range=tag:lab,set:pxe,10.1.0.0,proxy,255.255.0.0\n"
                       "dhcp-range=192.168.1.0,proxy\n").config.dhcp
    assert d.ranges == [ProxyRange(network="10.1.0.0", netmask="255.255.0.0", tags=["lab"], set="pxe"),
                        ProxyRange(network="192.168.1.0")]
    d = load(tmp_path, "port=0\ndhcp-range=old,10.0.0.0,proxy\n").config.dhcp
    assert d.ranges[0].set == "old"


def test_dhcp_range_rejections(tmp_path):
    e = error(tmp_path, "port=0\ndhcp-range=10.0.0.10,10.0.0.50,12h\n")
    assert "pxe.conf:2: dhcp-range: an address range hands out addresses" in e and "proxy" in e
    assert "static hands out" in error(tmp_path, "port=0\ndhcp-range=10.0.0.0,static\n")
    assert "IPv4 PXE only" in error(tmp_path, "port=0\ndhcp-range=::,proxy\n")
    assert "only one tag allowed" in error(tmp_path, "dhcp-range=set:a,set:b,10.0.0.0,proxy\n")


def test_pxe_service_forms(tmp_path):
    d = dhcp(tmp_path, 'pxe-service=tag:bios,x86PC,"Net",pxelinux\n'
                       'pxe-service=x86pc,"Local"\n'
                       'pxe-service=7,"Other",1234\n'
                       'pxe-service=BC_EFI,"Far",grubx64.efi,10.0.0.9\n'
                       'pxe-service=ARM64_EFI,"Named",grub,boot.example\n')
    assert d.services == [
        PxeService(arch=0, menu="Net", file="pxelinux", tags=["bios"]),
        PxeService(arch=0, menu="Local"),
        PxeService(arch=7, menu="Other", type=1234),
        PxeService(arch=9, menu="Far", file="grubx64.efi", server="10.0.0.9"),
        PxeService(arch=11, menu="Named", file="grub", server_name="boot.example"),
    ]


def test_pxe_service_unknown_csa(tmp_path):
    e = error(tmp_path, HEAD + 'pxe-service=x86_64,"x",y\n')
    assert e.endswith("pxe.conf:3: pxe-service: unknown CSA 'x86_64' (one of x86PC, PC98, IA64_EFI, Alpha, "
                      "Arc_x86, Intel_Lean_Client, IA32_EFI, x86-64_EFI, Xscale_EFI, BC_EFI, ARM32_EFI, "
                      "ARM64_EFI, or a number)")


def test_pxe_prompt_and_dhcp_boot_order(tmp_path):
    d = dhcp(tmp_path, 'pxe-prompt="Wait"\npxe-prompt=tag:x,"X",300\n'
                       "dhcp-boot=pxelinux.0\ndhcp-boot=tag:ipxe,boot.ipxe,sname,10.0.0.2\n"
                       "dhcp-boot=tag:b,f,,tftp.example\n")
    # dnsmasq prepends both lists: the last matching line wins
    assert d.prompts == [PxePrompt(text="X", timeout=300 & 0xFF, tags=["x"]), PxePrompt(text="Wait", timeout=255)]
    assert d.boot == [BootFile(file="f", server_name="tftp.example", tags=["b"]),
                      BootFile(file="boot.ipxe", server="10.0.0.2", tags=["ipxe"]),
                      BootFile(file="pxelinux.0")]


def test_tag_rules(tmp_path):
    d = dhcp(tmp_path, "dhcp-match=set:ipxe,175\n"
                       "dhcp-match=efi,option:client-arch,7\n"
                       "dhcp-match=set:bios,60,PXEClient:Arch:00000\n"
                       "dhcp-vendorclass=set:pxe,PXEClient\n"
                       "dhcp-vendorclass=set:v,enterprise:3561,Foo\n"
                       "dhcp-userclass=set:ipxe2,iPXE\n"
                       "dhcp-mac=set:vm,52:54:00:*:*:*\n"
                       "tag-if=set:a,set:b,tag:ipxe,tag:!efi\n"
                       "tag-if=set:always\n")
    assert d.rules == [
        TagRule(set="ipxe", option=175), TagRule(set="efi", option=93, value="7"),
        TagRule(set="bios", option=60, value="PXEClient:Arch:00000"),
        TagRule(set="pxe", vendor_class="PXEClient"), TagRule(set="v", vendor_class="Foo"),
        TagRule(set="ipxe2", user_class="iPXE"), TagRule(set="vm", mac="52:54:00:*:*:*"),
        TagRule(set="a", tags=["ipxe", "!efi"]), TagRule(set="b", tags=["ipxe", "!efi"]),
        TagRule(set="always"),
    ]


def test_dhcp_match_rejections(tmp_path):
    assert "hex value" in error(tmp_path, HEAD + "dhcp-match=set:x,97,00:01\n")
    assert "unknown option name 'nope'" in error(tmp_path, HEAD + "dhcp-match=set:x,option:nope\n")
    assert "vendor-identifying" in error(tmp_path, HEAD + "dhcp-match=set:x,vi-encap:3561,a\n")
    assert "pxe.conf:3: dhcp-mac: bad MAC" in error(tmp_path, HEAD + "dhcp-mac=set:x,52:54\n")


def test_hosts_ignore_and_known(tmp_path):
    d = dhcp(tmp_path, "dhcp-host=52:54:00:00:00:01,set:lab,10.0.0.5,infinite\n"
                       "dhcp-host=52:54:00:00:00:02,ignore\n"
                       "dhcp-ignore=tag:!known\n"
                       "dhcp-ignore=tag:a,b\n")
    assert d.rules == [
        TagRule(set="known", mac="52:54:00:00:00:01"), TagRule(set="lab", mac="52:54:00:00:00:01"),
        TagRule(set="known", mac="52:54:00:00:00:02"), TagRule(set="dhcp-host-ignore", mac="52:54:00:00:00:02"),
    ]
    assert d.ignore == [["!known"], ["a", "b"], ["dhcp-host-ignore"]]
    assert "by MAC only" in error(tmp_path, HEAD + "dhcp-host=id:01:02,set:x\n")


def test_hostsfile(tmp_path):
    hf = conf(tmp_path, "52:54:00:00:00:09,set:h\n", "hosts")
    d = dhcp(tmp_path, f"dhcp-hostsfile={hf}\n")
    assert d.rules == [TagRule(set="h", mac="52:54:00:00:00:09")]
    assert "watches no directory" in error(tmp_path, HEAD + f"dhcp-hostsdir={tmp_path}\n")


def test_replay_reads_hosts_and_options_files_again_and_conf_files_not(tmp_path):
    """SIGHUP's reading (dnsmasq.replay of Result.script): the options as read at the start,
    in their order, with the hosts and options files read afresh; the conf files, even one
    in a conf-dir, are not read again (here: gone), so their edits wait for a restart."""
    hf = conf(tmp_path, "52:54:00:00:00:09,set:h\n", "hosts")
    of = conf(tmp_path, "vendor:PXEClient,6,2b\n", "opts")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "more.conf").write_text('pxe-service=x86PC,"More",more\n')
    main = conf(tmp_path, f"{HEAD}dhcp-hostsfile={hf}\ndhcp-optsfile={of}\nconf-dir={tmp_path / 'd'}\n"
                          'pxe-service=x86PC,"Last",last\n')
    first = dnsmasq.parse_args([f"--conf-file={main}", "--dhcp-reply-delay=1"], default_conf=None)
    assert first.reloadable == [hf, of]
    conf(tmp_path, "52:54:00:00:00:0a,set:g\n", "hosts")
    conf(tmp_path, "vendor:PXEClient,6,08\n", "opts")
    os.unlink(main)
    (tmp_path / "d" / "more.conf").unlink()
    again = dnsmasq.replay(first.script)
    old, new = first.config.dhcp, again.config.dhcp
    assert new.rules == [TagRule(set="g", mac="52:54:00:00:00:0a")] != old.rules
    assert [o.hex for o in new.vendor_options] == ["08"] != [o.hex for o in old.vendor_options]
    assert [s.menu for s in new.services] == [s.menu for s in old.services] == ["More", "Last"]
    assert new.reply_delay == old.reply_delay == 1.0
    conf(tmp_path, "not-a-mac,ignore\n", "hosts")
    with pytest.raises(ConfigError, match=f"^{hf}:1: "):
        dnsmasq.replay(first.script)


def test_vendor_delay_interfaces(tmp_path):
    d = dhcp(tmp_path, "dhcp-pxe-vendor=PXEClient,Custom\ndhcp-reply-delay=2\n"
                       "interface=eth1,eth2\nexcept-interface=lo\nno-dhcp-interface=eth3\n")
    assert d.vendor_classes == ["Custom", "PXEClient"] and not d.http_boot
    assert d.reply_delay == 2.0
    assert d.interfaces == ["eth1", "eth2"] and d.except_interfaces == ["lo", "eth3"]
    assert dhcp(tmp_path, "dhcp-pxe-vendor=PXEClient,HTTPClient\n").http_boot
    # tagged delays: dnsmasq keeps the newest line first, and the first that fits wins
    d = dhcp(tmp_path, "dhcp-reply-delay=tag:a,1\ndhcp-reply-delay=3\ndhcp-reply-delay=tag:b,tag:!c,2\n"
                       "dhcp-reply-delay=4\n")
    assert d.reply_delay == 4.0
    assert d.reply_delays == [ReplyDelay(seconds=2, tags=["b", "!c"]), ReplyDelay(seconds=1, tags=["a"])]
    assert "expected [tag:...,]SECONDS" in error(tmp_path, HEAD + "dhcp-reply-delay=tag:x\n")


def test_interface_name_tag_rejected(tmp_path):
    e = error(tmp_path, HEAD + "interface=eth7\ndhcp-boot=tag:eth7,x.0\n")
    assert "pxe.conf:4: tag:eth7: dnsmasq tags each client with its interface's name" in e


def test_dhcp_options(tmp_path):
    r = load(tmp_path, HEAD + "dhcp-option=3,192.168.1.1\ndhcp-option=option:router,1.2.3.4\n"
                              "dhcp-option-force=tag:x,66,tftp\ndhcp-option=encap:175,1,5\n"
                              "dhcp-option=vendor:MSFT,2,1i\n")
    assert r.config.dhcp.services == [] and len(r.notes) == 5
    assert all("no effect" in n or "vendor:MSFT is in no usual PXE client" in n for n in r.notes)
    assert r.config.dhcp.vendor_options == [VendorOption(code=2, hex="00:00:00:01", vendor="MSFT")]
    # a vendor sub-option 10 is no pxe-prompt: it does not start PXE answers, it only stands in
    # for dnsmasq's prompt (policy tests)
    d = dhcp(tmp_path, "dhcp-option=tag:x,vendor:PXEClient,10,05:48:69\n")
    assert d.prompts == [] and d.vendor_options == [VendorOption(code=10, hex="05:48:69", vendor="PXEClient",
                                                                 tags=["x"])]
    assert "unknown option name" in error(tmp_path, HEAD + "dhcp-option=option:bogus,1\n")


# -- dhcp-option-pxe (dnsmasq 2.91): values typed by the option, as option.c parse_dhcp_opt

@pytest.mark.parametrize("line, want", [
    ("175,9:9", DhcpOption(code=175, hex="09:09")),
    ("tag:x,tag:!y,3,0.0.0.0,1.2.3.4", DhcpOption(code=3, addresses=["0.0.0.0", "1.2.3.4"], tags=["x", "!y"])),
    ("option:router,1.2.3.4", DhcpOption(code=3, addresses=["1.2.3.4"])),
    ("66,1.2.3.4", DhcpOption(code=66, text="1.2.3.4")),  # a name, whatever it looks like
    ("67,12", DhcpOption(code=67, text="12")),
    ("13,5", DhcpOption(code=13, hex="00:05")),  # boot-file-size: 2 bytes
    ("13,5b", DhcpOption(code=13, hex="05")),
    ("58,1h", DhcpOption(code=58, hex="00:00:0e:10")),  # a time: seconds
    ("51,2d", DhcpOption(code=51, hex="00:02:a3:00")),  # internal by name only
    ("175,5", DhcpOption(code=175, hex="05")),  # untyped: as a vendor sub-option
    ("120,1.2.3.4", DhcpOption(code=120, hex="01:01:02:03:04")),  # RFC 3361's encoding byte first
    ("121,10.0.0.0/8,10.0.0.1", DhcpOption(code=121, hex="08:0a:0a:00:00:01")),
    ("180", DhcpOption(code=180)),
    ("option6:23,::1", None),  # DHCPv6: a note, nothing sent
    ("tag:ipxe,encap:175,176,1b", DhcpOption(code=176, hex="01", encap=175, tags=["ipxe"])),
    ("encap:175,3,0.0.0.0", DhcpOption(code=3, hex="00:00:00:00", encap=175)),  # untyped, as is
    ("encap:175,190,admin", DhcpOption(code=190, text="admin", encap=175)),
    ("vi-encap:3561,1,x", DhcpOption(code=1, text="x", vi_encap=3561)),
])
def test_pxe_option_values(tmp_path, line, want):
    d = dhcp(tmp_path, f"dhcp-option-pxe={line}\n")
    assert d.options == ([want] if want else [])


@pytest.mark.parametrize("line, reason", [
    ("vendor:PXEClient,6,2", "No vendor-encap options allowed in dhcp-option-pxe"),
    ("encap:175," + "1," + "x" * 254, "dhcp-option too long"),  # a sub-option's 2 bytes too
    ("vi-encap:3561," + "1," + "x" * 251, "dhcp-option too long"),  # and 125's 5
    ("encap:0,1,5", "encap 0: must be 1..254"),
    ("encap:175,option:router,1.2.3.4", "encap:175 with option:router: give the sub-option's number"),
    ("3,boot.lan", "bad IP address"),
    ("option:lease-time,1h", "bad dhcp-option: dnsmasq sets option 51 (lease-time) itself"),
    ("53,5", "dhcp-option too long"),  # dnsmasq takes the internal flag for a width
    ("119,lan", "option 119 as names"),
    ("0,1", "option 0 does not exist"),
    ("175," + "x" * 256, "dhcp-option too long"),
])
def test_pxe_option_refused_as_dnsmasq_refuses_it(tmp_path, line, reason):
    assert f"pxe.conf:3: dhcp-option-pxe: {reason}" in error(tmp_path, HEAD + f"dhcp-option-pxe={line}\n")


def test_pxe_options_kept_in_config_order(tmp_path):
    d = dhcp(tmp_path, "dhcp-option-pxe=175,1\ndhcp-option-pxe=176,2\ndhcp-option-pxe=175,3\n")
    assert [(o.code, o.hex) for o in d.options] == [(175, "01"), (176, "02"), (175, "03")]


# -- dhcp-option=vendor:CLASS,CODE,VALUE: option 43 sub-options (option.c parse_dhcp_opt values)

@pytest.mark.parametrize("value, want, kind", [
    ("2b", "02", "bytes"),  # a number with a width letter: b 1 byte, s 2, i 4
    ("2s", "0002", "bytes"),
    ("2i", "00000002", "bytes"),
    ("300b", "2c", "bytes"),  # cut to the width
    ("2", "02", "bytes"),  # a plain number: the bytes it needs
    ("300", "012c", "bytes"),
    ("70000", "00011170", "bytes"),
    ("-1", "ffffffff", "bytes"),  # a C int
    ("-2b", "fe", "bytes"),
    ("5-3", "05", "bytes"),  # atoi stops at the '-'
    ("99999999999", "4876e7ff", "bytes"),  # strtol's long, kept in an int: the low 32 bits
    ("01:02:ff", "0102ff", "bytes"),  # hex bytes
    ("1:a", "010a", "bytes"),
    ("0102:03", "0102", "bytes"),  # as many bytes as groups: the 03 is dropped
    ("01::02", "010200", "bytes"),  # an empty group counts, filled with zero
    ("ab:", "ab00", "bytes"),
    ("192.168.1.2", "c0a80102", "addresses"),
    ("1.2.3.4, 5.6.7.8", "0102030405060708", "addresses"),
    ("10.1.0.0/16", "100a01", "bytes"),  # prefix length, then its significant bytes
    ("10.1.2.3/0", "00", "bytes"),
    ("ab", "6162", "text"),  # text
    ("2x", "3278", "text"),
    ("a:g", "613a67", "text"),
    ("/srv/tftp", "2f7372762f74667470", "text"),
    ("1 x", "312078", "text"),
    ("b", "", "text"),  # a lone width letter is dropped, leaving empty text
    ("", "", "text"),
    (None, "", "bytes"),  # no value: an empty sub-option
])
def test_vendor_option_values(value, want, kind):
    assert dnsmasq.option_value(value) == (bytes.fromhex(want), kind)


def test_vendor_option_quoted_value_is_text():
    assert dnsmasq.option_value(H("2b")) == (b"2b", "text")
    assert dnsmasq.option_value(H("1.2.3.4")) == (b"1.2.3.4", "text")
    assert dnsmasq.option_value(H("a,b") + ", c") == (b"a,b, c", "text")


@pytest.mark.parametrize("value", ["1.2.3", "1.2.3.4.5", "256.1.1.1", "7/8", "1.2.3.4,", "1 2"])
def test_vendor_option_bad_addresses_are_refused(tmp_path, value):
    e = error(tmp_path, HEAD + f"dhcp-option=vendor:PXEClient,6,{value}\n")
    assert e.startswith(str(tmp_path / "pxe.conf") + ":3: dhcp-option: bad IPv4 address")


def test_vendor_options(tmp_path):
    d = dhcp(tmp_path, 'pxe-service=x86PC,"Boot",pxelinux\n'
                       "dhcp-option=vendor:PXEClient,6,2b\n"
                       'dhcp-option = tag:a , vendor:PXEClient , 20 , "hello, world"\n'
                       "dhcp-option-force=net:b,vendor:Arch:00000,21,1:2:3\n"
                       "dhcp-option=vendor:,22\n")
    # dnsmasq puts each line in front of the ones before it
    assert d.vendor_options == [
        VendorOption(code=22, vendor=""),
        VendorOption(code=21, hex="01:02:03", vendor="Arch:00000", tags=["b"]),
        VendorOption(code=20, text="hello, world", vendor="PXEClient", tags=["a"]),
        VendorOption(code=6, hex="02", vendor="PXEClient"),
    ]


def test_vendor_options_and_prompts_in_dnsmasq_order(tmp_path):
    # the vendor line before the prompt (Ubuntu LTSP): the prompt comes first, prompts stay prompts
    d = dhcp(tmp_path, 'pxe-service=x86PC,"Boot",pxelinux\ndhcp-option=vendor:PXEClient,6,2b\n'
                       'pxe-prompt="Press F8",3\n')
    assert d.prompts == [PxePrompt(text="Press F8", timeout=3)]
    assert d.vendor_options == [VendorOption(code=6, hex="02", vendor="PXEClient")]
    # the prompt first: it must go after the vendor option, so it becomes a vendor option too
    d = dhcp(tmp_path, 'pxe-service=x86PC,"Boot",pxelinux\npxe-prompt=tag:x,"Press F8",3\n'
                       "dhcp-option=vendor:PXEClient,6,2b\n")
    assert d.prompts == []
    assert d.vendor_options == [VendorOption(code=6, hex="02", vendor="PXEClient"),
                                VendorOption(code=10, hex="03", text="Press F8", tags=["x"])]


def test_vendor_options_from_optsfiles_come_first(tmp_path):
    (tmp_path / "a.opts").write_text("vendor:PXEClient,1,1\nvendor:PXEClient,2,2\n")
    (tmp_path / "b.opts").write_text("vendor:PXEClient,3,3\n")
    d = dhcp(tmp_path, f"dhcp-option=vendor:PXEClient,4,4\ndhcp-optsfile={tmp_path}/a.opts\n"
                       f"dhcp-optsfile={tmp_path}/b.opts\ndhcp-option=vendor:PXEClient,5,5\n")
    # dnsmasq reads the optsfiles after the conf, the last named first, each line put in front
    assert [v.code for v in d.vendor_options] == [2, 1, 3, 5, 4]


@pytest.mark.parametrize("line, why", [
    ("dhcp-option=vendor:PXEClient,0,1", "PXE sub-option 0 does not exist"),
    ("dhcp-option=vendor:PXEClient,255,1", "PXE sub-option 255 does not exist"),
    ("dhcp-option=vendor:PXEClient,300,1", "PXE sub-option 300 does not exist"),
    ("dhcp-option=vendor:PXEClient,6," + "x" * 254, "dhcp-option too long: 254 bytes"),
    ("dhcp-option=vendor:PXEClient,option:router,1.2.3.4", "give the PXE sub-option's number"),
    ("dhcp-option=vendor:PXEClient,option6:dns-server,::1", "unsupported encapsulation for IPv6 option"),
    ("dhcp-option=vendor:PXEClient,encap:175,1,1", "inappropriate encap: after vendor:"),
    ("dhcp-option=encap:175,vendor:PXEClient,1,1", "inappropriate vendor:"),
    ("dhcp-option=vendor:PXEClient", "bad dhcp-option"),
])
def test_vendor_option_errors(tmp_path, line, why):
    e = error(tmp_path, HEAD + line + "\n")
    assert e.startswith(str(tmp_path / "pxe.conf") + ":3: dhcp-option: ") and why in e, e


def test_vendor_options_convert_and_load_back(tmp_path):
    r = load(tmp_path, HEAD + 'pxe-service=x86PC,"Boot",pxelinux\ndhcp-option=vendor:PXEClient,6,2b\n'
                              'dhcp-option=tag:t,vendor:Arch:00000,20,"text"\n')
    text = dnsmasq.to_toml(r.config)
    assert '[[dhcp.vendor-options]]\ncode = 6\nhex = "02"\nvendor = "PXEClient"\ntags = []' in text
    assert msgspec.toml.decode(text.encode(), type=Config) == r.config


def test_dns_and_lease_options_are_noops(tmp_path):
    r = load(tmp_path, HEAD + "no-resolv\nno-hosts\ndomain-needed\nserver=1.1.1.1\ndhcp-authoritative\n"
                              "dhcp-leasefile=/tmp/x\nbind-interfaces\nlog-queries\nquiet-dhcp\n")
    assert len(r.notes) == 9 and r.config.dhcp is not None


def test_port_rules(tmp_path):
    assert "bootstorm serves no DNS" in error(tmp_path, "port=53\n")
    r = load(tmp_path, "dhcp-range=10.0.0.0,proxy\n")
    assert any("no port=0" in w for w in r.warnings)


def test_rejected_options_say_what_to_do(tmp_path):
    for line, words in [("tftp-unique-root=name", "one of ip, mac"),
                        ("tftp-port-range=5000", "FIRST,LAST"),
                        ("dhcp-relay=10.0.0.1,10.0.0.2", "relay"), ("conf-script=/bin/x", "runs no programs")]:
        e = error(tmp_path, HEAD + line + "\n")
        assert f"pxe.conf:3: {line.split('=')[0]}: " in e and words in e, e


# -- TFTP mappings


def test_tftp(tmp_path):
    c = load(tmp_path, "port=0\nenable-tftp\ntftp-root=/srv/tftp\ntftp-max=1000\ntftp-mtu=9000\n"
                       "tftp-lowercase\ntftp-no-blocksize\ntftp-no-fail\nlisten-address=127.0.0.1,10.0.0.1\n")
    assert c.config.tftp == TftpConfig(root="/srv/tftp", listen="10.0.0.1", max_transfers=1000,
                                       blksize_max=8968, lowercase=True, no_blocksize=True,
                                       no_fail=True)
    assert c.tftp_no_fail and c.config.dhcp is None
    c = load(tmp_path, "port=0\nenable-tftp=eth1,eth2\ntftp-root=/srv/tftp\ntftp-root=/srv/lab,eth2\n"
                       "tftp-unique-root=mac\ntftp-secure\ntftp-port-range=5000,5100\ninterface=eth9\n"
                       "tftp-single-port\n")
    assert c.config.tftp == TftpConfig(root="/srv/tftp", interfaces=["eth1", "eth2"],
                                       roots={"eth2": "/srv/lab"}, unique_root="mac", secure=True,
                                       port_range=[5000, 5100], single_port=True)
    c = load(tmp_path, "port=0\nenable-tftp\ntftp-root=/srv/tftp\ntftp-unique-root\ninterface=eth9\n")
    assert c.config.tftp.interfaces == ["eth9"] and c.config.tftp.unique_root == "ip"
    c = load(tmp_path, "port=0\nenable-tftp\n")
    assert c.config.tftp.root == "/" and any("working directory" in w for w in c.warnings)
    assert load(tmp_path, "port=0\ntftp-root=/x\n").config.tftp is None
    assert "blksize-max" in error(tmp_path, "enable-tftp\ntftp-root=/x\ntftp-mtu=20\n")


# -- command line


def test_getopt():
    assert dnsmasq._getopt(["-kdC", "f", "--port=0", "--conf-dir", "/d", "-7/e", "--enable-tftp",
                            "--log-q", "-x", "/run/p"]) == [
        ("keep-in-foreground", None), ("no-daemon", None), ("conf-file", "f"), ("port", "0"),
        ("conf-dir", "/d"), ("conf-dir", "/e"), ("enable-tftp", None), ("log-queries", None),
        ("pid-file", "/run/p")]
    for bad in (["--dhcp"], ["--nope"], ["-%"], ["--log-dhcp=1"], ["junk"], ["--port"]):
        with pytest.raises(ConfigError):
            dnsmasq._getopt(bad)


def test_parse_args(tmp_path):
    f = conf(tmp_path, "enable-tftp\ntftp-root=/srv\n")
    r = dnsmasq.parse_args(["--no-daemon", "--port=0", f"--conf-file={f}", "--pid-file=",
                            "--dhcp-range=10.0.0.0,proxy", "--pxe-service=x86PC,Boot,pxelinux"],
                           default_conf=None)
    assert r.settings.foreground and r.settings.debug and r.settings.pid_file is None
    # dnsmasq's pid file unless --pid-file= says none (and -d writes none at all: dnsmasq.run)
    assert dnsmasq.parse_args(["-k"], default_conf=None).settings.pid_file == "/var/run/dnsmasq.pid"
    assert r.config.tftp.root == "/srv"
    assert r.config.dhcp.services == [PxeService(arch=0, menu="Boot", file="pxelinux")]
    e = pytest.raises(ConfigError, dnsmasq.parse_args, ["--dhcp-range=10.0.0.1,10.0.0.9"], default_conf=None)
    assert str(e.value).startswith("command line: dhcp-range:")
    # without --conf-file the default file is read when it exists
    r = dnsmasq.parse_args(["-k"], default_conf=f)
    assert r.config.tftp.root == "/srv"


def test_cli_dnsmasq_mode_test_flag(tmp_path, capsys):
    f = conf(tmp_path, HEAD + 'pxe-service=x86PC,"Boot",pxelinux\nenable-tftp\n'
                              f"tftp-root={tmp_path}\n")
    assert cli.main(["--test", f"--conf-file={f}"]) == 0
    assert "syntax check OK" in capsys.readouterr().out
    assert cli.main(["-C", f, "--port=53"]) == 2
    assert "serves no DNS" in capsys.readouterr().err


# -- convert and check


SAMPLE = """\
port=0
interface=eth0
enable-tftp
tftp-root={root}
dhcp-range=192.168.10.0,proxy,255.255.255.0
dhcp-userclass=set:ipxe,iPXE
dhcp-match=set:efi64,option:client-arch,9
pxe-prompt="Boot menu",5
pxe-service=x86PC,"Network boot",pxelinux
pxe-service=x86PC,"Local disk"
pxe-service=x86-64_EFI,"UEFI",ipxe.efi
pxe-service=BC_EFI,"UEFI",ipxe.efi
pxe-service=ARM64_EFI,"ARM64",grubaa64.efi
dhcp-boot=tag:ipxe,http://192.168.10.1/boot.ipxe
dhcp-ignore=tag:blocked
dhcp-mac=set:blocked,de:ad:*:*:*:*
no-resolv
"""


def test_convert_round_trip(tmp_path, capsys):
    f = conf(tmp_path, SAMPLE.format(root=tmp_path) + "dhcp-host=52:54:00:00:00:01,set:lab\n"
                                                      "pxe-service=tag:lab,7,\"Lab\",99,10.0.0.3\n")
    out = tmp_path / "out.toml"
    assert cli.main(["convert", "--conf-file", f, "-o", str(out)]) == 0
    decoded = msgspec.toml.decode(out.read_bytes(), type=Config)
    assert decoded == dnsmasq.load(f).config
    assert decoded.dhcp.services[-1] == PxeService(arch=7, menu="Lab", type=99, server="10.0.0.3", tags=["lab"])


def test_check_output(tmp_path, capsys):
    (tmp_path / "pxelinux.0").write_bytes(b"x")
    (tmp_path / "ipxe.efi").write_bytes(b"x")
    f = conf(tmp_path, SAMPLE.format(root=tmp_path))
    assert cli.main(["check", "--conf-file", f]) == 0
    out = capsys.readouterr().out
    assert "  BIOS (arch 0):\n    menu item 32768: 'Network boot'; menu item 0: 'Local disk'; " \
           "prompt 'Boot menu', timeout 5 s; reply 337 bytes\n" in out
    assert "item 32768 ('Network boot'): boot file 'pxelinux.0' from this server" in out
    assert "  UEFI x64 (arch 7):\n    offer on :67 without a menu: asks again on port 4011\n" \
           "    port 4011: boot file 'ipxe.efi' from this server" in out
    assert "port 4011: boot file 'grubaa64.efi' from this server" in out  # ARM64 single service
    assert "  UEFI HTTP Boot (arch 16):\n    nothing (no answer)" in out
    assert "boot file 'http://192.168.10.1/boot.ipxe'" in out  # iPXE on BIOS
    assert "  with tag blocked:\n    BIOS (arch 0):\n      nothing (no answer)" in out
    assert "missing under the root: grubaa64.efi" in out
    assert "no-resolv: DNS only" in out
    assert out.endswith("configuration valid; 1 boot file(s) missing\n")
    # and the same for the native TOML of it
    toml = tmp_path / "c.toml"
    toml.write_text(dnsmasq.to_toml(dnsmasq.load(f).config))
    assert cli.main(["check", "--config", str(toml)]) == 0
    assert "missing under the root: grubaa64.efi" in capsys.readouterr().out


def test_check_shows_pxe_options_apart_from_option_43(tmp_path, capsys):
    """A configured option 43 is shown among the options, not read as bootstorm's menu, and
    does not hide a UEFI client's redirect to port 4011."""
    f = conf(tmp_path, HEAD + "pxe-service=x86-64_EFI,UEFI,ipxe.efi\npxe-service=x86-64_EFI,Other,x.efi\n"
                              "dhcp-option-pxe=43,ab:cd\ndhcp-option-pxe=175,1\n")
    assert cli.main(["check", "--conf-file", f]) == 0
    out = capsys.readouterr().out
    assert "  UEFI x64 (arch 7):\n    offer on :67 without a menu: asks again on port 4011\n" \
           "    port 4011: menu item 32768: 'UEFI'; menu item 32769: 'Other'; prompt 'PXE', waits for a key; " \
           "options 175 = 01, 43 = ab:cd; reply" in out


def test_check_reply_that_fits_every_client_has_no_size_warning(tmp_path, capsys):
    f = conf(tmp_path, SAMPLE.format(root=tmp_path))
    assert cli.main(["check", "--conf-file", f]) == 0
    out = capsys.readouterr().out
    assert "port 4011: boot file 'ipxe.efi' from this server; server name '192.168.10.1'; reply 300 bytes\n" in out
    assert "option 57" not in out and "warning:" not in out


# ten services and a 200-byte prompt: option 43 in three instances (servers; menu; prompt) of
# 75, 192 and 204 bytes, a 757-byte offer; at 548 bytes only the first fits, nor do the others
# fit the 128-byte file field
BIG_MENU = HEAD + "".join(f'pxe-service=x86PC,"Install option {i}",img{i}\n' for i in range(10)) + \
    f'pxe-prompt="{"P" * 200}",10\ndhcp-userclass=set:ipxe,iPXE\ndhcp-boot=tag:ipxe,http://192.168.1.1/boot.ipxe\n'


def _offer(tmp_path, text, kind=0):
    from bootstorm.policy import Policy
    dcfg = load(tmp_path, text).config.dhcp
    _, arch, vendor, uc = dnsmasq._KINDS[kind]
    pkt = dnsmasq._packet(1, arch, vendor, uc)
    a = Policy(dcfg).answer(pkt, on_pxe_port=False, local=dnsmasq._server_address(dcfg),
                            local_netmask=bytes((255, 255, 255, 0)))
    return a, (1, arch, vendor, uc)


def test_check_warns_when_a_client_without_option_57_loses_options(tmp_path, capsys):
    # exactly what the codec leaves out: both later instances of 43, the menu and the prompt
    a, request = _offer(tmp_path, BIG_MENU)
    assert dnsmasq._fit(a, *request) == (757, 548, [43, 43], [], [9, 10])
    a, request = _offer(tmp_path, BIG_MENU, kind=5)  # iPXE on BIOS: the same, its file field taken
    assert dnsmasq._fit(a, *request) == (757, 548, [43, 43], [], [9, 10])
    assert cli.main(["check", "--conf-file", conf(tmp_path, BIG_MENU)]) == 0  # a warning: still exit 0
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines() if "option 57" in line]
    why = "lose option 43 (sub-options 9 PXE menu, 10 prompt): reply would be 757 bytes"
    assert lines == [f"warning: BIOS (arch 0) clients without option 57 (548-byte limit) {why}",
                     f"warning: iPXE on BIOS clients without option 57 (548-byte limit) {why}",
                     f"warning: BIOS (arch 0) clients without option 57 (548-byte limit) {why}",  # tag ipxe
                     "configuration valid; 3 reply(s) too big for clients without option 57"]
    # under the reply it is about, before its menu items; UEFI clients get the prompt alone: fits
    assert "timeout 10 s; reply 757 bytes\n    warning: BIOS (arch 0) clients" in out
    assert "  UEFI x64 (arch 7):\n    offer on :67 without a menu: asks again on port 4011\n" \
           "    port 4011: empty answer; reply 489 bytes\n  UEFI x64 (arch 9)" in out


def test_check_notes_options_moved_into_the_file_field(tmp_path, capsys):
    # 13 services: a 254-byte first instance of 43 fits, the prompt's 10-byte one goes into the
    # empty file field (option 52) - lost only to a client that ignores option 52: a note
    text = HEAD + "".join(f'pxe-service=x86PC,"Option {i:02d}",img{i}\n' for i in range(13)) + \
        'pxe-prompt="Choose",10\n'
    a, request = _offer(tmp_path, text)
    assert dnsmasq._fit(a, *request) == (548, 548, [], [43], [])
    assert cli.main(["check", "--conf-file", conf(tmp_path, text)]) == 0
    out = capsys.readouterr().out
    assert "    note: BIOS (arch 0) clients without option 57 (548-byte limit) get option 43 only in " \
           "the file/sname field (option 52): reply would be 548 bytes\n" in out
    assert out.endswith("configuration valid\n")


def test_check_invalid_exits_2(tmp_path, capsys):
    f = conf(tmp_path, HEAD + "pxe-service=x86_64,\"x\"\n")
    assert cli.main(["check", "--conf-file", f]) == 2
    assert "pxe.conf:3: pxe-service: unknown CSA 'x86_64'" in capsys.readouterr().err


def test_debian_style_dnsmasq_d(tmp_path):
    """The Debian layout: /etc/dnsmasq.conf with conf-dir=/etc/dnsmasq.d/,*.conf."""
    d = tmp_path / "dnsmasq.d"
    d.mkdir()
    (d / "pxe.conf").write_text(HEAD + 'pxe-service=x86PC,"PXE",pxelinux\n')
    (d / "README").write_text("not a conf file\n")
    main = conf(tmp_path, f"conf-dir={d}/,*.conf\n", "dnsmasq.conf")
    r = dnsmasq.parse_args(["-k"], default_conf=main)
    assert r.config.dhcp.services[0].file == "pxelinux"
    assert os.path.basename(r.files[-1]) == "pxe.conf"


def test_pxe_prompt_longer_than_option_43_is_refused_with_its_line(tmp_path):
    # dnsmasq takes any length and writes a sub-option length that wraps: firmware gets junk
    e = error(tmp_path, HEAD + 'pxe-service=x86PC,"Boot",pxelinux\n' + f'pxe-prompt="{"A" * 253}",5\n')
    assert e.endswith("pxe.conf:4: pxe-prompt: prompt text of 253 bytes: at most 252 fit in option 43"), e
    longest = dhcp(tmp_path, 'pxe-service=x86PC,"Boot",pxelinux\n' + f'pxe-prompt="{"A" * 252}",5\n').prompts[0]
    assert (longest.text, longest.timeout) == ("A" * 252, 5)


def test_native_prompt_checked_on_load(tmp_path):
    from bootstorm import config
    p = tmp_path / "c.toml"
    p.write_text(f'[dhcp]\n[[dhcp.prompts]]\ntext = "{"A" * 300}"\n')
    with pytest.raises(ConfigError, match=r"prompts\[0\]: prompt text of 300 bytes: at most 252"):
        config.load(str(p))
    p.write_text('[dhcp]\n[[dhcp.prompts]]\ntext = "Press F8"\ntimeout = 256\n')
    with pytest.raises(ConfigError, match="prompt timeout 256: must be 0..255"):
        config.load(str(p))


def test_boot_file_and_server_name_must_fit_the_reply_fields(tmp_path):
    # the reply's file field holds 127 bytes and a NUL; a service file without a dot gets .LAYER
    e = error(tmp_path, HEAD + f"dhcp-boot={'f' * 128}\n")
    assert e.endswith("pxe.conf:3: dhcp-boot: boot file name of 128 bytes: at most 127 fit in the "
                      "reply's file field"), e
    assert dhcp(tmp_path, f"dhcp-boot={'f' * 127}\n").boot[0].file == "f" * 127
    e = error(tmp_path, HEAD + f'pxe-service=x86PC,"Boot",{"f" * 122}\n')
    assert "pxe.conf:3: pxe-service: boot file name of 122 bytes: at most 121" in e, e
    assert dhcp(tmp_path, f'pxe-service=x86PC,"Boot",{"f" * 121}\n').services[0].file == "f" * 121
    assert dhcp(tmp_path, f'pxe-service=x86PC,"Boot",{"f" * 123}.0\n').services[0].file == "f" * 123 + ".0"
    e = error(tmp_path, HEAD + f"dhcp-boot=pxelinux.0,,{'s' * 64}\n")
    assert "pxe.conf:3: dhcp-boot: server name of 64 bytes: at most 63 fit in the reply's sname field" in e, e


def test_pid_file_replaces_a_stale_one(tmp_path):
    p = tmp_path / "dnsmasq.pid"
    p.write_text("99999999\n")  # left by a crash: replaced, as dnsmasq replaces it
    dnsmasq._write_pid(str(p), None)
    assert p.read_text() == f"{os.getpid()}\n" and p.stat().st_mode & 0o777 == 0o644
