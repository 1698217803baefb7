"""Jute codec: primitives, client protocol records, txn records."""
