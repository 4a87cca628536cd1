"""The domain core of dshub: framework-free parsing, GitLab reading, indexing and jobs."""
