"""The differential corpus: every config in configs/ run by dnsmasq and by bootstorm, same clients.

For each config (a dnsmasq conf from a public deployment, see the file's first lines), dnsmasq
and bootstorm read the same rendered file on two identical namespace segments (same addresses,
MACs, xids), the same simulated clients query both, and

* every DHCP reply must agree field by field (BOOTP header, link, every option, every PXE
  sub-option, order, padding: ``pxe.differential.compare``);
* every TFTP request (good file, missing, traversals, big blksize, blksize+tsize, ...) must
  agree in outcome: first answer, acknowledged options, error code, size and CRC, first block
  size (the message texts are not compared: their wording differs by design).

``allowed.toml`` lists every intended difference with its reason; each entry also has a pin
here (``PINS``) that checks what both servers send there, so an allowance is never a blank
cheque, and ``test_allow_list_is_used`` fails on an entry no config needs any more.

All configs run in one module fixture: ``WORKERS`` pairs of segments, each config on one pair
with dnsmasq and bootstorm side by side, the configs spread over the pairs.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import queue
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pxe import netns
from pxe.differential import Probe, compare_runs, standard_probes

from .corpus import (CLIENT_IP, CONF_DIR, SRV, Plan, build_tree, ipxe_features_full, make_segment,
                     remove_tree, render, run_plan)

ALLOWED = Path(__file__).with_name("allowed.toml")
WORKERS = 4
TFTP_FIELDS = ("first", "oack", "error_code", "ok", "size", "crc32", "first_block_len", "blocks",
               "tid_is_69", "stalled")

IPXE_BIOS = ipxe_features_full(efi=False)
IPXE_EFI = ipxe_features_full(efi=True)


def bootserver(t: int, layer: int = 0, arch: int = 0, bcast: bool = False) -> Probe:
    return Probe(f"bootserver-{t:#06x}.{layer}-arch{arch}-{'bcast67' if bcast else '4011'}",
                 "boot_server_request", {"item": (t, layer), "arch": arch, "broadcast": bcast}, wait=0.3)


def as_(name: str, arch: int, mac: str | None = None, features: str | None = None, **kw) -> Probe:
    return Probe(name, "discover_as", {"arch": arch, "mac": mac, "features_hex": features, **kw}, wait=0.3)


def base_probes() -> list[Probe]:
    probes = [Probe(p.name, p.action, p.kwargs, p.expect, 0.3)
              for p in standard_probes(archs=(0, 6, 7, 9, 11, 16), boot_items=())]
    probes += [
        Probe("request4011-arch9-sport68", "request_4011", {"arch": 9, "sport": 68}, wait=0.3),
        Probe("request4011-arch11-ipxe-sport68", "request_4011", {"arch": 11, "sport": 68, "ipxe": True}, wait=0.3),
        Probe("discover-arch19", "discover", {"arch": 19}, wait=0.3),
        as_("discover-arch0-ipxe-full", 0, features=IPXE_BIOS, ipxe=True),
        as_("discover-arch7-ipxe-full", 7, features=IPXE_EFI, ipxe=True),
        Probe("request4011-arch7-ipxe-full-sport68", "request_4011_as",
              {"arch": 7, "sport": 68, "ipxe": True, "features_hex": IPXE_EFI}, wait=0.3),
        bootserver(0x8000, 0, bcast=True), bootserver(0x8000, 0), bootserver(0x8001, 0), bootserver(0x8002, 0),
        bootserver(0x8003, 0), bootserver(0x8000, 1), bootserver(1, 0), bootserver(0x8000, 0, arch=7),
        bootserver(0x8001, 0, arch=9), bootserver(0x8000, 0, arch=11), bootserver(0x8001, 0, arch=11),
    ]
    return probes


# per config: extra clients (other machines by MAC, relayed subnets)
EXTRA: dict[str, dict[str, Any]] = {
    "05-ltsp": {"probes": [
        as_("rpi-discover-arch0", 0, mac="b8:27:eb:12:34:56"),
        as_("rpi4-discover-arch0", 0, mac="dc:a6:32:01:02:03"),
        bootserver(0x8004, 0), bootserver(0x8002, 0, arch=7),
    ]},
    "13-raspberrypi-unique-root-mac": {"probes": [as_("rpi-discover-arch0", 0, mac="dc:a6:32:01:02:03")]},
    "15-forester-hosts": {"probes": [
        as_("host2-discover-arch9", 9, mac="52:54:00:aa:00:01"),
        as_("host2-discover-arch7", 7, mac="52:54:00:aa:00:01"),
        as_("host2-discover-arch9-ipxe-full", 9, mac="52:54:00:aa:00:01", features=IPXE_EFI, ipxe=True),
        as_("unknown-discover-arch0", 0, mac="52:54:00:77:00:01"),
        as_("ignored-discover-arch0", 0, mac="52:54:00:ee:00:09"),
        as_("ignored-discover-arch7", 7, mac="52:54:00:ee:00:09"),
        Probe("host2-request4011-arch9", "request_4011_as", {"arch": 9, "mac": "52:54:00:aa:00:01"}, wait=0.3),
    ]},
    "17-tftp-no-blocksize-userclass": {"probes": [
        as_("lab-discover-arch0", 0, mac="52:54:00:aa:00:01"),
        as_("lab-discover-arch0-ipxe", 0, mac="52:54:00:aa:00:01", ipxe=True),
        as_("discover-arch0-gpxe", 0, user_class="gPXE"),
        as_("lab-discover-arch7", 7, mac="52:54:00:aa:00:01"),
    ]},
    # a jumbo-frame segment (MTU 9000): the blksize caps differ (allowed.toml tftp-blksize-jumbo)
    "09-ipxe-org-chainload": {"mtu": 9000},
    "11-relay-two-subnets": {
        "remote": [Probe(f"remote-discover-arch{a}", "discover", {"arch": a, "relay": True}, wait=0.3)
                   for a in (0, 6, 7, 9, 11)]
        + [Probe("remote-discover-arch0-ipxe", "discover", {"arch": 0, "relay": True, "ipxe": True}, wait=0.3),
           Probe("remote-discover-arch0-bcastflag", "discover", {"arch": 0, "relay": True, "flags": 0x8000},
                 wait=0.3)],
        "norange": [Probe(f"remote-discover-arch{a}", "discover", {"arch": a, "relay": True}, wait=0.3)
                    for a in (0, 7)],
    },
}


def tftp_requests() -> list[dict[str, Any]]:
    def r(name, file, mode="octet", **options):
        return {"name": name, "file": file, "mode": mode, "options": {k: str(v) for k, v in options.items()}}
    return [
        r("good", "pxelinux.0"),
        r("good-blksize1468", "ipxe.efi", blksize=1468),
        r("big-blksize-65464", "ipxe.efi", blksize=65464),
        r("blksize8192-tsize", "ipxe.efi", blksize=8192, tsize=0),
        r("tsize-only", "undionly.kpxe", tsize=0),
        r("blksize8", "boot.ipxe", blksize=8),
        r("blksize-huge-70000", "boot.ipxe", blksize=70000),
        r("windowsize4", "undionly.kpxe", windowsize=4),
        r("timeout-option", "boot.ipxe", timeout=3),
        r("missing", "nonexistent.efi"),
        r("traversal", "../x"),
        r("traversal-deep", "sub/../../x"),
        r("dotdot-inside-root", "sub/../pxelinux.0"),
        r("absolute-in-root", "/pxelinux.0"),
        r("absolute-root-path", "@ROOT@/pxelinux.0"),
        r("absolute-unique-ip", f"@ROOT@/{CLIENT_IP}/pxelinux.0"),
        r("absolute-unique-mac", "@ROOT@/52-54-00-12-34-56/pxelinux.0"),
        r("absolute-outside", "/etc/passwd"),
        r("directory", "sub"),
        r("subdir-file", "arm64-efi/snponly.efi"),
        r("netascii", "boot.ipxe", mode="netascii"),
        r("bad-mode", "boot.ipxe", mode="mail"),
        r("uppercase", "PXELINUX.0"),
        r("not-world-readable", "private.bin"),
        r("unique-root-only", "node.cfg"),
        r("unique-root-mac-only", "start4.elf"),
    ]


def config_paths() -> list[Path]:
    return sorted(CONF_DIR.glob("*.conf"))


def load_allowed() -> list[dict[str, Any]]:
    return tomllib.loads(ALLOWED.read_text())["allow"]


def allow_for(name: str, entries: list[dict[str, Any]] | None = None) -> list[str]:
    out = []
    for e in entries if entries is not None else load_allowed():
        if any(fnmatch.fnmatchcase(name, c) for c in e["configs"]):
            out += e["keys"]
    return out


# --- the run -------------------------------------------------------------------------
def _gate() -> None:
    netns.require()
    import shutil
    if shutil.which("dnsmasq") is None and not Path("/usr/sbin/dnsmasq").exists():
        if os.environ.get("CI"):
            pytest.fail("CI is set but dnsmasq (the reference) is not installed", pytrace=False)
        pytest.skip("dnsmasq is not installed")


def _plan(path: Path, root: Path, workdir: Path) -> Plan:
    name = path.stem
    conf = workdir / f"{name}.conf"
    conf.write_text(render(path.read_text(), root))
    extra = EXTRA.get(name, {})
    tftp = [dict(t, file=t["file"].replace("@ROOT@", str(root))) for t in tftp_requests()]
    return Plan(name, conf, base_probes() + extra.get("probes", []), extra.get("remote", []),
                extra.get("norange", []), tftp, extra.get("mtu"))


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, Any]:
    _gate()
    base, root = build_tree()
    work = tmp_path_factory.mktemp("conformance")
    out: dict[str, Any] = {}
    try:
        with contextlib.ExitStack() as stack:
            pairs: queue.Queue = queue.Queue()
            for _ in range(WORKERS):
                pairs.put((make_segment(stack), make_segment(stack)))

            def one(path: Path):
                plan = _plan(path, root, work)
                segs = pairs.get()
                try:
                    with ThreadPoolExecutor(2) as pool:
                        a = pool.submit(run_plan, "dnsmasq", segs[0], plan, work / plan.name / "dnsmasq")
                        b = pool.submit(run_plan, "bootstorm", segs[1], plan, work / plan.name / "bootstorm")
                        return plan.name, {"dnsmasq": a.result(), "bootstorm": b.result(), "root": str(root)}
                finally:
                    pairs.put(segs)

            with ThreadPoolExecutor(WORKERS) as pool:
                futs = {p.stem: pool.submit(one, p) for p in config_paths()}
                for name, f in futs.items():
                    try:
                        out[name] = f.result()[1]
                    except Exception as e:  # reported by that config's test
                        out[name] = {"error": repr(e)}
        if os.environ.get("BS_CONFORMANCE_DUMP"):  # for a look at every reply
            import json
            Path(os.environ["BS_CONFORMANCE_DUMP"]).write_text(json.dumps(out, indent=1, default=str))
        yield out
    finally:
        remove_tree(base)


def tftp_diff(ref: dict, got: dict, allow: list[str]) -> list[str]:
    out = []
    for probe in dict.fromkeys([*ref, *got]):
        a, b = ref.get(probe, {}), got.get(probe, {})
        for f in TFTP_FIELDS:
            key = f"tftp:{probe}/{f}"
            if a.get(f) != b.get(f) and not any(fnmatch.fnmatchcase(key, p) for p in allow):
                out.append(f"tftp {probe}: {f}: dnsmasq={a.get(f)!r} bootstorm={b.get(f)!r}"
                           f"  [{a.get('error_msg')!r} / {b.get('error_msg')!r}]")
    return out


def all_diffs(res: dict, allow: list[str]) -> list[str]:
    ref, got = res["dnsmasq"], res["bootstorm"]
    dhcp_allow = [a for a in allow if not a.startswith("tftp:")]
    return (compare_runs(ref["dhcp"], got["dhcp"], allow=dhcp_allow, names=("dnsmasq", "bootstorm"))
            + tftp_diff(ref["tftp"], got["tftp"], [a for a in allow if a.startswith("tftp:")]))


# --- pins: what each allowance must look like --------------------------------------------
def _replies(res, who, pattern):
    return {k: v for k, v in res[who]["dhcp"].items() if fnmatch.fnmatchcase(k, pattern)}


def pin_http_boot(name: str, res: dict) -> None:
    """bootstorm's HTTP Boot offer is EDK2's (URL, option 60 HTTPClient, 53 54 60 97, siaddr 0);
    where dnsmasq differs it has siaddr = its address, or an offer with no URL in it."""
    ref = res["dnsmasq"]["dhcp"]
    for probe, replies in _replies(res, "bootstorm", "discover-arch1[69]*").items():
        for r in replies:
            assert r["msg_type"] == "OFFER" and r["vendor_class"].startswith("HTTPClient"), (name, probe, r)
            assert r["file"].startswith("http://") and r["option_codes"] == [53, 54, 60, 97], (name, probe, r)
            assert "pxe" not in r, (name, probe)
        a = ref[probe]
        if len(a) != len(replies):
            assert replies == [] and all(x["file"] == "" for x in a), (name, probe, a)
        for x, y in zip(a, replies):
            if x["siaddr"] != y["siaddr"]:
                assert (x["siaddr"], y["siaddr"]) == (SRV, "0.0.0.0"), (name, probe)


def pin_bios_siaddr(name: str, res: dict) -> None:
    """Only siaddr may differ for BIOS replies carrying a dhcp-boot file: 0.0.0.0 from dnsmasq,
    the server's address from bootstorm."""
    ref, got = res["dnsmasq"]["dhcp"], res["bootstorm"]["dhcp"]
    for probe, replies in ref.items():
        if fnmatch.fnmatchcase(probe, "discover-arch1[69]*"):
            continue  # HTTP Boot: pin_http_boot
        for a, b in zip(replies, got.get(probe, [])):
            if a["siaddr"] != b["siaddr"]:
                assert (a["siaddr"], b["siaddr"]) == ("0.0.0.0", SRV) and a["file"] and a["file"] == b["file"], \
                    (name, probe, a["siaddr"], b["siaddr"], a["file"])


