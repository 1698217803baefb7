"""Ports for servers started by the tests and by scripts/bench.py.

They come from below the kernel's ephemeral range: a port bound to 0 and released is in
that range, and an outgoing connection (a client, a member dialing another) may take it
as its local port before the server binds it, so a server died at start now and then.
Each port is handed out once per process."""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORT_FLOOR = 10000
_PORT_CEILING = max(_PORT_FLOOR + 5000, _ephemeral_floor())
_handed_out: set[int] = set()
_rng = random.Random(os.getpid() ^ time.time_ns())


def free_port() -> int:
    for _ in range(1000):
        port = _rng.randrange(_PORT_FLOOR, _PORT_CEILING)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_FLOOR}-{_PORT_CEILING}")
