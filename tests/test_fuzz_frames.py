"""Fuzzing the client port of zkpy with random and mutated frames.

Invariants, checked after every example:
* the server process is alive and answers `ruok`;
* a kazoo client that was connected before the fuzzing is still connected on the same
  session, and its guarded subtree (writable only by its digest identity) is exactly as it
  left it: same data, versions, mzxid, children;
* the server log shows no Python traceback (a malformed frame must be rejected, not crash a
  handler).

Only zkpy is fuzzed (a private server), since the point is zkpy's robustness.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kazoo.client import KazooClient
from kazoo.security import OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, make_digest_acl

from tests.conformance import rawconn
from tests.conftest import four_letter, start_server

GUARD = "/fuzz-guard"
INTERESTING_INTS = [0, 1, -1, -2, 2**31 - 1, -(2**31), 0xFFFFF, 0x100000, 45, 44, 16]
OPS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
       100, 101, 102, 103, 104, 105, 106, 107, -10, -11, 0, 999]


def _templates() -> list[bytes]:
    """Valid request frames (payloads, without the length prefix) to mutate."""
    u, b = rawconn.ustring, rawconn.buffer
    acl = rawconn.OPEN_ACL
    t = [
        struct.pack(">ii", 1, 1) + rawconn.create_body("/fz", b"data", 0),
        struct.pack(">ii", 2, 1) + rawconn.create_body(f"{GUARD}/x", b"data", 3),
        struct.pack(">ii", 3, 2) + u(f"{GUARD}/a") + struct.pack(">i", -1),
        struct.pack(">ii", 4, 5) + u(f"{GUARD}/a") + b(b"evil") + struct.pack(">i", -1),
        struct.pack(">ii", 5, 4) + rawconn.path_watch(GUARD, True),
        struct.pack(">ii", 6, 3) + rawconn.path_watch("/nothing", True),
        struct.pack(">ii", 7, 8) + rawconn.path_watch("/", True),
        struct.pack(">ii", 8, 7) + u(GUARD) + acl + struct.pack(">i", -1),
        struct.pack(">ii", 9, 19) + rawconn.create_body("/fz-c", b"", 4),
        struct.pack(">ii", 10, 21) + rawconn.create_body("/fz-t", b"", 5) + struct.pack(">q", 1000),
        struct.pack(">ii", 11, 14) + struct.pack(">ibi", 1, 0, -1) + rawconn.create_body("/fz-m", b"")
        + struct.pack(">ibi", 2, 0, -1) + u(f"{GUARD}/a") + struct.pack(">i", -1)
        + struct.pack(">ibi", -1, 1, -1),
        struct.pack(">ii", 12, 22) + struct.pack(">ibi", 4, 0, -1) + rawconn.path_watch(GUARD, False)
        + struct.pack(">ibi", -1, 1, -1),
        struct.pack(">ii", -8, 101) + struct.pack(">q", 0) + rawconn.strings([GUARD])
        + rawconn.strings(["/x"]) + rawconn.strings([GUARD]),
        struct.pack(">ii", -8, 105) + struct.pack(">q", 0) + rawconn.strings([GUARD]) * 5,
        struct.pack(">ii", 13, 106) + u("/") + struct.pack(">i", 1),
        struct.pack(">ii", 14, 18) + u(GUARD) + struct.pack(">i", 3),
        struct.pack(">ii", -4, 100) + struct.pack(">i", 0) + u("digest") + b(b"guard:wrong"),
        struct.pack(">ii", 15, 103) + u("/"),
        struct.pack(">ii", 16, 104) + u("/"),
        struct.pack(">ii", 17, 107),
        struct.pack(">ii", 18, 9) + u(GUARD),
        struct.pack(">ii", -2, 11),
        struct.pack(">ii", 19, 16) + u("server.9=127.0.0.1:1:2") + u(None) + u(None) + struct.pack(">q", -1),
    ]
    return t


TEMPLATES = _templates()
HANDSHAKE = struct.pack(">iqiqi", 0, 0, 4000, 0, 16) + b"\0" * 16 + b"\0"


@st.composite
def mutated(draw, template: bytes) -> bytes:
    data = bytearray(template)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "int", "truncate", "insert", "delete", "op"]))
        if not data:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "int":
            v = draw(st.sampled_from(INTERESTING_INTS) | st.integers(-(2**31), 2**31 - 1))
            data[pos:pos + 4] = struct.pack(">i", v)
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 8))]
        elif kind == "op" and len(data) >= 8:
            data[4:8] = struct.pack(">i", draw(st.sampled_from(OPS)))
    return bytes(data)


def framed(payload: bytes, length_delta: int = 0) -> bytes:
    return struct.pack(">i", len(payload) + length_delta) + payload


@st.composite
def request_frames(draw) -> bytes:
    """A sequence of (mostly well-framed) mutated requests, sent after a valid handshake."""
    out = b""
    for _ in range(draw(st.integers(1, 5))):
        choice = draw(st.integers(0, 9))
        if choice < 7:
            payload = draw(mutated(draw(st.sampled_from(TEMPLATES))))
        elif choice < 9:
            op = draw(st.sampled_from(OPS))
            payload = struct.pack(">ii", draw(st.integers(-10, 100)), op) + draw(st.binary(max_size=64))
        else:
            payload = draw(st.binary(max_size=64))
        delta = 0 if draw(st.integers(0, 9)) else draw(st.integers(-8, 8))
        out += framed(payload, delta)
    return out


@pytest.fixture(scope="module")
def fuzz_env():
    srv = start_server("zkpy", {"minSessionTimeout": "2000", "maxSessionTimeout": "4000"})
    zk = KazooClient(hosts=srv.hosts, timeout=10, auth_data=[("digest", "guard:secret")])
    zk.start(timeout=15)
    acl = [make_digest_acl("guard", "secret", all=True)]
    zk.create(GUARD, b"guard", acl=acl + list(READ_ACL_UNSAFE))
    for name in ("a", "b"):
        zk.create(f"{GUARD}/{name}", name.encode(), acl=acl + list(READ_ACL_UNSAFE))
    zk.create("/open", b"", acl=OPEN_ACL_UNSAFE)
    env = {"srv": srv, "zk": zk, "sid": zk.client_id[0], "snapshot": _snapshot(zk)}
    try:
        yield env
    finally:
        zk.stop()
        zk.close()
        log = srv.log_text()
        srv.stop()
        shutil.rmtree(srv.workdir, ignore_errors=True)
        assert "Traceback" not in log, log[-4000:]


def _snapshot(zk) -> dict:
    out = {}
    for path in (GUARD, f"{GUARD}/a", f"{GUARD}/b"):
        data, stat = zk.get(path)
        out[path] = (data, stat.version, stat.cversion, stat.aversion, stat.mzxid, stat.pzxid,
                     tuple(sorted(zk.get_children(path))), tuple(zk.get_acls(path)[0]))
    return out


def _talk(port: int, data: bytes, handshake: bool) -> None:
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=2)
    except OSError:
        return
    try:
        s.settimeout(0.15)
        if handshake:
            s.sendall(framed(HANDSHAKE))
        s.sendall(data)
        deadline = time.monotonic() + 0.15
        while time.monotonic() < deadline:
            if not s.recv(65536):
                break
    except OSError:
        pass
    finally:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()


def _check(env) -> None:
    srv, zk = env["srv"], env["zk"]
    assert srv.proc.poll() is None, srv.log_text()[-4000:]
    assert zk.connected and zk.client_id[0] == env["sid"]
    assert _snapshot(zk) == env["snapshot"]
    log = srv.log_text()
    assert "Traceback" not in log, log[-4000:]


# ZKPY_FUZZ_EXAMPLES=2000 for a longer hunt.
FUZZ = settings(max_examples=int(os.environ.get("ZKPY_FUZZ_EXAMPLES", "120")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(data=request_frames())
def test_mutated_requests_after_handshake(fuzz_env, data):
    _talk(fuzz_env["srv"].port, data, handshake=True)
    _check(fuzz_env)


@FUZZ
@given(data=st.one_of(
    st.binary(max_size=128),
    st.builds(lambda m: framed(m), mutated(HANDSHAKE)),
    st.builds(lambda m, rest: framed(m) + rest, mutated(HANDSHAKE), st.binary(max_size=64)),
))
def test_random_bytes_before_handshake(fuzz_env, data):
    _talk(fuzz_env["srv"].port, data, handshake=False)
    _check(fuzz_env)


def test_server_answers_after_fuzzing(fuzz_env):
    assert four_letter(fuzz_env["srv"].port, "ruok") == "imok"
    with rawconn.session(fuzz_env["srv"].port) as c:
        assert c.exists(GUARD).err == 0
        c.end()
