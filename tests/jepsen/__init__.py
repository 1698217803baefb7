"""A Jepsen-style harness: real zkpy ensembles, client histories, nemeses, our own checker."""