def pin_host_ignore(name: str, res: dict) -> None:
    """dhcp-host=MAC,ignore: dnsmasq still sends that host proxy replies; bootstorm none."""
    for probe, replies in _replies(res, "bootstorm", "ignored-*").items():
        assert replies == [], (name, probe)


def pin_tftp_blksize_jumbo(name: str, res: dict) -> None:
    """On a 9000-byte MTU: bootstorm grants min(asked, MTU - 32); dnsmasq less (its packet buffer,
    2263 bytes with the default edns-packet-max); the same file arrives (size, CRC compared)."""
    for probe, asked in (("big-blksize-65464", 65464), ("blksize8192-tsize", 8192), ("blksize-huge-70000", 70000)):
        a, b = res["dnsmasq"]["tftp"][probe], res["bootstorm"]["tftp"][probe]
        da, db = int(a["oack"]["blksize"]), int(b["oack"]["blksize"])
        assert db == min(asked, 9000 - 32) and da < db, (name, probe, da, db)


def pin_tftp_rfc_options(name: str, res: dict) -> None:
    """bootstorm acknowledges exactly the option asked for; dnsmasq sends DATA at once."""
    for probe, want in (("windowsize4", {"windowsize": "4"}), ("timeout-option", {"timeout": "3"})):
        a, b = res["dnsmasq"]["tftp"][probe], res["bootstorm"]["tftp"][probe]
        if a.get("first") != b.get("first"):
            assert (a.get("first"), b.get("first"), b.get("oack")) == ("DATA", "OACK", want), (name, probe, a, b)


