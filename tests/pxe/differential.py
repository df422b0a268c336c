"""The differential core: run the same probes against two servers, diff the replies.

A :class:`Probe` is one client move (a :class:`~.simulator.Client` method and its
arguments) with a fixed xid, so two runs send byte-identical packets.
:func:`run_probes` gives ``{probe name: [normalized replies]}``; :func:`compare`
diffs two replies field by field and :func:`compare_runs` two whole runs, each
returning readable lines (empty = they agree).  ``allow`` takes keys or fnmatch
patterns naming the differences that are intended::

    header fields   op htype hlen hops xid secs flags ciaddr yiaddr siaddr giaddr chaddr
                    sname file msg_type chaddr_pad_nonzero sname_tail_nonzero file_tail_nonzero
    link            eth_dst eth_src ip_src ip_dst udp_sport udp_dport ip_ttl ip_tos ip_df
    layout          length      (BOOTP payload size, i.e. padding)
                    overload    (option 52's value: 1 file, 2 sname hold options)
                    overloaded  ([area, code, length] of each option instance in file or
                                sname: how a reply over the client's size was laid out; the
                                options field's layout is option-order and length)
                    option-order, pxe-order
    options         option:<code>   e.g. "option:43", "option:*"
    PXE 43 subs     pxe:<code>      e.g. "pxe:10"; pxe-end, pxe-after-end (bytes after the end)
    counts          count           (number of replies to a probe)

A probe-specific allowance is written ``<probe>/<key>``, e.g. ``"arch16*/count"``.
"""

from __future__ import annotations

import fnmatch
import zlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from .simulator import Client

HEADER_FIELDS = ("op", "htype", "hlen", "hops", "xid", "secs", "flags", "ciaddr", "yiaddr", "siaddr",
                 "giaddr", "chaddr", "sname", "file", "msg_type", "cookie", "chaddr_pad_nonzero",
                 "sname_tail_nonzero", "file_tail_nonzero")
LINK_FIELDS = ("eth_dst", "eth_src", "ip_src", "ip_dst", "udp_sport", "udp_dport", "ip_ttl", "ip_tos", "ip_df")
LAYOUT_FIELDS = ("length", "overload", "overloaded")
# Not compared: t (arrival time), udp_csum*, udp_len (follows length), decoded convenience keys.


def _allowed(key: str, allow: Iterable[str], probe: str | None = None) -> bool:
    for pat in allow:
        if "/" in pat:
            ppat, kpat = pat.split("/", 1)
            if probe is not None and fnmatch.fnmatchcase(probe, ppat) and fnmatch.fnmatchcase(key, kpat):
                return True
        elif fnmatch.fnmatchcase(key, pat):
            return True
    return False


def _by_code(items: Sequence[Sequence[Any]]) -> dict[int, str]:
    out: dict[int, str] = {}
    for code, hx in items:
        out[code] = out.get(code, "") + hx
    return out


def _show(code_key: str, hx: str | None) -> str:
    if hx is None:
        return "absent"
    b = bytes.fromhex(hx)
    text = b.decode("latin-1")
    printable = all(32 <= c < 127 for c in b) and b
    return f"{hx}" + (f" ({text!r})" if printable else "")


