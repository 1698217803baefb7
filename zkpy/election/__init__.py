"""Leader election: FastLeaderElection (pure core) and its connection manager (port 3888).

* `messages`  -- wire formats: notifications, the initial message, frames;
* `fle`       -- the FastLeaderElection state machine (no I/O, no clock);
* `transport` -- QuorumCnxManager on asyncio (all of election's I/O);
* `driver`    -- glue running the core over the transport with the loop's clock.
"""

from zkpy.election.fle import Action, Decided, FastLeaderElection, Send, Vote
from zkpy.election.messages import Notification, ServerState

__all__ = ["Action", "Decided", "FastLeaderElection", "Notification", "Send", "ServerState", "Vote"]
