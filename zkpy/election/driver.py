"""Runs a FastLeaderElection core on the event loop over an ElectionTransport.

The thin shell between the pure core and the sockets: decoded notifications in,
`Send` actions out as frames, the core's deadline as one `loop.call_at` timer, and
`Decided` handed to the caller.  A QuorumPeer can use this as is or copy its ~60 lines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from zkpy.election.fle import Action, Decided, FastLeaderElection, Send, Vote
from zkpy.election.messages import Notification, ServerState
from zkpy.election.transport import ElectionTransport

__all__ = ["ElectionDriver"]

log = logging.getLogger(__name__)


class ElectionDriver:
    """Owns the transport for `fle`; calls `on_decided` when a round ends.

    Messages keep being answered in every state (that is how late joiners learn the
    leader), so keep the driver running for the whole life of the peer: `look()` each
    time the peer becomes LOOKING, `established()` once a role has synced.
    """

    def __init__(self, fle: FastLeaderElection, listen_addr: tuple[str, int],
                 peers: dict[int, tuple[str, int]], on_decided: Callable[[Decided], None],
                 advertised_addr: tuple[str, int] | None = None) -> None:
        self.fle = fle
        self.on_decided = on_decided
        self.transport = ElectionTransport(fle.my_id, listen_addr, peers, self._on_message,
                                           advertised_addr)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.transport.close()

    @staticmethod
    def now_ms() -> int:
        return int(asyncio.get_running_loop().time() * 1000)

    def look(self, last_logged_zxid: int, current_epoch: int) -> None:
        self._run(self.fle.look(self.now_ms(), last_logged_zxid, current_epoch))

    def established(self, state: ServerState, vote: Vote) -> None:
        self.fle.established(state, vote)
        self._rearm()

    def _on_message(self, sid: int, payload: bytes) -> None:
        n = Notification.decode(payload)
        if n is None:
            log.warning("election: skipping a malformed notification from %d (%d bytes)", sid, len(payload))
            return
        self._run(self.fle.receive(self.now_ms(), sid, n))

    def _on_timer(self) -> None:
        due = self._timer_at
        self._timer = self._timer_at = None
        # The loop fired us, so the deadline has passed even if ms rounding says otherwise.
        now = max(self.now_ms(), due if due is not None else 0)
        self._run(self.fle.tick(now))

    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.transport.send(action.to, action.message.encode())
            elif isinstance(action, Decided):  # (NewConfig only comes with reconfig on)
                log.info("election: server %d decided %s, vote %s", self.fle.my_id,
                         action.state.name, action.vote)
                self.on_decided(action)
        self._rearm()

    def _rearm(self) -> None:
        deadline = self.fle.next_deadline()
        if deadline == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        if deadline is not None:
            self._timer_at = deadline
            self._timer = asyncio.get_running_loop().call_at(deadline / 1000, self._on_timer)
