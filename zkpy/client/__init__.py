"""asyncio ZooKeeper client and the zkpy-cli shell."""
