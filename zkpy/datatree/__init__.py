"""The znode tree, paths, ACLs and watches (no I/O)."""
