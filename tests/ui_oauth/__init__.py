"""Sign in with GitLab in a real browser, against the sandbox and gunicorn."""
