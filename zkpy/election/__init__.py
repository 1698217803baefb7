"""FastLeaderElection; empty until the ensemble issue."""
