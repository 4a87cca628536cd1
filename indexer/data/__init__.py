"""Data: DVC pointers and manifests, object keys, storage sites' bytes, previews, diffs."""
