"""Durable store-and-forward spool (SQLite WAL + one fsync'd file per object)."""

from bridge.spool.store import STATES, Delivery, Job, ObjectInfo, Spool, SpoolError

__all__ = ["STATES", "Delivery", "Job", "ObjectInfo", "Spool", "SpoolError"]
