"""Election wire formats: vectors from Apache ZooKeeper 3.8.0 itself, then edge cases.

The hex vectors were printed by a scratch Java class calling the 3.8.0 jar's
`FastLeaderElection.buildMsg` and writing the initial message the way
`QuorumCnxManager.startConnection` does (and parsing it back with `InitialMessage.parse`).
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zkpy.election.messages import (
    MAX_FRAME,
    FrameDecoder,
    FrameError,
    InitialMessage,
    InitialMessageError,
    Notification,
    ServerState,
    decode_initial_message,
    encode_frame,
    encode_initial_message,
)

MIN_LONG = -(1 << 63)
CONFIG = b"server.1=127.0.0.1:2888:3888:participant\nversion=0"
JAVA_V2 = bytes.fromhex(
    "000000000000000000000003000000010000000500000000000000070000000000000001"
    "00000002000000327365727665722e313d3132372e302e302e313a323838383a333838383a"
    "7061727469636970616e740a76657273696f6e3d30")
JAVA_V2_EMPTY = bytes.fromhex(
    "0000000200000000000000020000000000000000000000000000000100000000000000000000000200000000")
JAVA_V40 = bytes.fromhex("00000003800000000000000080000000000000000000000000000001800000000000000000000001")
JAVA_INITIAL = bytes.fromhex("ffffffffffff000000000000000000020000000e3132372e302e302e313a33383838")


def test_notification_matches_java_build_msg() -> None:
    n = Notification(ServerState.LOOKING, 3, 0x100000005, 7, 1, config=CONFIG)
    assert n.encode() == JAVA_V2
    assert Notification.decode(JAVA_V2) == n
    assert Notification(ServerState.LEADING, 2, 0, 1, 0).encode() == JAVA_V2_EMPTY
    assert Notification.decode(JAVA_V2_EMPTY) == Notification(ServerState.LEADING, 2, 0, 1, 0)


def test_forty_byte_form_reads_as_version_zero() -> None:
    n = Notification.decode(JAVA_V40)
    assert n == Notification(ServerState.OBSERVING, MIN_LONG, MIN_LONG, 1, MIN_LONG, version=0)
    old = Notification(ServerState.OBSERVING, MIN_LONG, MIN_LONG, 1, MIN_LONG, version=1)
    assert old.encode() == JAVA_V40


def test_twenty_eight_byte_form_takes_peer_epoch_from_zxid() -> None:
    payload = struct.pack(">iqqq", 1, 5, 0x300000007, 9)
    expected = Notification(ServerState.FOLLOWING, 5, 0x300000007, 9, 3, version=0)
    assert Notification.decode(payload) == expected
    negative = struct.pack(">iqqq", 0, 1, -1, 1)
    assert Notification.decode(negative).peer_epoch == -1  # type: ignore[union-attr]  # Java's >> keeps the sign


@pytest.mark.parametrize("size", [0, 1, 27, 29, 35, 36, 39])
def test_lengths_the_reference_cannot_read_are_skipped(size: int) -> None:
    assert Notification.decode(JAVA_V2[:size]) is None


def test_truncated_or_lying_config_is_skipped() -> None:
    assert Notification.decode(JAVA_V2[:-1]) is None
    assert Notification.decode(JAVA_V2[:43]) is None
    head = JAVA_V2_EMPTY[:40]
    assert Notification.decode(head + struct.pack(">i", -1)) is None
    assert Notification.decode(head + struct.pack(">i", 1000) + b"x" * 10) is None
    # Trailing bytes after the config are ignored, as in the reference.
    assert Notification.decode(JAVA_V2 + b"junk") == Notification.decode(JAVA_V2)


def test_version_one_has_no_config_even_if_bytes_follow() -> None:
    payload = struct.pack(">iqqqqi", 0, 1, 2, 3, 4, 1) + b"\x00\x00\x00\x05hello"
    assert Notification.decode(payload) == Notification(ServerState.LOOKING, 1, 2, 3, 4, version=1)


def test_unknown_state_is_skipped() -> None:
    assert Notification.decode(struct.pack(">i", 4) + JAVA_V2[4:]) is None
    assert Notification.decode(struct.pack(">i", -1) + JAVA_V2[4:]) is None


@given(st.sampled_from(list(ServerState)), *[st.integers(MIN_LONG, (1 << 63) - 1)] * 4,
       st.binary(max_size=64))
def test_roundtrip(state: ServerState, leader: int, zxid: int, ee: int, pe: int, config: bytes) -> None:
    n = Notification(state, leader, zxid, ee, pe, config=config)
    assert Notification.decode(n.encode()) == n


@given(st.binary(max_size=120))
def test_garbage_never_raises(data: bytes) -> None:
    n = Notification.decode(data)
    assert n is None or isinstance(n, Notification)


# -- initial message ----------------------------------------------------------------------------


def test_initial_message_matches_reference_vector() -> None:
    assert encode_initial_message(2, "127.0.0.1:3888") == JAVA_INITIAL
    expected = InitialMessage(2, (("127.0.0.1", 3888),), len(JAVA_INITIAL))
    assert decode_initial_message(JAVA_INITIAL) == expected


def test_initial_message_byte_by_byte_then_frames() -> None:
    stream = JAVA_INITIAL + encode_frame(JAVA_V2_EMPTY)
    for cut in range(len(JAVA_INITIAL)):
        assert decode_initial_message(stream[:cut]) is None
    msg = decode_initial_message(stream)
    assert msg is not None and msg.size == len(JAVA_INITIAL)
    assert FrameDecoder(stream[msg.size:]).feed() == [JAVA_V2_EMPTY]


def test_pre_35_initial_message_is_just_the_sid() -> None:
    assert decode_initial_message(struct.pack(">q", 7) + b"rest") == InitialMessage(7, (), 8)


def test_v2_address_list_ipv6_and_wildcards() -> None:
    text = b"[::1]:3888|0.0.0.0:3889|10.0.0.1:3890|[::]:3891"
    data = struct.pack(">qqi", -65535, 4, len(text)) + text
    assert decode_initial_message(data) == InitialMessage(4, (("::1", 3888), ("10.0.0.1", 3890)), len(data))
    assert encode_initial_message(1, "[::1]:3888")[20:] == b"[::1]:3888"


@pytest.mark.parametrize("data", [
    struct.pack(">qqi", -1, 1, 4) + b"a:12",  # unknown protocol version
    struct.pack(">qqi", -65536, 1, 0),  # empty address
    struct.pack(">qqi", -65536, 1, 2049),  # address too long
    struct.pack(">qqi", -65536, 1, -5),
    struct.pack(">qqi", -65536, 1, 9) + b"localhost",  # no port
    struct.pack(">qqi", -65536, 1, 6) + b"a:b:cc",
    struct.pack(">qqi", -65536, 1, 6) + b"host:x",
    struct.pack(">qqi", -65536, 1, 5) + b"[::1]",
    struct.pack(">qqi", -65536, 1, 3) + b"\xff:1",
])
def test_bad_initial_messages_raise(data: bytes) -> None:
    with pytest.raises(InitialMessageError):
        decode_initial_message(data)


def test_encode_initial_message_rejects_absurd_addresses() -> None:
    with pytest.raises(ValueError):
        encode_initial_message(1, "")
    with pytest.raises(ValueError):
        encode_initial_message(1, "h" * 2049)


# -- frames --------------------------------------------------------------------------------------


def test_frames_split_anywhere() -> None:
    payloads = [JAVA_V2, JAVA_V2_EMPTY, b"x"]
    stream = b"".join(encode_frame(p) for p in payloads)
    for chunk in (1, 3, 7, 50, len(stream)):
        dec = FrameDecoder()
        got = [p for i in range(0, len(stream), chunk) for p in dec.feed(stream[i:i + chunk])]
        assert got == payloads


@pytest.mark.parametrize("length", [0, -1, MAX_FRAME + 1])
def test_bad_frame_length(length: int) -> None:
    with pytest.raises(FrameError):
        FrameDecoder().feed(struct.pack(">i", length) + b"abc")


def test_largest_frame_and_encode_limits() -> None:
    big = b"z" * MAX_FRAME
    assert FrameDecoder().feed(encode_frame(big)) == [big]
    with pytest.raises(ValueError):
        encode_frame(big + b"z")
    with pytest.raises(ValueError):
        encode_frame(b"")
