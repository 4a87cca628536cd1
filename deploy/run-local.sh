#!/usr/bin/env bash
# `make run`: dshub on its embedded default (SQLite index, local journal + in-process worker,
# local-directory storage site) behind gunicorn, plus the GitLab sandbox on loopback when
# DSHUB_GITLAB_URL is unset. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
export PATH="$PWD/$BIN:$PATH"  # dvc and git helpers from the venv
export DSHUB_DATA_DIR="${DSHUB_DATA_DIR:-$PWD/var}"
export DSHUB_BIND="${DSHUB_BIND:-127.0.0.1:8000}"
export DSHUB_PUBLIC_URL="${DSHUB_PUBLIC_URL:-http://$DSHUB_BIND}"
export DVC_NO_ANALYTICS=1
export DSHUB_LOG_FORMAT="${DSHUB_LOG_FORMAT:-text}"  # people read this terminal
mkdir -p "$DSHUB_DATA_DIR"

# A webhook secret shared by GitLab (the sandbox's hook) and dshub, generated once.
if [ -z "${DSHUB_WEBHOOK_SECRET:-}" ]; then
  secret_file="$DSHUB_DATA_DIR/webhook-secret"
  if [ ! -s "$secret_file" ]; then
    (umask 077 && "$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(24))' > "$secret_file")
  fi
  export DSHUB_WEBHOOK_SECRET
  DSHUB_WEBHOOK_SECRET="$(cat "$secret_file")"
fi

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

wait_for() {  # wait_for URL WHAT
  for _ in $(seq 1 100); do
    if "$BIN/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "dshub: $2 did not start; see the messages above" >&2
  exit 1
}

if [ -z "${DSHUB_GITLAB_URL:-}" ]; then
  sandbox_port="${DSHUB_SANDBOX_PORT:-8081}"
  token_file="$DSHUB_DATA_DIR/sandbox-admin-token"
  if [ ! -s "$token_file" ]; then
    (umask 077 && "$BIN/python" -c 'import secrets; print("glpat-" + secrets.token_urlsafe(20))' > "$token_file")
  fi
  export DSHUB_SANDBOX_ADMIN_TOKEN
  DSHUB_SANDBOX_ADMIN_TOKEN="$(cat "$token_file")"
  "$BIN/python" -m tests.gitlab_sandbox --port "$sandbox_port" --data-dir "$DSHUB_DATA_DIR/gitlab" &
  pids+=($!)
  wait_for "http://127.0.0.1:$sandbox_port/-/health" "the GitLab sandbox"
  export DSHUB_GITLAB_URL="http://127.0.0.1:$sandbox_port"
  export DSHUB_GITLAB_TOKEN="$DSHUB_SANDBOX_ADMIN_TOKEN"
  echo "GitLab sandbox:  $DSHUB_GITLAB_URL   (user root, token in $token_file)"
fi

"$BIN/gunicorn" -c deploy/gunicorn.conf.py &
pids+=($!)
wait_for "http://$DSHUB_BIND/healthz" "dshub"
echo "dshub:           $DSHUB_PUBLIC_URL   (health: $DSHUB_PUBLIC_URL/healthz)"

if [ -n "${DSHUB_SANDBOX_ADMIN_TOKEN:-}" ]; then
  # First run: demo datasets made as a person through dshub's own API (see the module).
  "$BIN/python" -m tests.gitlab_sandbox.demo --gitlab "$DSHUB_GITLAB_URL" \
    --dshub "$DSHUB_PUBLIC_URL" --data-dir "$DSHUB_DATA_DIR" \
    || echo "dshub: the demo datasets could not be created (see above); the service keeps running" >&2
  echo
  echo "Try:  curl '$DSHUB_PUBLIC_URL/api/v1/datasets?q=cats'"
  echo "      curl '$DSHUB_PUBLIC_URL/api/v1/datasets' -H \"PRIVATE-TOKEN: \$(cat $DSHUB_DATA_DIR/tokens/alice)\""
  echo "      DSHUB_URL=$DSHUB_PUBLIC_URL .venv/bin/dshub search cats"
fi
echo "Press Ctrl-C to stop."
wait -n "${pids[@]}"
