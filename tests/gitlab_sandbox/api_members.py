"""The members endpoints (being written)."""
