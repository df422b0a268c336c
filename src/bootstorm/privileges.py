"""Giving up root once the ports are bound, as dnsmasq does before it serves (dnsmasq.c).

Started as root, dnsmasq changes to `user` (default nobody) and `group` (default dip where
that group exists, else the user's own), drops every supplementary group, and keeps one
capability, CAP_NET_ADMIN; `--no-daemon` (its debug mode) stays root. bootstorm's dnsmasq
command line does the same; what it keeps CAP_NET_ADMIN for is the receive buffer of the
port shared by a storm's transfers, which may exceed net.core.rmem_max (SO_RCVBUFFORCE).
"""
from __future__ import annotations

import ctypes
import grp
import os
import pwd
from dataclasses import dataclass

from bootstorm.errors import ConfigError

DEFAULT_USER = "nobody"  # dnsmasq's CHUSER
DEFAULT_GROUP = "dip"  # dnsmasq's CHGRP, used only where it exists
CAP_NET_ADMIN = 12
PR_SET_KEEPCAPS = 8
_CAPABILITY_VERSION_3 = 0x20080522  # two 32-bit words per set


@dataclass(frozen=True)
class Identity:
    """Who the server becomes: the names are for messages."""

    user: str
    uid: int
    group: str
    gid: int


def resolve(user: str | None, group: str | None) -> Identity:
    """The user and group to change to, by dnsmasq's defaults; ConfigError names an unknown one."""
    user = user or DEFAULT_USER
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"unknown user or group: {user}") from None
    if group:
        try:
            gr = grp.getgrnam(group)
        except KeyError:
            raise ConfigError(f"unknown user or group: {group}") from None
        return Identity(user, pw.pw_uid, group, gr.gr_gid)
    try:
        gr = grp.getgrnam(DEFAULT_GROUP)
    except KeyError:
        try:
            gr = grp.getgrgid(pw.pw_gid)
        except KeyError:  # a primary group with no name: its number will do
            return Identity(user, pw.pw_uid, str(pw.pw_gid), pw.pw_gid)
    return Identity(user, pw.pw_uid, gr.gr_name, gr.gr_gid)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop(who: Identity) -> None:
    """Become `who`, keeping only CAP_NET_ADMIN (none when `who` is root: nothing to keep).
    OSError when the kernel refuses a step; the caller must not serve then."""
    libc = ctypes.CDLL(None, use_errno=True)
    os.setgroups([])
    os.setgid(who.gid)
    if who.uid == 0:
        return
    if libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:  # permitted capabilities survive setuid
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS)")
    os.setuid(who.uid)
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = 1 << CAP_NET_ADMIN
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
