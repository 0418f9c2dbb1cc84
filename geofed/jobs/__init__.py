"""Durable, upstream-backed jobs for OGC API – Processes."""
