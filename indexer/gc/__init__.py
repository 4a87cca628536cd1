"""Garbage collection of a storage site's unreferenced objects, and its lock."""
