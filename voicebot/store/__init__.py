"""Persistence: calls, turns, handoffs and webhook deliveries (SQLite or PostgreSQL)."""

from voicebot.store.store import DISPOSITIONS, Store, default_url, redact
from voicebot.store.writer import StoreWriter

__all__ = ["DISPOSITIONS", "Store", "StoreWriter", "default_url", "redact"]
