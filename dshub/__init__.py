"""dshub: a dataset platform that lives inside GitLab (configuration and command line)."""

__version__ = "0.1.0"
