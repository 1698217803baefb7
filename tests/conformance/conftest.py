"""Fixtures shared by the conformance tests (in addition to tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conformance import rawconn
from tests.conformance.rawconn import RawConnection


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
