"""TFTP codec of the native module: requests, option negotiation and packet builders.

RFC 1350 (packets), RFC 2347 (options, OACK), RFC 2348 (blksize), RFC 2349 (timeout,
tsize), RFC 7440 (windowsize).
"""
from __future__ import annotations

import struct

import pytest

from bootstorm._native import tftp as native
from bootstorm.errors import TftpError

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - hypothesis is optional
    given = None

RRQ, WRQ, DATA, ACK, ERROR, OACK = 1, 2, 3, 4, 5, 6


def rrq(*fields: bytes, op: int = RRQ) -> bytes:
    """A request with every field NUL-terminated."""
    return struct.pack("!H", op) + b"".join(f + b"\x00" for f in fields)


def refused(data: bytes) -> TftpError:
    with pytest.raises(TftpError) as info:
        native.parse_request(data)
    return info.value


# ---------------------------------------------------------------- parse_request: valid

def test_rrq_plain():
    assert native.parse_request(rrq(b"pxelinux.0", b"octet")) == (RRQ, "pxelinux.0", "octet", {})


def test_wrq_is_parsed_as_a_request():
    # parse_request only parses; refusing writes is the service's business
    assert native.parse_request(rrq(b"up.bin", b"octet", op=WRQ)) == (WRQ, "up.bin", "octet", {})


def test_rrq_with_options_in_lower_case():
    req = rrq(b"boot/grubx64.efi", b"octet", b"BlkSize", b"1468", b"TSIZE", b"0",
              b"timeout", b"3", b"WindowSize", b"16")
    op, name, mode, options = native.parse_request(req)
    assert (op, name, mode) == (RRQ, "boot/grubx64.efi", "octet")
    assert options == {"blksize": "1468", "tsize": "0", "timeout": "3", "windowsize": "16"}


@pytest.mark.parametrize("raw, mode", [
    (b"octet", "octet"), (b"OCTET", "octet"), (b"Octet", "octet"),
    (b"netascii", "netascii"), (b"NetAscii", "netascii"), (b"NETASCII", "netascii"),
])
def test_mode_is_case_insensitive(raw, mode):
    assert native.parse_request(rrq(b"f", raw))[2] == mode


def test_option_values_are_kept_verbatim():
    _, _, _, options = native.parse_request(rrq(b"f", b"octet", b"X-Vendor", b"MiXeD"))
    assert options == {"x-vendor": "MiXeD"}


def test_filename_kept_as_sent_with_surrogateescape():
    raw = b"Dir\\Caf\xc3\xa9/\xff\xfe.bin"
    _, name, _, _ = native.parse_request(rrq(raw, b"octet"))
    assert name.encode("utf-8", "surrogateescape") == raw
    assert name.startswith("Dir\\Café/")


def test_accepts_bytearray_and_memoryview():
    req = rrq(b"f", b"octet")
    assert native.parse_request(bytearray(req)) == native.parse_request(memoryview(req))


def test_request_of_exactly_max_length_is_accepted():
    req = rrq(b"a" * (1024 - 2 - 1 - 6), b"octet")
    assert len(req) == 1024
    assert native.parse_request(req)[1] == "a" * 1015


def test_empty_option_value_is_kept():
    assert native.parse_request(rrq(b"f", b"octet", b"tsize", b""))[3] == {"tsize": ""}


# ---------------------------------------------------------------- parse_request: not a request

@pytest.mark.parametrize("data", [
    b"",                                  # zero-length
    b"\x00",                              # 1 byte
    b"\x01",
    b"\x00\x03\x00\x01hello",             # DATA
    b"\x00\x04\x00\x01",                  # ACK
    b"\x00\x05\x00\x01oops\x00",          # ERROR
    b"\x00\x06blksize\x00512\x00",        # OACK
    b"\x00\x00f\x00octet\x00",            # opcode 0
    b"\x00\x07f\x00octet\x00",            # unknown opcode
    b"\xff\xfff\x00octet\x00",
    b"\x01\x00f\x00octet\x00",            # little-endian RRQ is not RRQ
])
def test_non_requests_return_none(data):
    assert native.parse_request(data) is None


