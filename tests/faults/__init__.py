"""Fault injection against the real agent process: kill -9, relay and RPC outages, duplicates, full disk."""
