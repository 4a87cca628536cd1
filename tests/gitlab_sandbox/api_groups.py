"""The groups endpoints (being written)."""
