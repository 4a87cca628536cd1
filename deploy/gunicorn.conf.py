# gunicorn -c deploy/gunicorn.conf.py  — the settings live in the package so `dshub serve`
# finds them in an installed copy too.
from webhook_service.gunicorn_conf import *  # noqa: F403
