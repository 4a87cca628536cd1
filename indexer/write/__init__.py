"""The write path: datasets changed as their users, through GitLab, with bytes in their storage site.

Each module holds one kind of write (`datasets`: create, edit, archive, delete, history;
the upload, move and delete of files beside it); the HTTP edge in `webhook_service` parses
requests and re-indexes after a write. Everything here is framework-free.
"""
