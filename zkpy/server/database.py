"""Opening the data directory: recover the tree and open the txn log.

Until the durable log lands this is an in-memory database: nothing survives a restart.
"""

from __future__ import annotations

from typing import Any

from zkpy.datatree.tree import DataTree
from zkpy.server.config import Config


class Database:
    """The tree recovered from disk plus the txn log new writes go to."""

    def __init__(self, tree: DataTree, txn_log: Any) -> None:
        self.tree = tree
        self.txn_log = txn_log

    def attach(self, core: Any) -> None:
        """Hook the snapshot trigger into the server core."""

    def close(self) -> None:
        if self.txn_log is not None:
            self.txn_log.close()


def open_database(config: Config) -> Database:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return Database(DataTree(), None)
