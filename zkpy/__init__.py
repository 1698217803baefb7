"""zkpy: a ZooKeeper-compatible coordination server."""

from zkpy.compiled import COMPILED as COMPILED  # first: decides compiled or source modules

__version__ = "0.1.0"
# The Apache ZooKeeper release whose behaviour zkpy follows; reported by srvr/envi so
# that clients that parse the version (kazoo's server_version) pick the right features.
ZK_COMPAT_VERSION = "3.8.0"
