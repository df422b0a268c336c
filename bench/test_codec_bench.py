"""Micro benchmarks of the per-request codecs (TFTP and DHCP), grouped.

Run: python -m pytest bench/test_codec_bench.py --benchmark-disable-gc --benchmark-group-by=group
"""
import pytest

from bootstorm._native import dhcp
from bootstorm._native import tftp as native
from bootstorm.config import DhcpConfig, PxePrompt, PxeService, ProxyRange
from bootstorm.policy import Policy

RRQ = native.build_request(1, "pxelinux.0", "octet", {"blksize": 1468, "tsize": 0, "windowsize": 16})
OPTIONS = native.parse_request(RRQ)[3]


def discover(arch: int) -> bytes:
    h = bytearray(240)
    h[0:3] = b"\x01\x01\x06"
    h[4:8] = b"\x12\x34\x56\x78"
    h[28:34] = bytes.fromhex("525400123456")
    h[236:240] = dhcp.MAGIC_COOKIE
    vc = b"PXEClient:Arch:%05d:UNDI:002001" % arch
    opts = bytes([53, 1, 1, 60, len(vc)]) + vc + bytes([93, 2, 0, arch, 97, 17, 0]) + bytes(16)
    return bytes(h) + opts + b"\xff"


POLICY = Policy(DhcpConfig(
    ranges=[ProxyRange(network="10.0.0.0")],
    prompts=[PxePrompt(text="Press F8 for boot menu", timeout=5)],
    services=[PxeService(arch=0, menu="Network boot", file="pxelinux"),
              PxeService(arch=0, menu="Local boot"),
              PxeService(arch=7, menu="UEFI", file="ipxe.efi")]))
LOCAL = bytes((10, 0, 0, 1))


@pytest.mark.benchmark(group="tftp-codec")
def test_parse_request(benchmark):
    benchmark(native.parse_request, RRQ)


@pytest.mark.benchmark(group="tftp-codec")
def test_negotiate(benchmark):
    benchmark(native.negotiate, OPTIONS, 40960, blksize_max=1468)


@pytest.mark.benchmark(group="tftp-codec")
def test_build_error(benchmark):
    benchmark(native.build_error, 1, "file not found")


@pytest.mark.benchmark(group="dhcp-codec")
def test_dhcp_parse(benchmark):
    benchmark(dhcp.parse, discover(0))


@pytest.mark.benchmark(group="dhcp-codec")
def test_dhcp_build_offer(benchmark):
    pkt = dhcp.parse(discover(0))
    a = POLICY.answer(pkt, on_pxe_port=False, local=LOCAL, local_netmask=b"\xff\xff\xff\x00")
    benchmark(dhcp.build, pkt, 2, siaddr=a.siaddr, flags=a.flags, options=a.options)


@pytest.mark.benchmark(group="dhcp-policy")
@pytest.mark.parametrize("arch", [0, 7])
def test_policy_answer(benchmark, arch):
    pkt = dhcp.parse(discover(arch))
    benchmark(POLICY.answer, pkt, on_pxe_port=False, local=LOCAL, local_netmask=b"\xff\xff\xff\x00")
