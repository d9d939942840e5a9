"""Workload generators: what the guests do (PQAP issue streams and host-side events)."""
