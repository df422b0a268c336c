"""Whom bootstorm becomes when it gives up root: dnsmasq's defaults (the change itself needs
root and is checked in tests/pxe/test_privileges.py)."""
import grp
import pwd

import pytest

from bootstorm import privileges
from bootstorm.errors import ConfigError


def test_defaults_are_dnsmasqs():
    who = privileges.resolve(None, None)
    nobody = pwd.getpwnam("nobody")
    try:
        group = grp.getgrnam("dip")  # where it exists
    except KeyError:
        group = grp.getgrgid(nobody.pw_gid)  # else the user's own
    assert (who.user, who.uid, who.group, who.gid) == ("nobody", nobody.pw_uid, group.gr_name, group.gr_gid)


def test_named_user_and_group():
    root = pwd.getpwuid(0).pw_name
    group = grp.getgrgid(0).gr_name
    who = privileges.resolve(root, group)
    assert (who.uid, who.gid, who.user, who.group) == (0, 0, root, group)


@pytest.mark.parametrize("user, group, bad", [("no-such-user-x", None, "no-such-user-x"),
                                              ("nobody", "no-such-group-x", "no-such-group-x")])
def test_unknown_names_are_config_errors(user, group, bad):
    with pytest.raises(ConfigError, match=f"unknown user or group: {bad}$"):
        privileges.resolve(user, group)
