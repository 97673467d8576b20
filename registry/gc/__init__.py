"""Garbage collection, retention, quotas and fsck (see registry.gc.jobs)."""
