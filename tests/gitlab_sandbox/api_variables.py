"""The variables endpoints (being written)."""