def test_oversize_non_request_is_none_not_an_error():
    assert native.parse_request(b"\x00\x03" + b"x" * 4000) is None


# ---------------------------------------------------------------- parse_request: malformed

@pytest.mark.parametrize("data, why", [
    (b"\x00\x01", "opcode only"),
    (b"\x00\x02", "WRQ opcode only"),
    (b"\x00\x01pxelinux.0", "missing NUL after filename"),
    (b"\x00\x01f\x00", "no mode"),
    (b"\x00\x01f\x00octet", "missing NUL after mode"),
    (b"\x00\x01f\x00octet\x00blksize\x001024", "missing NUL after option value"),
    (b"\x00\x01f\x00octet\x00blksize", "option name without NUL"),
    (b"\x00\x01f\x00octet\x00blksize\x00", "option without value"),
    (b"\x00\x01f\x00octet\x00tsize\x000\x00blksize\x00", "second option without value"),
    (b"\x00\x01\x00octet\x00", "empty filename"),
    (b"\x00\x01\x00\x00", "empty filename and mode"),
    (b"\x00\x01f\x00mail\x00", "mail mode is obsolete"),
    (b"\x00\x01f\x00binary\x00", "unknown mode"),
    (b"\x00\x01f\x00\x00", "empty mode"),
    (b"\x00\x01f\x00oct\xc3\xa9t\x00", "non-ASCII mode"),
])
def test_malformed_requests_are_illegal_operations(data, why):
    err = refused(data)
    assert err.code == 4, why
    assert err.message


def test_oversize_request_is_refused_with_code_4():
    req = rrq(b"a" * 1016, b"octet")
    assert len(req) == 1025
    assert refused(req).code == 4
    assert "too long" in refused(req).message


def test_oversize_request_with_many_options_is_refused():
    fields = [b"f", b"octet"]
    for i in range(200):
        fields += [b"opt%d" % i, b"1"]
    assert refused(rrq(*fields)).code == 4


@pytest.mark.parametrize("names", [
    (b"blksize", b"blksize"),
    (b"blksize", b"BLKSIZE"),
    (b"TSize", b"tsize"),
    (b"x", b"X"),
])
def test_duplicate_option_is_refused_with_code_8(names):
    err = refused(rrq(b"f", b"octet", names[0], b"512", names[1], b"1024"))
    assert err.code == 8
    assert "duplicate" in err.message


def test_tftp_error_str():
    err = refused(rrq(b"f", b"bogus"))
    assert str(err).startswith("TFTP error 4: ")
    assert err.args == (4, err.message)


# ---------------------------------------------------------------- negotiate

def test_no_options_no_oack():
    assert native.negotiate({}, 1000) == (512, 1, 0, None)


def test_unknown_options_only_no_oack():
    assert native.negotiate({"multicast": "", "rollover": "0"}, 1000) == (512, 1, 0, None)


@pytest.mark.parametrize("asked, granted", [
    (8, 8), (9, 9), (512, 512), (1428, 1428), (1468, 1468), (65464, 65464),
    (65465, 65464), (100000, 65464), (1 << 30, 65464),
])
def test_blksize_range(asked, granted):
    blksize, window, timeout, oack = native.negotiate({"blksize": str(asked)}, 1)
    assert (blksize, window, timeout) == (granted, 1, 0)
    assert oack == b"\x00\x06blksize\x00%d\x00" % granted


@pytest.mark.parametrize("asked, cap, granted", [
    (1468, 1468, 1468), (1500, 1468, 1468), (65464, 1468, 1468), (1024, 1468, 1024),
    (512, 8, 8), (9000, 8972, 8972),
])
def test_blksize_capped_by_blksize_max(asked, cap, granted):
    blksize, _, _, oack = native.negotiate({"blksize": str(asked)}, 1, blksize_max=cap)
    assert blksize == granted
    assert oack == b"\x00\x06blksize\x00%d\x00" % granted


@pytest.mark.parametrize("value", ["0", "1", "7", "00", "0007"])
def test_blksize_below_8_refused_with_code_8(value):
    with pytest.raises(TftpError) as info:
        native.negotiate({"blksize": value}, 1)
    assert info.value.code == 8


