"""gunicorn settings for dshub: threaded workers so long downloads never block webhooks.

Every value can be overridden with gunicorn's own environment variable or flags; the bind
address comes from DSHUB_BIND (default 127.0.0.1:8000, loopback only).
"""

import os

bind = os.environ.get("DSHUB_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("DSHUB_WORKERS", "2"))
threads = int(os.environ.get("DSHUB_THREADS", "8"))
# Webhook senders give up after 10 s; downloads can be long, so the worker timeout is the
# heartbeat timeout of an idle worker, not a request deadline (gthread keeps beating).
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = "-"
errorlog = "-"
# Keep the request line of every access log entry free of query strings (tokens may be there).
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
wsgi_app = "webhook_service:create_app()"
