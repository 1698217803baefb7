"""peer.QuorumStream drops a connection whose bytes are not quorum packets (a warning)
and one whose packets the server failed to handle (an error with its traceback, so that
a fault of ours is not mistaken for a misbehaving peer); the server carries on."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from zkpy.zab.packets import PacketType, QuorumPacket
from zkpy.zab.peer import QuorumStream


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def writelines(self, data: Any) -> None:
        pass


def _stream(on_packets: Any) -> tuple[QuorumStream, _Transport]:
    stream = QuorumStream(on_packets, lambda s: None)
    transport = _Transport()
    stream.connection_made(transport)
    return stream, transport


def test_garbage_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    stream, transport = _stream(lambda s, pkts: None)
    with caplog.at_level(logging.WARNING, "zkpy"):
        stream.data_received(b"\0\0\0\x05" + b"\0\0\0\0" + b"\x7f\xff\xff\xff" * 4)
    assert transport.closed
    assert [(r.levelno, r.exc_info is None) for r in caplog.records] == [(logging.WARNING, True)]


def test_a_fault_in_handling_is_an_error_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    def broken(stream: QuorumStream, packets: list[QuorumPacket]) -> None:
        raise ValueError("a bug of ours")

    stream, transport = _stream(broken)
    with caplog.at_level(logging.WARNING, "zkpy"):
        stream.data_received(QuorumPacket(PacketType.PING, 1).encode())
    assert transport.closed
    [record] = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "a bug of ours" in caplog.text