@pytest.mark.parametrize("value", ["", "abc", "-1", "+512", " 512", "512 ", "5.12", "0x200",
                                   "1e3", "\ufffd", "99999999999", "9999999999"])
def test_blksize_unusable_values_are_ignored(value):
    assert native.negotiate({"blksize": value}, 1) == (512, 1, 0, None)


def test_blksize_leading_zeros():
    assert native.negotiate({"blksize": "01024"}, 1)[0] == 1024


def test_blksize_refused_by_config_is_ignored_even_when_invalid():
    assert native.negotiate({"blksize": "1468"}, 1, allow_blksize=False) == (512, 1, 0, None)
    assert native.negotiate({"blksize": "4"}, 1, allow_blksize=False) == (512, 1, 0, None)
    # the other options still count
    assert native.negotiate({"blksize": "1468", "tsize": "0"}, 77, allow_blksize=False) == \
        (512, 1, 0, b"\x00\x06tsize\x0077\x00")


@pytest.mark.parametrize("size", [0, 1, 512, 1 << 32, (1 << 64) - 1])
def test_tsize_answered_with_the_size(size):
    assert native.negotiate({"tsize": "0"}, size) == \
        (512, 1, 0, b"\x00\x06tsize\x00" + str(size).encode() + b"\x00")


def test_tsize_value_from_client_is_not_echoed():
    assert native.negotiate({"tsize": "12345"}, 99)[3] == b"\x00\x06tsize\x0099\x00"


def test_tsize_not_offered_in_netascii():
    assert native.negotiate({"tsize": "0"}, 1000, netascii=True) == (512, 1, 0, None)
    assert native.negotiate({"tsize": "0", "blksize": "1024"}, 1000, netascii=True) == \
        (1024, 1, 0, b"\x00\x06blksize\x001024\x00")


@pytest.mark.parametrize("value", [1, 2, 5, 254, 255])
def test_timeout_in_range_accepted(value):
    assert native.negotiate({"timeout": str(value)}, 1) == \
        (512, 1, value, b"\x00\x06timeout\x00%d\x00" % value)


@pytest.mark.parametrize("value", ["0", "256", "1000", "-1", "1.5", "x", ""])
def test_timeout_out_of_range_ignored(value):
    assert native.negotiate({"timeout": value}, 1) == (512, 1, 0, None)


@pytest.mark.parametrize("asked, blksize, limit, granted", [
    (1, 512, 1 << 20, 1),
    (16, 512, 1 << 20, 16),
    (65535, 512, 1 << 20, 2048),          # 1 MiB / 512
    (64, 1468, 64 * 1024, 44),            # 65536 // 1468
    (4, 1468, 1000, 1),                   # cap below one block: still one block
    (100, 512, 512 * 100, 100),
    (101, 512, 512 * 100, 100),
])
def test_windowsize_capped_in_bytes(asked, blksize, limit, granted):
    options = {"windowsize": str(asked)}
    if blksize != 512:
        options["blksize"] = str(blksize)
    got_blk, window, _, oack = native.negotiate(options, 1, window_bytes_max=limit)
    assert (got_blk, window) == (blksize, granted)
    assert oack.endswith(b"windowsize\x00%d\x00" % granted)


@pytest.mark.parametrize("value", ["0", "65536", "100000", "-4", "four", ""])
def test_windowsize_out_of_range_ignored(value):
    assert native.negotiate({"windowsize": value}, 1) == (512, 1, 0, None)


def test_windowsize_cap_uses_the_granted_blksize():
    # the client asks for 65464 but the interface allows 1468: the window is 64K // 1468
    blksize, window, _, _ = native.negotiate({"blksize": "65464", "windowsize": "64"}, 1,
                                             blksize_max=1468, window_bytes_max=65536)
    assert (blksize, window) == (1468, 44)


def test_all_options_exact_oack_bytes():
    options = {"windowsize": "8", "timeout": "2", "tsize": "0", "blksize": "1428", "x": "y"}
    blksize, window, timeout, oack = native.negotiate(options, 123456)
    assert (blksize, window, timeout) == (1428, 8, 2)
    assert oack == (b"\x00\x06" b"blksize\x001428\x00" b"tsize\x00123456\x00"
                    b"timeout\x002\x00" b"windowsize\x008\x00")
    # the OACK parses back to what was granted
    assert native.parse_reply(oack) == (OACK, 0, {"blksize": "1428", "tsize": "123456",
                                                   "timeout": "2", "windowsize": "8"})


