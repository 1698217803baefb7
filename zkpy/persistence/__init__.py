"""Txn log, snapshots and recovery in Apache ZooKeeper's on-disk format.

* :mod:`.txnlog` -- :class:`~.txnlog.TxnLog` (append on the loop, group-commit
  ``sync()`` in a worker), roll, truncate, :func:`~.txnlog.repair_log`;
* :mod:`.logscan` -- reading log files: :func:`~.logscan.iter_log`, torn/corrupt tails;
* :mod:`.snapshot` / :mod:`.snapload` -- writing (fuzzy, fast) and loading snapshots;
* :mod:`.recovery` -- :func:`~.recovery.recover`, :func:`~.recovery.purge`;
* :mod:`.dump` -- text and JSON dumps of log and snapshot files;
* :mod:`.files` -- file names, listing, validity test, directory checks.
"""
