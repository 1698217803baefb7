"""A small HTTP/1.1 server for the AdminServer and the Prometheus endpoint.

Both serve a few GETs to monitoring tools, so this is hand-written rather than a new
dependency (h11 would be the library to take if it had to do more): GET and HEAD only,
a request head of at most `MAX_HEAD` bytes, no request bodies (a request announcing one
is answered and the connection closed), keep-alive with an idle timeout (Jetty's
admin.idleTimeout), requests answered in order.  Anything malformed gets 400 and a close.
A handler may return an awaitable (the status page's fetch from another member): the
connection stops reading until it is answered, so pipelined answers stay in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import cast
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger("zkpy.server")

MAX_HEAD = 8192
# Answers waiting for a client to read them above which no further request is read or
# processed (a client that pipelines `dump`s and never reads holds at most about this).
WRITE_HIGH_WATER = 256 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Request Header Fields Too Large", 500: "Server Error", 502: "Bad Gateway",
           505: "HTTP Version Not Supported"}


class Response:
    """status, content type, body and extra header lines of one answer."""

    __slots__ = ("status", "content_type", "body", "headers")

    def __init__(self, status: int, content_type: str, body: bytes,
                 headers: tuple[str, ...] = ()) -> None:
        self.status = status
        self.content_type = content_type
        self.body = body
        self.headers = headers


# path (percent-decoded), query parameters (first value of each) -> response, now or later
Handler = Callable[[str, dict[str, str]], Response | Awaitable[Response]]


def _error(status: int) -> Response:
    text = f"<html><body><h2>HTTP ERROR {status} {REASONS.get(status, '')}</h2></body></html>\n"
    return Response(status, "text/html;charset=iso-8859-1", text.encode())


class HttpConnection(asyncio.Protocol):
    """One client connection; `handler` answers each request."""

    def __init__(self, handler: Handler, idle_timeout: float) -> None:
        self.handler = handler
        self.idle_timeout = idle_timeout
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._busy = False  # an awaitable answer is pending: requests after it wait
        self._blocked = False  # the client is not reading its answers: requests wait

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(WRITE_HIGH_WATER, WRITE_HIGH_WATER // 4)
        self._arm()

    def pause_writing(self) -> None:
        self._blocked = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self._blocked = False
        if self.transport is not None and not self._closing and not self._busy:
            self.transport.resume_reading()
            self._process()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.idle_timeout > 0:
            self._timer = asyncio.get_running_loop().call_later(self.idle_timeout, self._idle)

    def _idle(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        self.buf += data
        self._arm()
        self._process()

    def _process(self) -> None:
        while not self._closing and not self._busy and not self._blocked:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self._send(_error(413), False, close=True)
                return
            if end > MAX_HEAD:
                self._send(_error(413), False, close=True)
                return
            head, self.buf = self.buf[:end], self.buf[end + 4:]
            self._request(head)

    def _request(self, head: bytes) -> None:
        try:
            lines = head.decode("latin-1").split("\r\n")
            method, target, version = lines[0].split(" ")
            headers: dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if not sep or not name or name != name.strip():
                    raise ValueError(line)
                headers[name.lower()] = value.strip()
        except ValueError:
            self._send(_error(400), False, close=True)
            return
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            self._send(_error(505), False, close=True)
            return
        conn = headers.get("connection", "").lower()
        keep = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
        has_body = ("transfer-encoding" in headers
                    or headers.get("content-length", "0").strip() not in ("", "0"))
        head_only = method == "HEAD"
        if method not in ("GET", "HEAD"):
            self._send(_error(405), head_only, close=True)
            return
        if not target.startswith("/"):
            self._send(_error(400), head_only, close=True)
            return
        parts = urlsplit(target)
        params: dict[str, str] = {}
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            params.setdefault(k, v)
        close = not keep or has_body
        try:
            resp = self.handler(unquote(parts.path), params)
        except Exception:  # a command's bug must not take the listener down
            log.exception("admin/metrics request %s failed", target)
            resp = _error(500)
        if isinstance(resp, Response):
            self._send(resp, head_only, close)
            return
        self._busy = True
        if self.transport is not None:
            self.transport.pause_reading()
        asyncio.ensure_future(self._later(resp, target, head_only, close))

    async def _later(self, pending: Awaitable[Response], target: str, head_only: bool,
                     close: bool) -> None:
        try:
            resp = await pending
        except Exception:
            log.exception("admin/metrics request %s failed", target)
            resp = _error(500)
        self._busy = False
        self._send(resp, head_only, close)
        if self.transport is not None and not self._closing and not self._blocked:
            self.transport.resume_reading()
            self._process()

    def _send(self, resp: Response, head_only: bool, close: bool) -> None:
        t = self.transport
        if t is None:
            return
        hdrs = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'OK')}",
                f"Date: {formatdate(usegmt=True)}",
                f"Content-Type: {resp.content_type}",
                f"Content-Length: {len(resp.body)}",
                "Server: zkpy", *resp.headers]
        if close:
            hdrs.append("Connection: close")
        t.write(("\r\n".join(hdrs) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            t.write(resp.body)
        if close:
            self._closing = True
            t.close()


async def serve_http(handler: Handler, host: str, port: int,
                     idle_timeout: float) -> asyncio.base_events.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: HttpConnection(handler, idle_timeout), host, port,
                                    reuse_address=True)
