"""Helpers shared by tests and benchmarks: services, dataset repositories, reference data."""
