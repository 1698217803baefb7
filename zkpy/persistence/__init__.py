"""Txn log, snapshots and recovery in Apache ZooKeeper's on-disk format."""
