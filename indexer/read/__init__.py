"""Reads: permission-filtered search, ref/path resolution, the DVC remote's access rule."""
