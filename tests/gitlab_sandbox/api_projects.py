"""The projects endpoints (being written)."""
