"""Fixtures shared by the conformance tests (in addition to tests/conftest.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.conformance import rawconn
from tests.conformance.rawconn import RawConnection

if TYPE_CHECKING:
    from tests.conformance.test_tls import TlsServer


@pytest.fixture
def raw(server) -> Iterator[Callable[..., RawConnection]]:  # type: ignore[no-untyped-def]
    """Factory for raw sessions on the shared server, closed at teardown.

    Modules that drive tests/rawclient.py instead define their own `raw`."""
    conns: list[RawConnection] = []

    def make(timeout_ms: int = 10000) -> RawConnection:
        c = rawconn.session(server.port, timeout_ms)
        conns.append(c)
        return c

    yield make
    for c in conns:
        c.end()


@pytest.fixture
def servers() -> Iterator[list[TlsServer]]:
    """TLS servers a test starts itself (test_tls.py's `start_tls`): append each, and they
    are stopped and their directories removed after the test."""
    started: list[TlsServer] = []
    yield started
    for s in started:
        s.srv.stop()
        shutil.rmtree(s.srv.workdir, ignore_errors=True)
