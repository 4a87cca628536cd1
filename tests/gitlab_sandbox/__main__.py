"""`python -m tests.gitlab_sandbox --port P --data-dir D`: run the sandbox in the foreground.

The admin user `root` gets the token from `DSHUB_SANDBOX_ADMIN_TOKEN` when set (otherwise
a random one, printed once). `GET /-/health` answers 200 once the server is up.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from tests.gitlab_sandbox.server import Sandbox


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, start the sandbox and serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m tests.gitlab_sandbox")
    parser.add_argument("--port", type=int, default=8929, help="TCP port on 127.0.0.1")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--data-dir", type=Path, required=True, help="state and repositories")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the sandbox only binds to loopback")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    sandbox = Sandbox(
        args.data_dir, args.port, args.host, os.environ.get("DSHUB_SANDBOX_ADMIN_TOKEN")
    )

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    token_note = (
        "from DSHUB_SANDBOX_ADMIN_TOKEN"
        if os.environ.get("DSHUB_SANDBOX_ADMIN_TOKEN")
        else sandbox.admin_token
    )
    print(
        f"gitlab sandbox on {sandbox.url} (root token: {token_note})", file=sys.stderr, flush=True
    )
    try:
        sandbox.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.webhooks.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
