"""Storage sites: the registry, validation probes and a dataset's selection."""
