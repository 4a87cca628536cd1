"""Jobs: sync a ref or a project into the index, merge-request data diffs and notes."""