def compare(a: dict[str, Any] | None, b: dict[str, Any] | None, allow: Iterable[str] = (),
            names: tuple[str, str] = ("a", "b"), probe: str | None = None) -> list[str]:
    """Differences between two normalized replies, one readable line each."""
    allow = list(allow)
    na, nb = names
    if a is None or b is None:
        if a is None and b is None:
            return []
        if _allowed("count", allow, probe):
            return []
        return [f"reply: {na}={'none' if a is None else a.get('msg_type')} {nb}={'none' if b is None else b.get('msg_type')}"]
    out: list[str] = []
    for key in HEADER_FIELDS + LINK_FIELDS + LAYOUT_FIELDS:
        if a.get(key) != b.get(key) and not _allowed(key, allow, probe):
            out.append(f"{key}: {na}={a.get(key)!r} {nb}={b.get(key)!r}")
    oa, ob = _by_code(a.get("options", [])), _by_code(b.get("options", []))
    for code in sorted(set(oa) | set(ob)):
        if code == 43:
            continue  # compared sub-option by sub-option below
        key = f"option:{code}"
        if oa.get(code) != ob.get(code) and not _allowed(key, allow, probe):
            out.append(f"{key}: {na}={_show(key, oa.get(code))} {nb}={_show(key, ob.get(code))}")
    # order is judged on the options neither allowed to differ nor missing on one side
    order_a = [c for c, _ in a.get("options", []) if c in ob and not _allowed(f"option:{c}", allow, probe)]
    order_b = [c for c, _ in b.get("options", []) if c in oa and not _allowed(f"option:{c}", allow, probe)]
    if order_a != order_b and not _allowed("option-order", allow, probe):
        out.append(f"option-order: {na}={order_a} {nb}={order_b}")
    if (43 in oa or 43 in ob) and not _allowed("option:43", allow, probe):
        pa, pb = a.get("pxe") or {"subs": []}, b.get("pxe") or {"subs": []}
        if (43 in oa) != (43 in ob):
            out.append(f"option:43: {na}={'present' if 43 in oa else 'absent'} "
                       f"{nb}={'present' if 43 in ob else 'absent'}")
        sa, sb = _by_code(pa["subs"]), _by_code(pb["subs"])
        for code in sorted(set(sa) | set(sb)):
            key = f"pxe:{code}"
            if sa.get(code) != sb.get(code) and not _allowed(key, allow, probe):
                out.append(f"{key}: {na}={_show(key, sa.get(code))} {nb}={_show(key, sb.get(code))}")
        ord_a = [c for c, _ in pa["subs"] if c in sb and not _allowed(f"pxe:{c}", allow, probe)]
        ord_b = [c for c, _ in pb["subs"] if c in sa and not _allowed(f"pxe:{c}", allow, probe)]
        if ord_a != ord_b and not _allowed("pxe-order", allow, probe):
            out.append(f"pxe-order: {na}={ord_a} {nb}={ord_b}")
        if pa.get("end") != pb.get("end") and not _allowed("pxe-end", allow, probe):
            out.append(f"pxe-end: {na}={pa.get('end')} {nb}={pb.get('end')}")
        # what follows the end marker (an overloaded reply can put sub-options there), as bytes
        if pa.get("after_end") != pb.get("after_end") and not _allowed("pxe-after-end", allow, probe):
            out.append(f"pxe-after-end: {na}={pa.get('after_end')} {nb}={pb.get('after_end')}")
    return out


def _sort_key(r: dict[str, Any]) -> tuple:
    return (r.get("ip_src", ""), r.get("msg_type", ""), r.get("udp_dport", 0))


def compare_replies(ra: list[dict[str, Any]], rb: list[dict[str, Any]], allow: Iterable[str] = (),
                    names: tuple[str, str] = ("a", "b"), probe: str | None = None) -> list[str]:
    """Diff the reply lists of one probe (replies paired by source, type, port)."""
    allow = list(allow)
    out = []
    if len(ra) != len(rb) and not _allowed("count", allow, probe):
        out.append(f"count: {names[0]}={len(ra)} {names[1]}={len(rb)}")
    sa, sb = sorted(ra, key=_sort_key), sorted(rb, key=_sort_key)
    several = max(len(sa), len(sb)) > 1
    for i in range(min(len(sa), len(sb))):  # extra replies are the count's difference
        out += [f"[{i}] {d}" if several else d for d in compare(sa[i], sb[i], allow, names, probe)]
    return out