def test_negotiate_from_a_parsed_request():
    req = rrq(b"f", b"octet", b"BLKSIZE", b"1468", b"TSize", b"0")
    _, _, mode, options = native.parse_request(req)
    assert native.negotiate(options, 4096, netascii=mode == "netascii") == \
        (1468, 1, 0, b"\x00\x06blksize\x001468\x00tsize\x004096\x00")


def test_negotiate_oack_fits_the_engine_buffer():
    # the engine keeps at most 160 bytes of OACK: the largest one negotiate can build
    options = {"blksize": "65464", "tsize": "0", "timeout": "255", "windowsize": "65535"}
    _, _, _, oack = native.negotiate(options, (1 << 64) - 1, blksize_max=65464,
                                     window_bytes_max=(1 << 31) - 1)
    assert len(oack) <= 160


# ---------------------------------------------------------------- builders and parse_reply

@pytest.mark.parametrize("code, message", [
    (0, "file changed during transfer"), (1, "file not found"), (4, ""), (8, "bad option"),
    (5, "Unknown transfer ID"), (0xffff, "max code"), (2, "café ☕"),
])
def test_build_error_round_trip(code, message):
    pkt = native.build_error(code, message)
    assert pkt[:4] == struct.pack("!HH", ERROR, code)
    assert pkt.endswith(b"\x00") and pkt.count(b"\x00", 4) == 1
    assert pkt[4:-1] == message.encode()
    assert native.parse_reply(pkt) == (ERROR, code, message)


def test_build_error_lone_surrogate_is_replaced():
    pkt = native.build_error(1, "bad \udcff name")
    assert pkt == b"\x00\x05\x00\x01bad ? name\x00"


@pytest.mark.parametrize("block", [0, 1, 255, 256, 0x1234, 65535])
def test_build_ack_round_trip(block):
    pkt = native.build_ack(block)
    assert pkt == struct.pack("!HH", ACK, block)
    assert native.parse_reply(pkt) == (ACK, block, b"")


@pytest.mark.parametrize("block, wire", [(65536, 0), (65537, 1), (131071, 65535)])
def test_build_ack_takes_absolute_blocks_mod_65536(block, wire):
    assert native.build_ack(block) == struct.pack("!HH", ACK, wire)


def test_build_request_round_trip():
    options = {"blksize": 1468, "tsize": 0, "windowsize": "4"}
    pkt = native.build_request(RRQ, "boot/x.efi", "octet", options)
    assert pkt == b"\x00\x01boot/x.efi\x00octet\x00blksize\x001468\x00tsize\x000\x00windowsize\x004\x00"
    assert native.parse_request(pkt) == (RRQ, "boot/x.efi", "octet",
                                         {"blksize": "1468", "tsize": "0", "windowsize": "4"})


def test_build_request_defaults_and_wrq():
    assert native.build_request(RRQ, "f") == b"\x00\x01f\x00octet\x00"
    assert native.parse_request(native.build_request(WRQ, "f", "netascii")) == \
        (WRQ, "f", "netascii", {})


def test_build_request_surrogateescape_round_trip():
    name = b"\xff\xfe-\xc3\xa9".decode("utf-8", "surrogateescape")
    assert native.parse_request(native.build_request(RRQ, name))[1] == name


def test_parse_reply_data():
    assert native.parse_reply(b"\x00\x03\x00\x07payload") == (DATA, 7, b"payload")
    assert native.parse_reply(b"\x00\x03\xff\xff") == (DATA, 65535, b"")
    assert native.parse_reply(b"\x00\x03\x00\x01" + b"\x00" * 512) == (DATA, 1, b"\x00" * 512)


def test_parse_reply_error_message_stops_at_nul_and_tolerates_no_nul():
    assert native.parse_reply(b"\x00\x05\x00\x02denied\x00junk") == (ERROR, 2, "denied")
    assert native.parse_reply(b"\x00\x05\x00\x02denied") == (ERROR, 2, "denied")
    assert native.parse_reply(b"\x00\x05\x00\x00") == (ERROR, 0, "")