def pin_tftp_error_port(name: str, res: dict) -> None:
    """Only refusals differ in their source port: dnsmasq a new TID, bootstorm port 69."""
    for probe, a in res["dnsmasq"]["tftp"].items():
        b = res["bootstorm"]["tftp"][probe]
        if a.get("tid_is_69") != b.get("tid_is_69"):
            assert a.get("first") == b.get("first") == "ERROR" and (a.get("tid_is_69"), b.get("tid_is_69")) == \
                (False, True), (name, probe, a, b)


PINS = {"tftp-rfc-options": pin_tftp_rfc_options, "tftp-error-port": pin_tftp_error_port, "http-boot": pin_http_boot, "bios-siaddr": pin_bios_siaddr, "host-ignore": pin_host_ignore,
        "tftp-blksize-jumbo": pin_tftp_blksize_jumbo}


# --- the tests -----------------------------------------------------------------------------
CONFIGS = [p.stem for p in config_paths()]


def test_corpus_size_and_sources():
    assert len(CONFIGS) >= 15
    for p in config_paths():
        head = p.read_text().splitlines()[0]
        assert head.startswith("# Source:"), f"{p.name}: first line must name the source"


@pytest.mark.parametrize("name", CONFIGS)
def test_config(name, results):
    res = results[name]
    assert "error" not in res, res.get("error")
    for who in ("dnsmasq", "bootstorm"):
        assert res[who]["alive"], f"{who} died:\n{res[who]['log']}"
    answered = sum(1 for v in res["dnsmasq"]["dhcp"].values() if v)
    assert answered >= 5, f"dnsmasq answered only {answered} probes: the config tests little"
    served = [k for k, v in res["dnsmasq"]["tftp"].items() if v.get("ok")]
    assert served, "dnsmasq served no file: the TFTP half tests nothing"
    entries = load_allowed()
    diffs = all_diffs(res, allow_for(name, entries))
    assert diffs == [], f"{name}: dnsmasq and bootstorm differ:\n" + "\n".join(diffs)
    for e in entries:
        if any(fnmatch.fnmatchcase(name, c) for c in e["configs"]):
            PINS[e["id"]](name, res)


def test_allow_list_is_reviewed():
    entries = load_allowed()
    for e in entries:
        assert e["id"] in PINS, f"allow entry {e['id']} has no pin"
        assert len(e.get("reason", "")) > 80, f"allow entry {e['id']}: say why"
        assert e["keys"] and e["configs"]


def test_allow_list_is_used(results):
    """Every allow entry still covers a difference in some config (no stale allowances)."""
    entries = load_allowed()
    for e in entries:
        used = False
        for name, res in results.items():
            if "error" in res or not any(fnmatch.fnmatchcase(name, c) for c in e["configs"]):
                continue
            others = [x for x in entries if x is not e]
            if len(all_diffs(res, allow_for(name, others))) > len(all_diffs(res, allow_for(name, entries))):
                used = True
                break
        assert used, f"allow entry {e['id']} covers no difference any more: remove it"
