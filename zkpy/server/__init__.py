"""The client-facing server: config, connections, sessions, request pipeline."""