@pytest.mark.parametrize("pkt, opts", [
    (b"\x00\x06", {}),
    (b"\x00\x06blksize\x00512\x00", {"blksize": "512"}),
    (b"\x00\x06BLKSIZE\x00512\x00TSize\x0099\x00", {"blksize": "512", "tsize": "99"}),
    (b"\x00\x06blksize\x00512", {"blksize": "512"}),  # tolerant of a missing last NUL
])
def test_parse_reply_oack(pkt, opts):
    assert native.parse_reply(pkt) == (OACK, 0, opts)


def test_parse_reply_malformed_oack_code_8():
    with pytest.raises(TftpError) as info:
        native.parse_reply(b"\x00\x06blksize\x00")
    assert info.value.code == 8


@pytest.mark.parametrize("pkt", [
    b"", b"\x00", b"\x00\x01f\x00octet\x00", b"\x00\x02f\x00octet\x00", b"\x00\x07\x00\x00",
    b"\x00\x03\x00", b"\x00\x04\x00", b"\x00\x05\x00", b"\xff\xff\x00\x00",
])
def test_parse_reply_rejects_others_with_code_4(pkt):
    with pytest.raises(TftpError) as info:
        native.parse_reply(pkt)
    assert info.value.code == 4


# ---------------------------------------------------------------- fuzz

def _check_parse_request(data: bytes) -> None:
    try:
        req = native.parse_request(data)
    except TftpError as err:
        assert err.code in (4, 8)
        assert isinstance(err.message, str) and err.message
        return
    if req is None:
        assert len(data) < 2 or data[:2] not in (b"\x00\x01", b"\x00\x02")
        return
    op, name, mode, options = req
    assert op in (RRQ, WRQ) and name and mode in ("octet", "netascii")
    assert len(data) <= 1024 and data.endswith(b"\x00")
    assert all(k == k.lower() for k in options)
    # negotiation of whatever parsed never fails with anything but TftpError(8)
    try:
        blksize, window, timeout, oack = native.negotiate(options, len(data))
    except TftpError as err:
        assert err.code == 8
    else:
        assert 8 <= blksize <= 65464 and 1 <= window <= 65535 and 0 <= timeout <= 255
        assert oack is None or (oack[:2] == b"\x00\x06" and native.parse_reply(oack)[0] == OACK)


if given is not None:
    _field = st.one_of(
        st.binary(max_size=12).map(lambda b: b.replace(b"\x00", b"x")),
        st.sampled_from([b"octet", b"OCTET", b"netascii", b"blksize", b"tsize", b"timeout",
                         b"windowsize", b"0", b"7", b"8", b"512", b"65464", b"99999", b"",
                         b"255", b"256"]),
    )

    @st.composite
    def _requests(draw):
        op = draw(st.sampled_from([b"\x00\x01", b"\x00\x02", b"\x00\x03", b"\x00\x00"]))
        fields = draw(st.lists(_field, max_size=10))
        body = b"".join(f + b"\x00" for f in fields)
        if draw(st.booleans()):
            body = body[:draw(st.integers(0, len(body)))]
        return op + body

    @settings(max_examples=600, deadline=None, database=None)
    @given(st.binary(max_size=1100))
    def test_fuzz_parse_request_random_bytes(data):
        _check_parse_request(data)

    @settings(max_examples=300, deadline=None, database=None)
    @given(_requests())
    def test_fuzz_parse_request_structured(data):
        _check_parse_request(data)

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.binary(max_size=600))
    def test_fuzz_parse_reply_only_raises_tftp_error(data):
        try:
            native.parse_reply(data)
        except TftpError as err:
            assert err.code in (4, 8)
else:  # pragma: no cover
    def test_fuzz_parse_request_random_bytes():
        import random
        rnd = random.Random(1350)
        for _ in range(5000):
            _check_parse_request(bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(40))))
            _check_parse_request(b"\x00\x01" + bytes(rnd.choice(b"\x00ab") for _ in range(rnd.randrange(40))))
