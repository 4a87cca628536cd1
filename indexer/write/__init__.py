"""Writes to datasets, made in GitLab with the caller's own token (framework-free).

Each module holds one kind of write (`datasets`: create, edit, archive, delete, history);
the HTTP edge in `webhook_service` parses requests and re-indexes after a write.
"""
