"""The AdminServer's status page: `/`, and the JSON it reads.

- `GET /` is one HTML page (`status_page.PAGE`: inline CSS, inline JS, no external asset)
  that fetches the JSON below every few seconds and draws with the DOM and inline SVG.
- `GET /status.json`: this server's role, sessions, watches and the ring buffer of
  per-second samples (`History`: requests and latency of the last ten minutes), and the
  ensemble's members as the config names them (server.N host and admin port).
- `GET /status/znodes.json`: the ten biggest znodes by data size, path and size only
  (never data); computed when asked and cached for `ZNODES_TTL` seconds, so that a page
  left open costs one scan of the tree every 30 s at most.
- `GET /status/member/<sid>/<command>`: a read-only command of member `sid`, fetched by
  this server from `http://<server.sid host>:<its admin port><commandURL>/<command>`.

Why a proxy and not CORS: with `Access-Control-Allow-Origin` on /commands, any web page an
operator's browser opens could read every member's `dump`, `watches` and `stats`; the
proxy keeps the admin answers same-origin, reaches only the members the config names
(the client picks a server id, never a URL) and only the commands in `PROXIED`, none of
which changes state.  It also works when the browser can reach one member only.

Read-only: nothing here changes state, and no znode data leaves.  As the 3.8 AdminServer,
there is no authentication; the znode paths shown are those `dump` and `watches_by_path`
already list.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from zkpy.server.admin import AdminHandler, run_command
from zkpy.server.http import Response
from zkpy.server.metrics import METRICS, Summary
from zkpy.server.status_page import PAGE

if TYPE_CHECKING:
    from zkpy.server.runtime import ServerRuntime

# Commands the page may read from another member: read-only, small answers.
PROXIED = frozenset({"server_stats", "watch_summary", "zabstate", "leader"})
PROXY_TIMEOUT = 2.0
PROXY_MAX_BODY = 1 << 20
ZNODES_TTL = 30.0
TOP_ZNODES = 10
JSON = "application/json"
PAGE_HEADERS = (
    # the page needs nothing but itself and same-origin fetches
    "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options: nosniff",
    "Cache-Control: no-store",
)


class History:
    """Per-second samples of the requests answered and their latency, `SECONDS` of them.

    A timer in the runtime calls `sample()` once a second; it reads the read and update
    latency summaries (their counts, sums and the observations added since the last
    sample, up to the summary's ring) and costs nothing per request."""

    SECONDS = 600

    def __init__(self) -> None:
        self.samples: deque[tuple[int, int, float, int]] = deque(maxlen=self.SECONDS)
        self._last: dict[str, tuple[int, int, int]] = {}

    def _delta(self, s: Summary) -> tuple[int, int, int]:
        """(requests, total ms, max ms) since the previous sample of `s`."""
        count, total, i = s.count, s.total, s.i
        prev = self._last.get(s.name, (0, 0, 0))  # the registry starts at 0 with the process
        self._last[s.name] = (count, total, i)
        if count < prev[0] or i < prev[2]:  # reset (srst/stat_reset) since: start again
            prev = (0, 0, 0)
        new = min(i - prev[2], s.RING)
        mx = max((s.ring[j & (s.RING - 1)] for j in range(i - new, i)), default=0)
        return count - prev[0], total - prev[1], mx

    def sample(self, now: float | None = None) -> None:
        n = t = mx = 0
        for s in (METRICS.readlatency, METRICS.updatelatency):
            dn, dt, dm = self._delta(s)
            n, t, mx = n + dn, t + dt, max(mx, dm)
        when = int((time.time() if now is None else now) * 1000)
        self.samples.append((when, n, round(t / n, 3) if n else 0.0, mx))

    def as_json(self) -> dict[str, Any]:
        return {"interval_ms": 1000, "columns": ["time_ms", "requests", "avg_latency_ms",
                                                 "max_latency_ms"],
                "samples": [list(s) for s in self.samples]}


def biggest_znodes(nodes: dict[str, Any], n: int = TOP_ZNODES) -> list[dict[str, Any]]:
    """Path and data size of the `n` znodes with the most data (one pass, O(znodes))."""
    top = heapq.nlargest(n, ((len(z.data), p) for p, z in nodes.items() if z.data))
    return [{"path": p, "bytes": size} for size, p in top]


class StatusPages:
    """The AdminServer's handler: `/`, `/status.json`, `/status/znodes.json` and
    `/status/member/...` here, anything else to the commands (`AdminHandler`)."""

    def __init__(self, runtime: ServerRuntime, command_url: str) -> None:
        self.runtime = runtime
        self.command_url = command_url
        self.commands = AdminHandler(runtime, command_url)
        self._znodes: tuple[float, bytes] | None = None

    def __call__(self, path: str, params: dict[str, str]) -> Response | Any:
        if path != "/" and path.startswith(self.commands.url + "/") or path == self.commands.url:
            return self.commands(path, params)
        if path in ("/", "/index.html"):
            return Response(200, "text/html;charset=utf-8", PAGE.encode(), PAGE_HEADERS)
        if path == "/status.json":
            return _json(self.status())
        if path == "/status/znodes.json":
            return Response(200, JSON, self.znodes(), ("Cache-Control: no-store",))
        parts = path.split("/")  # "", "status", "member", sid, command
        if len(parts) == 5 and parts[:3] == ["", "status", "member"] and parts[3].isdigit() \
                and parts[4] in PROXIED:
            return self.member(int(parts[3]), parts[4])
        return self.commands(path, params)  # its 404

    def members(self) -> list[dict[str, Any]]:
        cfg = self.runtime.config
        me = getattr(self.runtime.role, "my_id", None)
        quorum = getattr(self.runtime.role, "quorum", None)  # the members now (reconfig)
        servers = quorum.members if quorum is not None else cfg.servers
        if me is None or not servers:
            return [{"sid": 0, "host": cfg.admin_address, "admin_port": cfg.admin_port,
                     "observer": False, "self": True}]
        return [{"sid": sid, "host": s.host, "admin_port": cfg.admin_peer_ports.get(sid, cfg.admin_port),
                 "observer": s.observer, "self": sid == me}
                for sid, s in sorted(servers.items())]

    def status(self) -> dict[str, Any]:
        server = self.runtime.role.core
        tree = server.tree
        return {
            "myid": getattr(self.runtime.role, "my_id", None) or 0,
            "server_state": server.mode,
            "serving": server.serving,
            "members": self.members(),
            "sessions": len(server.sessions.sessions),
            "local_sessions": len(server.local_tracker.sessions) if server.local_tracker else 0,
            "connections": len(server.connections),
            "watches": tree.watches.count(),
            "znode_count": tree.node_count(),
            "approximate_data_size": tree.approximate_data_size(),
            "history": self.runtime.history.as_json(),
        }

    def znodes(self) -> bytes:
        now = time.monotonic()
        if self._znodes is None or now - self._znodes[0] > ZNODES_TTL:
            top = biggest_znodes(self.runtime.role.core.tree.nodes)
            body = json.dumps({"computed_at_ms": int(time.time() * 1000), "cache_seconds": ZNODES_TTL,
                               "znodes": top}).encode()
            self._znodes = (now, body)
        return self._znodes[1]

    def member(self, sid: int, command: str) -> Any:
        found = [m for m in self.members() if m["sid"] == sid]
        if not found:
            return Response(404, JSON, b'{"error": "no such member"}')
        m = found[0]
        if m["self"]:
            return _json(run_command(self.runtime, command, {}))
        return _fetch(m["host"], m["admin_port"], f"{self.command_url.rstrip('/')}/{command}")


def _json(obj: Any) -> Response:
    return Response(200, JSON, json.dumps(obj).encode(), ("Cache-Control: no-store",))


def _bad_gateway(why: str) -> Response:
    return Response(502, JSON, json.dumps({"error": why}).encode(), ("Cache-Control: no-store",))


async def _fetch(host: str, port: int, path: str) -> Response:
    """GET http://host:port/path (HTTP/1.0, one connection), at most PROXY_TIMEOUT seconds."""
    async def get() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
                         "Connection: close\r\n\r\n".encode("latin-1"))
            buf = b""
            while len(buf) <= PROXY_MAX_BODY:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                buf += chunk
            return buf
        finally:
            writer.close()

    try:
        raw = await asyncio.wait_for(get(), PROXY_TIMEOUT)
    except (TimeoutError, OSError) as e:
        return _bad_gateway(f"{host}:{port} unreachable ({type(e).__name__})")
    head, sep, body = raw.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if not sep or status != [b"200"]:
        return _bad_gateway(f"{host}:{port} answered {head[:40]!r}")
    try:
        json.loads(body)
    except ValueError:
        return _bad_gateway(f"{host}:{port} answered no JSON")
    return Response(200, JSON, body, ("Cache-Control: no-store",))
