"""The write path: datasets changed as their users, through GitLab, with bytes in their storage site."""