def compare_runs(run_a: dict[str, list[dict[str, Any]]], run_b: dict[str, list[dict[str, Any]]],
                 allow: Iterable[str] = (), names: tuple[str, str] = ("a", "b")) -> list[str]:
    """Diff two :func:`run_probes` results: ``"<probe>: <difference>"`` lines."""
    allow = list(allow)
    out = []
    for probe in list(dict.fromkeys([*run_a, *run_b])):
        out += [f"{probe}: {d}" for d in compare_replies(run_a.get(probe, []), run_b.get(probe, []),
                                                           allow, names, probe)]
    return out


# --- probes and scenarios -----------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    """One client move: ``getattr(client, action)(xid=..., **kwargs)``."""

    name: str
    action: str = "discover"  # discover | request_4011 | boot_server_request
    kwargs: dict[str, Any] = field(default_factory=dict)
    expect: int | None = 1  # stop shortly after this many replies (None: wait it out)
    wait: float = 0.4  # how long to wait when fewer arrive (a "no reply" costs this)

    def xid(self, salt: str = "") -> int:
        """Fixed per probe name: both servers see byte-identical requests."""
        return zlib.crc32(f"{salt}/{self.name}".encode()) & 0x7FFFFFFF | 0x01000000


def run_probes(client: Client, probes: Iterable[Probe], salt: str = "") -> dict[str, list[dict[str, Any]]]:
    """Run every probe (in one simulator process) -> {probe name: replies}."""
    exchanges = {}
    with client.batch():
        for p in probes:
            exchanges[p.name] = getattr(client, p.action)(xid=p.xid(salt), expect=p.expect, wait=p.wait, **p.kwargs)
    return {name: ex.replies for name, ex in exchanges.items()}


def standard_probes(archs: Sequence[int] = (0, 6, 7, 9, 11, 16), *, ipxe: bool = True, relay: bool = True,
                    port4011: bool = True, boot_items: Sequence[tuple[int, int]] = ((0x8000, 0),)) -> list[Probe]:
    """Every architecture, iPXE or not, direct and relayed, the 4011 and boot-server steps."""
    probes: list[Probe] = []
    for arch in archs:
        probes.append(Probe(f"discover-arch{arch}", "discover", {"arch": arch}))
        if ipxe:
            probes.append(Probe(f"discover-arch{arch}-ipxe", "discover", {"arch": arch, "ipxe": True}))
    if ipxe:
        probes.append(Probe("discover-arch0-ipxe-rfc3004", "discover",
                            {"arch": 0, "ipxe": True, "user_class_form": "rfc3004"}))
    probes.append(Probe("discover-not-pxe", "discover", {"arch": 0, "vendor_class": "MSFT 5.0"}))
    if relay:
        for arch in (0, 7):
            probes.append(Probe(f"relay-discover-arch{arch}", "discover", {"arch": arch, "relay": True}))
    if port4011:
        for arch in archs:
            if arch not in (15, 16, 18, 19):
                probes.append(Probe(f"request4011-arch{arch}", "request_4011", {"arch": arch, "sport": 4011}))
        probes.append(Probe("request4011-arch7-sport68", "request_4011", {"arch": 7, "sport": 68}))
    for t, layer in boot_items:
        probes.append(Probe(f"bootserver-{t:#06x}.{layer}-bcast67", "boot_server_request",
                            {"item": (t, layer), "broadcast": True}))
        probes.append(Probe(f"bootserver-{t:#06x}.{layer}-4011", "boot_server_request",
                            {"item": (t, layer), "broadcast": False}))
    return probes


@dataclass
class Scenario:
    """A config (dnsmasq syntax; ``{tftp_root}`` is filled in) and the probes to run."""

    name: str
    conf: str
    probes: list[Probe] = field(default_factory=standard_probes)
    allow: list[str] = field(default_factory=list)  # intended differences, with reasons in docs

    def conf_for(self, tftp_root: str) -> str:
        return self.conf.replace("{tftp_root}", tftp_root)
