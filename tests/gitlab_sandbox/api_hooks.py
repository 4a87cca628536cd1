"""The hooks endpoints (being written)."""
