"""Differential: dnsmasq 2.90 (proxy mode, dnsmasq conf) against bootstorm (the equivalent
native TOML, ``bootstorm serve --config F.toml --no-tftp``), the same probes, field by field.

Each scenario runs on two identical segments at once (same addresses, MACs and xids, one
server each; namespaces keep them apart), so the whole module costs one run per scenario.
The replies must agree on every header field, link field, option and PXE sub-option,
except the INTENDED differences below, each listed in docs/proxydhcp-vs-dnsmasq.md
("Intended differences") with its reason:

``ALLOW_HTTP_BOOT``  (a) a UEFI HTTP Boot client (option 60 ``HTTPClient``, arch 16) gets an
                     OFFER with option 60 ``HTTPClient`` and the URL in ``file`` when a boot
                     entry applies; dnsmasq stays silent and the firmware never boots.  Only the
                     reply count may differ, and :func:`check_http_boot` pins bootstorm's reply.
``ALLOW_BIOS_SIADDR`` (b) a BIOS client given a ``dhcp-boot`` file without a server address gets
                     ``siaddr`` = the server's own address from bootstorm, 0.0.0.0 from dnsmasq
                     (real iPXE then stops with "Nothing to boot").  Only ``siaddr`` may differ,
                     and :func:`check_bios_siaddr` pins both values.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import netns
from .differential import Probe, compare_runs, run_probes, standard_probes
from .servers import start_bootstorm, start_dnsmasq
from .simulator import Client

SRV = netns.SERVER_ADDR
REMOTE_NET = "10.214.0"  # a relayed subnet with a proxy range (routed via the client's namespace)
REMOTE_RELAY = f"{REMOTE_NET}.254"
NO_RANGE_RELAY = "10.215.0.254"  # a relayed subnet no range covers: nobody answers

# (a) beyond dnsmasq: UEFI HTTP Boot is answered with the URL (dnsmasq sends nothing)
ALLOW_HTTP_BOOT = ["discover-arch16*/count"]
# (b) beyond dnsmasq: dhcp-boot without a server -> BIOS siaddr is our address, not 0.0.0.0
ALLOW_BIOS_SIADDR = ["discover-arch0*/siaddr", "relay-discover-arch0*/siaddr", "request4011-arch0*/siaddr"]

HEADER = """
[dhcp]
interfaces = ["eth0"]
"""


@dataclass
class Diff:
    name: str
    conf: str  # dnsmasq syntax
    toml: str  # the equivalent native configuration
    probes: list[Probe] = field(default_factory=standard_probes)
    allow: list[str] = field(default_factory=list)
    remote_probes: list[Probe] = field(default_factory=list)  # run with relay = REMOTE_RELAY
    http_url: str | None = None  # what bootstorm must give arch 16 (None: silent like dnsmasq)
    bios_boot: str | None = None  # the dhcp-boot file a BIOS client gets (difference b)


def bootserver(t: int, layer: int = 0, arch: int = 0, bcast: bool = False) -> Probe:
    return Probe(f"bootserver-{t:#06x}.{layer}-arch{arch}-{'bcast67' if bcast else '4011'}",
                 "boot_server_request", {"item": (t, layer), "arch": arch, "broadcast": bcast})


def sized(probe: Probe, max_size: int | None) -> Probe:
    """The probe from a client that sends option 57 = max_size, or none at all (None): a reply
    must then fit 548 bytes (RFC 2131's 576-byte datagram). The standard probes send 1472."""
    tag = "no57" if max_size is None else f"57-{max_size}"
    return Probe(f"{probe.name}-{tag}", probe.action, {**probe.kwargs, "max_size": max_size},
                 probe.expect, probe.wait)


def small_clients(*, archs=(0,), ipxe: bool = False) -> list[Probe]:
    """Clients without option 57 (and one at 576, the smallest legal value): DISCOVER direct
    and relayed, the 4011 REQUEST, the boot-server REQUEST for the first menu item."""
    base = [Probe(f"discover-arch{a}", "discover", {"arch": a}) for a in archs]
    base += [Probe(f"discover-arch{a}-ipxe", "discover", {"arch": a, "ipxe": True}) for a in archs if ipxe]
    base += [Probe("relay-discover-arch0", "discover", {"arch": 0, "relay": True}),
             Probe("request4011-arch0", "request_4011", {"arch": 0, "sport": 4011}),
             bootserver(0x8000, 0), bootserver(0x8000, 0, bcast=True)]
    return [sized(p, None) for p in base] + [sized(base[0], 576)]


PROMPT = ("Press F8 within 5 seconds for the network boot menu; without a key this machine boots "
          "from its local disk. Lab PCs: ask the helpdesk (ext. 4242) before reinstalling; the "
          "images are rebuilt every Monday night.")

# max-size: an option 43 that dnsmasq splits in six instances of 240, 110, 220, 50, 255 and 20
# bytes (menu; prompt; vendor sub-options 31, 32, 33, 34), so that a 548-byte reply shows every
# rule: 110 into `file`, 50 into `sname`, 20 back into the options field, 220 and 255 left out
MENU1, MENU2 = ("Network boot " + "n" * 110)[:110], ("Local disk " + "l" * 110)[:110]


SCENARIOS = [
    # BIOS menu with prompt: two x86PC entries (one local boot), UEFI single services too
    Diff("bios-menu", """
dhcp-range=10.213.0.0,proxy
pxe-service=x86PC,"Network Boot",pxelinux
pxe-service=x86PC,"Boot from local disk"
pxe-service=x86-64_EFI,"UEFI Boot",ipxe.efi
pxe-service=BC_EFI,"UEFI BC Boot",bootx64.efi
pxe-service=ARM64_EFI,"ARM64 Boot",grubaa64.efi
pxe-prompt="Press F8 for boot menu",5
""", HEADER + """
ranges = [{ network = "10.213.0.0" }]
prompts = [{ text = "Press F8 for boot menu", timeout = 5 }]
services = [
  { arch = "x86PC", menu = "Network Boot", file = "pxelinux" },
  { arch = "x86PC", menu = "Boot from local disk" },
  { arch = 7, menu = "UEFI Boot", file = "ipxe.efi" },
  { arch = 9, menu = "UEFI BC Boot", file = "bootx64.efi" },
  { arch = 11, menu = "ARM64 Boot", file = "grubaa64.efi" },
]
""", probes=standard_probes(boot_items=()) + [
        bootserver(0x8000, 0, bcast=True), bootserver(0x8000, 1), bootserver(0x8000, 0),
        bootserver(0x8001, 0, arch=7), bootserver(0, 0), bootserver(0x8000, 0x8000),
        bootserver(0x9999, 0),
        Probe("inform4011-arch7", "request_4011", {"arch": 7, "msg_type": 8}, expect=None),
    ]),
    # UEFI x64 via 4011: arch 7 has one service (the shortcut), arch 9 a three-entry menu
    Diff("uefi-x64", """
dhcp-range=10.213.0.0,proxy
pxe-service=x86-64_EFI,"UEFI iPXE",ipxe.efi
pxe-service=BC_EFI,"UEFI shim",bootx64.efi
pxe-service=BC_EFI,"UEFI GRUB",grubx64
pxe-service=BC_EFI,"UEFI local disk"
pxe-prompt="Choose UEFI boot",10
""", HEADER + """
ranges = [{ network = "10.213.0.0" }]
prompts = [{ text = "Choose UEFI boot", timeout = 10 }]
services = [
  { arch = "x86-64_EFI", menu = "UEFI iPXE", file = "ipxe.efi" },
  { arch = 9, menu = "UEFI shim", file = "bootx64.efi" },
  { arch = "BC_EFI", menu = "UEFI GRUB", file = "grubx64" },
  { arch = 9, menu = "UEFI local disk" },
]
""", probes=standard_probes(boot_items=()) + [
        Probe("request4011-arch9-sport68", "request_4011", {"arch": 9, "sport": 68}),
        bootserver(0x8001, 0, arch=9), bootserver(0x8002, 0, arch=9), bootserver(0x8002, 1, arch=9),
        bootserver(0x8000, 0, arch=7), bootserver(0x8002, 3, arch=9, bcast=True),
    ]),
    # one boot file per architecture: tags from option 93 matches, dhcp-boot per tag;
    # HTTP Boot (arch 16) gets a URL from bootstorm only (difference a)
    Diff("boot-per-arch", """
dhcp-range=10.213.0.0,proxy
dhcp-match=set:bios,option:client-arch,0
dhcp-match=set:efi32,option:client-arch,6
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-match=set:arm64,option:client-arch,11
dhcp-vendorclass=set:http,HTTPClient
dhcp-boot=tag:bios,undionly.kpxe
dhcp-boot=tag:efi32,ipxe.efi,,10.213.0.1
dhcp-boot=tag:efi64,bootx64.efi
dhcp-boot=tag:arm64,grubaa64.efi,,10.213.0.7
dhcp-boot=tag:http,http://10.213.0.1/boot/bootx64.efi
pxe-prompt="Booting",0
""", HEADER + """
ranges = [{ network = "10.213.0.0" }]
prompts = [{ text = "Booting", timeout = 0 }]
rules = [
  { set = "bios", option = 93, value = "0" },
  { set = "efi32", arch = [6] },
  { set = "efi64", arch = [7, 9] },
  { set = "arm64", option = 93, value = "11" },
  { set = "http", vendor-class = "HTTPClient" },
]
boot = [
  { tags = ["bios"], file = "undionly.kpxe" },
  { tags = ["efi32"], file = "ipxe.efi", server = "10.213.0.1" },
  { tags = ["efi64"], file = "bootx64.efi" },
  { tags = ["arm64"], file = "grubaa64.efi", server = "10.213.0.7" },
  { tags = ["http"], file = "http://10.213.0.1/boot/bootx64.efi" },
]
""", allow=ALLOW_HTTP_BOOT + ALLOW_BIOS_SIADDR, http_url="http://10.213.0.1/boot/bootx64.efi",
         bios_boot="undionly.kpxe"),
    # iPXE chainload by user class: firmware gets the iPXE binary from the menu, iPXE the script
    Diff("ipxe-userclass", """
dhcp-range=10.213.0.0,proxy
dhcp-userclass=set:ipxe,iPXE
dhcp-boot=tag:ipxe,http://10.213.0.1/boot.ipxe
pxe-service=tag:!ipxe,x86PC,"Chainload iPXE",undionly.kpxe
pxe-service=tag:!ipxe,x86-64_EFI,"iPXE UEFI",ipxe.efi
pxe-service=tag:!ipxe,BC_EFI,"iPXE UEFI",ipxe.efi
pxe-prompt=tag:!ipxe,"Starting iPXE",2
""", HEADER + """
ranges = [{ network = "10.213.0.0" }]
prompts = [{ text = "Starting iPXE", timeout = 2, tags = ["!ipxe"] }]
rules = [{ set = "ipxe", user-class = "iPXE" }]
boot = [{ tags = ["ipxe"], file = "http://10.213.0.1/boot.ipxe" }]
services = [
  { arch = "x86PC", menu = "Chainload iPXE", file = "undionly.kpxe", tags = ["!ipxe"] },
  { arch = 7, menu = "iPXE UEFI", file = "ipxe.efi", tags = ["!ipxe"] },
  { arch = 9, menu = "iPXE UEFI", file = "ipxe.efi", tags = ["!ipxe"] },
]
""", probes=standard_probes() + [
        Probe("request4011-arch7-ipxe-sport68", "request_4011", {"arch": 7, "sport": 68, "ipxe": True}),
        Probe("request4011-arch0-ipxe-sport68", "request_4011", {"arch": 0, "sport": 68, "ipxe": True}),
        Probe("relay-discover-arch9-ipxe", "discover", {"arch": 9, "relay": True, "ipxe": True}),
    ], allow=ALLOW_HTTP_BOOT + ALLOW_BIOS_SIADDR, http_url="http://10.213.0.1/boot.ipxe",
        bios_boot="http://10.213.0.1/boot.ipxe"),
    # iPXE chainload by option 175 (iPXE's encapsulated options), no prompt
    Diff("ipxe-opt175", """
dhcp-range=10.213.0.0,proxy
dhcp-match=set:ipxe,175
dhcp-boot=tag:ipxe,http://10.213.0.1/boot.ipxe
pxe-service=tag:!ipxe,x86PC,"Chainload iPXE",undionly.kpxe
pxe-service=tag:!ipxe,x86-64_EFI,"iPXE UEFI",ipxe.efi
pxe-service=tag:!ipxe,BC_EFI,"iPXE UEFI",ipxe.efi
pxe-service=tag:!ipxe,ARM64_EFI,"iPXE ARM64",ipxe-arm64.efi
""", HEADER + """
ranges = [{ network = "10.213.0.0" }]
rules = [{ set = "ipxe", option = 175 }]
boot = [{ tags = ["ipxe"], file = "http://10.213.0.1/boot.ipxe" }]
services = [
  { arch = 0, menu = "Chainload iPXE", file = "undionly.kpxe", tags = ["!ipxe"] },
  { arch = 7, menu = "iPXE UEFI", file = "ipxe.efi", tags = ["!ipxe"] },
  { arch = 9, menu = "iPXE UEFI", file = "ipxe.efi", tags = ["!ipxe"] },
  { arch = 11, menu = "iPXE ARM64", file = "ipxe-arm64.efi", tags = ["!ipxe"] },
]
""", probes=standard_probes() + [
        Probe("discover-arch0-uc-only", "discover", {"arch": 0, "user_class": "iPXE"}),
        Probe("discover-arch7-175-only", "discover", {"arch": 7, "features_175": True}),
        Probe("request4011-arch9-ipxe-sport68", "request_4011", {"arch": 9, "sport": 68, "ipxe": True}),
    ], allow=ALLOW_HTTP_BOOT + ALLOW_BIOS_SIADDR, http_url="http://10.213.0.1/boot.ipxe",
        bios_boot="http://10.213.0.1/boot.ipxe"),
    # relayed clients: a second, routed subnet with its own range and tag; a third with none
    Diff("relay", """
dhcp-range=10.213.0.0,proxy
dhcp-range=set:remote,10.214.0.0,proxy,255.255.255.0
pxe-service=x86PC,"Local net",pxelinux
pxe-service=tag:remote,x86PC,"Remote net",undionly
pxe-service=x86-64_EFI,"UEFI",ipxe.efi
pxe-service=tag:remote,BC_EFI,"UEFI remote",bootx64.efi
pxe-prompt="Relayed boot",3
""", HEADER + """
ranges = [
  { network = "10.213.0.0" },
  { network = "10.214.0.0", netmask = "255.255.255.0", set = "remote" },
]
prompts = [{ text = "Relayed boot", timeout = 3 }]
services = [
  { arch = "x86PC", menu = "Local net", file = "pxelinux" },
  { arch = "x86PC", menu = "Remote net", file = "undionly", tags = ["remote"] },
  { arch = 7, menu = "UEFI", file = "ipxe.efi" },
  { arch = 9, menu = "UEFI remote", file = "bootx64.efi", tags = ["remote"] },
]
""", probes=standard_probes(ipxe=False, boot_items=()) + [
        Probe("relay-discover-arch9", "discover", {"arch": 9, "relay": True}),
        Probe("relay-discover-arch0-bcastflag", "discover", {"arch": 0, "relay": True, "flags": 0x8000}),
        bootserver(0x8000, 0), bootserver(0x8001, 0),
    ], remote_probes=[
        Probe(f"remote-discover-arch{a}", "discover", {"arch": a, "relay": True}) for a in (0, 6, 7, 9, 11)
    ] + [Probe("remote-discover-arch0-ipxe", "discover", {"arch": 0, "relay": True, "ipxe": True})]),
    # no pxe-prompt: dnsmasq's stand-in prompt ("PXE", 0 s for one entry, 255 for a menu)
    Diff("no-prompt", """
dhcp-range=10.213.0.0,proxy
pxe-service=x86PC,"Network Boot",pxelinux
pxe-service=x86PC,"Local",0
pxe-service=IA32_EFI,"IA32",ipxe32
pxe-service=x86-64_EFI,"UEFI",ipxe
pxe-service=BC_EFI,"UEFI a",ipxe
pxe-service=BC_EFI,"UEFI b",bootx64.efi
""", HEADER + """
ranges = [{ network = "10.213.0.0" }]
services = [
  { arch = 0, menu = "Network Boot", file = "pxelinux" },
  { arch = 0, menu = "Local", type = 0 },
  { arch = 6, menu = "IA32", file = "ipxe32" },
  { arch = 7, menu = "UEFI", file = "ipxe" },
  { arch = 9, menu = "UEFI a", file = "ipxe" },
  { arch = 9, menu = "UEFI b", file = "bootx64.efi" },
]
""", probes=standard_probes(boot_items=((0x8000, 0), (0x8000, 2))) + [
        bootserver(0x8003, 0, arch=9), bootserver(0x8004, 1, arch=9), bootserver(0x8001, 0, arch=6),
    ]),
    # ARM64: a two-entry menu, ARM32 single service, a dhcp-boot with a server for arm64
    Diff("arm64", """
dhcp-range=10.213.0.0,proxy
dhcp-match=set:arm64,option:client-arch,11
dhcp-boot=tag:arm64,grubaa64.efi,,10.213.0.1
pxe-service=ARM64_EFI,"GRUB arm64",grubaa64.efi
pxe-service=ARM64_EFI,"iPXE arm64",ipxe-arm64.efi
pxe-service=ARM32_EFI,"GRUB arm32",grubarm
pxe-prompt=tag:arm64,"ARM boot",7
""", HEADER + """
ranges = [{ network = "10.213.0.0" }]
prompts = [{ text = "ARM boot", timeout = 7, tags = ["arm64"] }]
rules = [{ set = "arm64", arch = [11] }]
boot = [{ tags = ["arm64"], file = "grubaa64.efi", server = "10.213.0.1" }]
services = [
  { arch = "ARM64_EFI", menu = "GRUB arm64", file = "grubaa64.efi" },
  { arch = 11, menu = "iPXE arm64", file = "ipxe-arm64.efi" },
  { arch = "arm32_efi", menu = "GRUB arm32", file = "grubarm" },
]
""", probes=standard_probes(archs=(0, 6, 7, 9, 10, 11, 16), boot_items=()) + [
        Probe("request4011-arch11-sport68", "request_4011", {"arch": 11, "sport": 68}),
        bootserver(0x8000, 0, arch=11), bootserver(0x8001, 0, arch=11), bootserver(0x8002, 0, arch=10),
        bootserver(0x8001, 0, arch=11, bcast=True),
    ]),
    # option 43 sub-options from dhcp-option=vendor: lines: Ubuntu LTSP's 6,2b (a second sub-option
    # 6 after dnsmasq's own), hex, a quoted string (force), a number, addresses, by tag and by
    # vendor text (Arch:00009 only in x64 option 60s; MSFT and HTTPClient in no PXE client's);
    # two prompts for iPXE, the file's order (the native list is dnsmasq's: last line first)
    Diff("vendor-options", """
dhcp-range=10.213.0.0,proxy
dhcp-userclass=set:ipxe,iPXE
pxe-service=x86PC,"Network Boot",pxelinux
pxe-service=x86PC,"Local disk",0
pxe-service=x86-64_EFI,"UEFI iPXE",ipxe.efi
pxe-service=BC_EFI,"UEFI shim",bootx64.efi
pxe-service=BC_EFI,"UEFI GRUB",grubx64.efi
dhcp-option=vendor:PXEClient,6,2b
pxe-prompt="Press F8 for boot menu",3
pxe-prompt=tag:ipxe,"iPXE prompt",1
dhcp-option=vendor:PXEClient,1,01:02:0a:ff
dhcp-option-force=vendor:PXEClient,20,"boot, here"
dhcp-option=tag:ipxe,vendor:PXEClient,21,300
dhcp-option=tag:!ipxe,vendor:PXEClient,22,10.213.0.9,10.0.0.0/8
dhcp-option=vendor:Arch:00009,23,9s
dhcp-option=vendor:MSFT,24,1
dhcp-option=vendor:HTTPClient,25,1
""", HEADER + """
ranges = [{ network = "10.213.0.0" }]
rules = [{ set = "ipxe", user-class = "iPXE" }]
services = [
  { arch = "x86PC", menu = "Network Boot", file = "pxelinux" },
  { arch = "x86PC", menu = "Local disk" },
  { arch = 7, menu = "UEFI iPXE", file = "ipxe.efi" },
  { arch = 9, menu = "UEFI shim", file = "bootx64.efi" },
  { arch = 9, menu = "UEFI GRUB", file = "grubx64.efi" },
]
vendor-options = [
  { code = 25, hex = "01", vendor = "HTTPClient" },
  { code = 24, hex = "01", vendor = "MSFT" },
  { code = 23, hex = "00:09", vendor = "Arch:00009" },
  { code = 22, hex = "0a:d5:00:09:08:0a", vendor = "PXEClient", tags = ["!ipxe"] },
  { code = 21, hex = "01:2c", vendor = "PXEClient", tags = ["ipxe"] },
  { code = 20, text = "boot, here", vendor = "PXEClient" },
  { code = 1, hex = "01:02:0a:ff", vendor = "PXEClient" },
  { code = 10, hex = "01", text = "iPXE prompt", tags = ["ipxe"] },
  { code = 10, hex = "03", text = "Press F8 for boot menu" },
  { code = 6, hex = "02", vendor = "PXEClient" },
]
""", probes=standard_probes(boot_items=()) + [
        Probe("request4011-arch9-sport68", "request_4011", {"arch": 9, "sport": 68}),
        Probe("request4011-arch9-ipxe-sport68", "request_4011", {"arch": 9, "sport": 68, "ipxe": True}),
        Probe("discover-arch0-msft", "discover", {"arch": 0, "vendor_class": "PXEClient:Arch:00000 MSFT"}),
        bootserver(0x8000, 0, bcast=True), bootserver(0x8000, 0), bootserver(0x8002, 0, arch=9),
        bootserver(0x8001, 0, arch=7),
        Probe("bootserver-0x8000.0-arch0-ipxe-4011", "boot_server_request",
              {"item": (0x8000, 0), "arch": 0, "broadcast": False, "ipxe": True}),
    ]),
    # option 43 past 255 bytes (split between whole sub-options, as dnsmasq does), a menu too
    # large for it (arch 11 on 4011: only the configured sub-options), a vendor sub-option 10
    # standing in for dnsmasq's "PXE" prompt for iPXE clients only
    Diff("vendor-limits", """
dhcp-range=10.213.0.0,proxy
dhcp-userclass=set:ipxe,iPXE
pxe-service=x86PC,"Network Boot",pxelinux
pxe-service=BC_EFI,"@B@",x.efi
pxe-service=BC_EFI,"@C@",y.efi
pxe-service=ARM64_EFI,"@B@",a.efi
pxe-service=ARM64_EFI,"@C@",b.efi
pxe-service=ARM64_EFI,"@B@",c.efi
dhcp-option=vendor:PXEClient,7,"@Z@"
dhcp-option=tag:ipxe,vendor:PXEClient,10,05:69:50:58:45
""".replace("@B@", "B" * 120).replace("@C@", "C" * 120).replace("@Z@", "z" * 240), HEADER + """
ranges = [{ network = "10.213.0.0" }]
rules = [{ set = "ipxe", user-class = "iPXE" }]
services = [
  { arch = 0, menu = "Network Boot", file = "pxelinux" },
  { arch = 9, menu = "@B@", file = "x.efi" },
  { arch = 9, menu = "@C@", file = "y.efi" },
  { arch = 11, menu = "@B@", file = "a.efi" },
  { arch = 11, menu = "@C@", file = "b.efi" },
  { arch = 11, menu = "@B@", file = "c.efi" },
]
vendor-options = [
  { code = 10, hex = "05:69:50:58:45", vendor = "PXEClient", tags = ["ipxe"] },
  { code = 7, text = "@Z@", vendor = "PXEClient" },
]
""".replace("@B@", "B" * 120).replace("@C@", "C" * 120).replace("@Z@", "z" * 240),
        probes=standard_probes(boot_items=()) + [
        Probe("request4011-arch9-sport68", "request_4011", {"arch": 9, "sport": 68}),
        Probe("request4011-arch11-ipxe-sport68", "request_4011", {"arch": 11, "sport": 68, "ipxe": True}),
        bootserver(0x8000, 0), bootserver(0x8001, 0, arch=9),
    ]),
]


SCENARIOS += [
    # a big BIOS menu and a long prompt to clients that send no option 57: dnsmasq keeps the
    # first option 43 instance (6, 8) and leaves out the menu and the prompt (too big for
    # `file` and `sname` too), yet writes option 52; at 1472 bytes everything fits
    Diff("max-size-menu", """
dhcp-range=10.213.0.0,proxy
pxe-service=x86PC,"Debian 12 installer",debian-installer/pxelinux
pxe-service=x86PC,"Debian 12 rescue",debian-rescue/pxelinux
pxe-service=x86PC,"Ubuntu 24.04 server",ubuntu2404/pxelinux
pxe-service=x86PC,"Ubuntu 22.04 server",ubuntu2204/pxelinux
pxe-service=x86PC,"Fedora 40 netinst",fedora40/pxelinux
pxe-service=x86PC,"Rocky Linux 9",rocky9/pxelinux
pxe-service=x86PC,"AlmaLinux 9",alma9/pxelinux
pxe-service=x86PC,"memtest86+",memtest
pxe-service=x86PC,"Clonezilla live",clonezilla/pxelinux
pxe-service=x86PC,"Boot from local disk"
pxe-service=BC_EFI,"UEFI shim",bootx64.efi
pxe-service=BC_EFI,"UEFI GRUB",grubx64.efi
pxe-prompt="@PROMPT@",5
""".replace("@PROMPT@", PROMPT), HEADER + """
ranges = [{ network = "10.213.0.0" }]
prompts = [{ text = "@PROMPT@", timeout = 5 }]
services = [
  { arch = 0, menu = "Debian 12 installer", file = "debian-installer/pxelinux" },
  { arch = 0, menu = "Debian 12 rescue", file = "debian-rescue/pxelinux" },
  { arch = 0, menu = "Ubuntu 24.04 server", file = "ubuntu2404/pxelinux" },
  { arch = 0, menu = "Ubuntu 22.04 server", file = "ubuntu2204/pxelinux" },
  { arch = 0, menu = "Fedora 40 netinst", file = "fedora40/pxelinux" },
  { arch = 0, menu = "Rocky Linux 9", file = "rocky9/pxelinux" },
  { arch = 0, menu = "AlmaLinux 9", file = "alma9/pxelinux" },
  { arch = 0, menu = "memtest86+", file = "memtest" },
  { arch = 0, menu = "Clonezilla live", file = "clonezilla/pxelinux" },
  { arch = 0, menu = "Boot from local disk" },
  { arch = 9, menu = "UEFI shim", file = "bootx64.efi" },
  { arch = 9, menu = "UEFI GRUB", file = "grubx64.efi" },
]
""".replace("@PROMPT@", PROMPT), probes=standard_probes(boot_items=()) + small_clients(ipxe=True) + [
        sized(Probe("request4011-arch9", "request_4011", {"arch": 9, "sport": 68}), None),
    ]),
    # every placement rule (see MENU1): iPXE clients get a boot file (only `sname` is free, and
    # their last sub-option is one byte longer: the options field would end at 548, dnsmasq's
    # spare byte leaves it out); a boot-server ACK has its file; 57 = 620 moves the layout
    Diff("max-size", f"""
dhcp-range=10.213.0.0,proxy
dhcp-userclass=set:ipxe,iPXE
dhcp-boot=tag:ipxe,http://10.213.0.1/boot.ipxe,,10.213.0.1
pxe-service=x86PC,"{MENU1}",pxelinux
pxe-service=x86PC,"{MENU2}"
pxe-service=BC_EFI,"UEFI a",bootx64.efi
pxe-service=BC_EFI,"UEFI b",grubx64.efi
dhcp-option=tag:ipxe,vendor:PXEClient,34,"{'e' * 18}"
dhcp-option=tag:!ipxe,vendor:PXEClient,34,"{'d' * 17}"
dhcp-option=vendor:PXEClient,33,"{'c' * 253}"
dhcp-option=vendor:PXEClient,32,"{'b' * 48}"
dhcp-option=vendor:PXEClient,31,"{'a' * 218}"
pxe-prompt="{'P' * 107}",5
""", HEADER + f"""
ranges = [{{ network = "10.213.0.0" }}]
rules = [{{ set = "ipxe", user-class = "iPXE" }}]
boot = [{{ tags = ["ipxe"], file = "http://10.213.0.1/boot.ipxe", server = "10.213.0.1" }}]
prompts = [{{ text = "{'P' * 107}", timeout = 5 }}]
services = [
  {{ arch = 0, menu = "{MENU1}", file = "pxelinux" }},
  {{ arch = 0, menu = "{MENU2}" }},
  {{ arch = 9, menu = "UEFI a", file = "bootx64.efi" }},
  {{ arch = 9, menu = "UEFI b", file = "grubx64.efi" }},
]
vendor-options = [
  {{ code = 31, text = "{'a' * 218}", vendor = "PXEClient" }},
  {{ code = 32, text = "{'b' * 48}", vendor = "PXEClient" }},
  {{ code = 33, text = "{'c' * 253}", vendor = "PXEClient" }},
  {{ code = 34, text = "{'d' * 17}", vendor = "PXEClient", tags = ["!ipxe"] }},
  {{ code = 34, text = "{'e' * 18}", vendor = "PXEClient", tags = ["ipxe"] }},
]
""", probes=standard_probes(archs=(0, 6, 7, 9, 11), boot_items=()) + small_clients(ipxe=True) + [
        sized(Probe("discover-arch0", "discover", {"arch": 0}), 620),
        sized(Probe("discover-arch0", "discover", {"arch": 0}), 28),  # 548 too: the wrap starts below
        sized(Probe("request4011-arch9", "request_4011", {"arch": 9, "sport": 68}), None),
    ]),
]


# --- the two segments ---------------------------------------------------------------
def _segment(stack) -> tuple[netns.Lan, Client, Client, Client]:
    lan = stack.enter_context(netns.pxe_lan())
    # two relayed subnets behind the client's namespace; the server routes the first back
    lan["cli"].add_addr(f"{REMOTE_RELAY}/24")
    lan["cli"].add_addr(f"{NO_RANGE_RELAY}/24")
    lan["srv"].ip("route", "add", f"{REMOTE_NET}.0/24", "via", netns.RELAY_ADDR)
    kw = dict(mac=lan["cli"].mac, server=SRV, addr=netns.CLIENT_ADDR)
    return (lan, Client(lan["cli"].ns, relay=netns.RELAY_ADDR, **kw),
            Client(lan["cli"].ns, relay=REMOTE_RELAY, **kw), Client(lan["cli"].ns, relay=NO_RANGE_RELAY, **kw))


@pytest.fixture(scope="module")
def segments(netns_required):
    import contextlib

    with contextlib.ExitStack() as stack:
        yield _segment(stack), _segment(stack)


def _run(server: str, seg, scen: Diff, workdir: Path) -> dict:
    lan, client, remote, norange = seg
    workdir.mkdir(parents=True, exist_ok=True)
    if server == "dnsmasq":
        srv = start_dnsmasq(lan["srv"], scen.conf, workdir=workdir)
    else:
        toml = workdir / "pxe.toml"
        toml.write_text(scen.toml)
        srv = start_bootstorm(lan["srv"], toml=toml, workdir=workdir, extra=["--no-tftp"])
    try:
        out = run_probes(client, scen.probes, salt=scen.name)
        if scen.remote_probes:
            out |= run_probes(remote, scen.remote_probes, salt=scen.name)
            out |= {f"norange-{k}": v for k, v in
                    run_probes(norange, scen.remote_probes[:2], salt=scen.name).items()}
        assert srv.alive(), srv.log
        return out
    finally:
        srv.stop()


def check_http_boot(scen: Diff, ref: dict, got: dict) -> None:
    """(a): dnsmasq never answers arch 16; bootstorm gives exactly the URL offer, or nothing."""
    for name in ref:
        if not name.startswith("discover-arch16"):
            continue
        assert ref[name] == [], f"{name}: dnsmasq answered HTTPClient"
        tags_apply = scen.http_url is not None and (name.endswith("-ipxe") or "ipxe" not in scen.name)
        if not tags_apply:
            assert got[name] == [], f"{name}: bootstorm answered HTTPClient without a boot entry"
            continue
        (r,) = got[name]
        assert (r["msg_type"], r["file"], r["siaddr"], r["yiaddr"]) == ("OFFER", scen.http_url, "0.0.0.0", "0.0.0.0")
        assert r["vendor_class"] == "HTTPClient" and r["option_codes"] == [53, 54, 60, 97]
        assert (r["ip_dst"], r["udp_dport"], r["flags"]) == ("255.255.255.255", 68, 0x8000)


def check_bios_siaddr(scen: Diff, ref: dict, got: dict) -> None:
    """(b): a BIOS client with a dhcp-boot file and no server: 0.0.0.0 from dnsmasq, ours from bootstorm."""
    for name, replies in ref.items():
        if not name.startswith(("discover-arch0", "relay-discover-arch0", "request4011-arch0")):
            continue
        for a, b in zip(replies, got[name]):
            if a["file"] == scen.bios_boot and scen.bios_boot:
                assert (a["siaddr"], b["siaddr"], b["file"]) == ("0.0.0.0", SRV, scen.bios_boot), name
            else:
                assert a["siaddr"] == b["siaddr"], name


# What dnsmasq 2.90 does with dhcp-option=vendor: lines (src/rfc2131.c pxe_opts, do_encap_opts),
# pinned on its own replies so the vendor scenarios keep testing it: its own 6 (10) 8 9 first,
# then the configured lines that apply, the last line first; after 71 in a boot-server ACK.
VENDOR_FACTS = {
    "vendor-options": {
        "discover-arch0": [6, 8, 9, 22, 20, 1, 10, 6],
        "discover-arch0-ipxe": [6, 8, 9, 21, 20, 1, 10, 10, 6],
        "discover-arch0-msft": [6, 8, 9, 24, 22, 20, 1, 10, 6],
        "request4011-arch9-sport68": [6, 8, 9, 23, 22, 20, 1, 10, 6],
        "request4011-arch7": [],  # the single-service shortcut: no option 43
        "bootserver-0x8002.0-arch9-4011": [71, 23, 22, 20, 1, 10, 6],
    },
    "vendor-limits": {
        "discover-arch0": [6, 10, 8, 9, 7],
        "discover-arch0-ipxe": [6, 8, 9, 10, 7],
        "request4011-arch11": [7],  # "PXE menu too large": the configured ones alone
    },
}
VENDOR_43_INSTANCES = {("vendor-limits", "discover-arch0"): 2, ("vendor-limits", "request4011-arch9"): 3}


def check_vendor_facts(scen: Diff, ref: dict) -> None:
    for name, codes in VENDOR_FACTS.get(scen.name, {}).items():
        (r,) = ref[name]
        assert [c for c, _ in (r.get("pxe") or {"subs": []})["subs"]] == codes, name
    for (sname, name), n in VENDOR_43_INSTANCES.items():
        if sname == scen.name:
            (r,) = ref[name]
            assert r["option_codes"].count(43) == n, name


# What dnsmasq 2.90 sends a client that takes 548 bytes (src/rfc2131.c free_space), pinned on
# its own replies: (length, option 52, [area, code, length] of options 43 and 52).
MAX_SIZE_FACTS = {
    "max-size-menu": {  # the menu still fits; the prompt does not, option 52 names empty fields
        "discover-arch0-no57": (546, 3, [["main", 43, 68], ["main", 43, 191], ["main", 52, 1]]),
        "discover-arch0": (757, 0, [["main", 43, 68], ["main", 43, 191], ["main", 43, 212]]),
    },
    "max-size": {
        "discover-arch0-no57": (547, 3, [["main", 43, 240], ["main", 52, 1], ["main", 43, 20],
                                         ["file", 43, 110], ["sname", 43, 50]]),
        "discover-arch0-ipxe-no57": (525, 2, [["main", 43, 240], ["main", 52, 1], ["sname", 43, 50]]),
        "bootserver-0x8000.0-arch0-4011-no57": (475, 2, [["main", 43, 116], ["main", 52, 1],
                                                         ["main", 43, 50], ["main", 43, 20]]),
        "discover-arch0-57-620": (577, 3, [["main", 43, 240], ["main", 52, 1], ["main", 43, 50],
                                           ["file", 43, 110], ["sname", 43, 20]]),
        "discover-arch0": (1187, 0, [["main", 43, n] for n in (240, 110, 220, 50, 255, 20)]),
    },
}


def check_max_size_facts(scen: Diff, ref: dict) -> None:
    for name, replies in ref.items():
        if name.endswith(("-no57", "-57-576", "-57-28")):
            assert replies and all(r["length"] <= 548 for r in replies), name
    for name, (length, overload, areas) in MAX_SIZE_FACTS.get(scen.name, {}).items():
        (r,) = ref[name]
        assert (r["length"], r["overload"], [a for a in r["option_areas"] if a[1] in (43, 52)]) \
            == (length, overload, areas), name


@pytest.mark.parametrize("scen", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_differential(scen, segments, tmp_path):
    with ThreadPoolExecutor(2) as pool:
        f_ref = pool.submit(_run, "dnsmasq", segments[0], scen, tmp_path / "dnsmasq")
        f_got = pool.submit(_run, "bootstorm", segments[1], scen, tmp_path / "bootstorm")
        ref, got = f_ref.result(), f_got.result()
    answered = sum(1 for r in ref.values() if r)
    assert answered >= 8, f"dnsmasq answered only {answered} probes: the scenario tests little"
    diff = compare_runs(ref, got, allow=scen.allow, names=("dnsmasq", "bootstorm"))
    assert diff == [], "\n".join(diff)
    check_http_boot(scen, ref, got)
    check_bios_siaddr(scen, ref, got)
    check_vendor_facts(scen, ref)
    check_max_size_facts(scen, ref)
    # the allow-list is no blanket: everything outside it was compared and agreed
    assert set(ref) == set(got)


def test_allow_list_is_exactly_the_documented_one():
    allowed = {a for s in SCENARIOS for a in s.allow}
    assert allowed <= set(ALLOW_HTTP_BOOT) | set(ALLOW_BIOS_SIADDR)
