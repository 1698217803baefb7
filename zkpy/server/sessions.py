"""Session tracker: ids, passwords, negotiated timeouts and bucketed expiry.

Pure: the caller passes the monotonic time in milliseconds and asks which sessions are
due.  Expiry follows Apache ZooKeeper's ExpiryQueue: a touched session moves to the
bucket `(floor((now + timeout) / tick) + 1) * tick`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_M = 0x5DEECE66D
_MASK = (1 << 48) - 1
_PASSWD_SEED = 0xB3415C00


def session_password(session_id: int) -> bytes:
    """java.util.Random(sessionId ^ 0xB3415C00).nextBytes(16), as the reference does."""
    seed = (((session_id & 0xFFFFFFFFFFFFFFFF) ^ _PASSWD_SEED) ^ _M) & _MASK
    out = bytearray()
    while len(out) < 16:
        seed = (seed * _M + 0xB) & _MASK
        out += (seed >> 16).to_bytes(4, "little")
    return bytes(out[:16])


def _signed64(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v & (1 << 63) else v


def initial_session_id(server_id: int, now_ms: int) -> int:
    return _signed64((server_id << 56) | ((now_ms & 0xFFFFFFFFFF) << 16))


@dataclass(slots=True)
class Session:
    id: int
    timeout: int
    expires_at: int = 0
    closing: bool = False
    owner: int | None = None  # server id the client is connected to (leader's view); None: not yet known
    auth_ids: list[tuple[str, str]] = field(default_factory=list)


class SessionTracker:
    """Live sessions and their expiry buckets."""

    def __init__(self, server_id: int, tick_ms: int, now_ms: int, wall_ms: int) -> None:
        self.tick = tick_ms
        self.next_id = initial_session_id(server_id, wall_ms)
        self.sessions: dict[int, Session] = {}
        self.buckets: dict[int, set[int]] = {}
        self.now = now_ms

    def new_id(self) -> int:
        sid = self.next_id
        self.next_id = _signed64(self.next_id + 1)
        if sid == -(1 << 63):  # skip Long.MIN_VALUE, the container marker
            return self.new_id()
        return sid

    def _bucket(self, when: int) -> int:
        return (when // self.tick + 1) * self.tick

    def add(self, sid: int, timeout: int, now_ms: int) -> Session:
        s = self.sessions.get(sid)
        if s is None:
            s = Session(sid, timeout)
            self.sessions[sid] = s
        s.timeout = timeout
        s.closing = False
        self.touch(sid, now_ms)
        return s

    def touch(self, sid: int, now_ms: int) -> bool:
        s = self.sessions.get(sid)
        if s is None or s.closing:
            return False
        b = self._bucket(now_ms + s.timeout)
        if b != s.expires_at:
            old = self.buckets.get(s.expires_at)
            if old is not None:
                old.discard(sid)
                if not old:
                    del self.buckets[s.expires_at]
            self.buckets.setdefault(b, set()).add(sid)
            s.expires_at = b
        return True

    def remove(self, sid: int) -> None:
        s = self.sessions.pop(sid, None)
        if s is not None:
            old = self.buckets.get(s.expires_at)
            if old is not None:
                old.discard(sid)
                if not old:
                    del self.buckets[s.expires_at]

    def set_closing(self, sid: int) -> None:
        s = self.sessions.get(sid)
        if s is not None:
            s.closing = True

    def expired(self, now_ms: int) -> list[int]:
        """Sessions whose bucket is due; they are marked closing."""
        due = sorted(b for b in self.buckets if b <= now_ms)
        out: list[int] = []
        for b in due:
            for sid in sorted(self.buckets.pop(b)):
                s = self.sessions.get(sid)
                if s is not None and not s.closing:
                    s.closing = True
                    out.append(sid)
        return out

    def next_deadline(self) -> int | None:
        return min(self.buckets) if self.buckets else None
