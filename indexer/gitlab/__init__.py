"""GitLab's truth: the reader (service token), permissions, job tokens, token rules."""
