#!/usr/bin/env bash
# `make demo`: pgpulse (`pgpulse up`: the embedded PostgreSQL unless DATABASE_URL is
# set, the proxy, scheduler and collector), the instrumented demo app exporting OTLP
# to it, and `pgpulse loadgen app` driving the app. Ctrl-C stops all three.
#
# Levers (environment): PORT (pgpulse, 8085), DEMO_PORT (the app, 8090), DEMO_RATE
# (requests per second, 10), DEMO_PATTERN (steady|bursts|wave, bursts),
# DEMO_EXPORT_INTERVAL (seconds between the app's exports, 10), PGPULSE_DATA_DIR (var).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
PORT=${PORT:-8085}
DEMO_PORT=${DEMO_PORT:-8090}
DEMO_RATE=${DEMO_RATE:-10}
DEMO_PATTERN=${DEMO_PATTERN:-bursts}
DEMO_EXPORT_INTERVAL=${DEMO_EXPORT_INTERVAL:-10}
STATE=${PGPULSE_DATA_DIR:-var}/demo
KEY_FILE=$STATE/api-key
PGPULSE=http://127.0.0.1:$PORT
mkdir -p "$STATE"

# Each part runs in its own session, so the terminal's Ctrl-C reaches only this
# script, which stops them in order: the app's last export still finds pgpulse up.
pids=()
stop_all() {
    trap - INT TERM EXIT
    # Newest first: the load generator, then the app (a last export), then pgpulse.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
}
trap stop_all INT TERM EXIT

answers() {  # answers URL [KEY]: the HTTP status of an empty OTLP export (or of GET URL)
    "$BIN/python" - "$@" <<'PY'
import sys, urllib.request, urllib.error
url, key = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
req = urllib.request.Request(url, data=b"" if key else None,
                             headers={"Content-Type": "application/x-protobuf",
                                      **({"Authorization": f"Bearer {key}"} if key else {})})
try:
    print(urllib.request.urlopen(req, timeout=5).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except OSError:
    print(0)
PY
}

PORT=$PORT setsid "$BIN/pgpulse" up &
pids+=($!)
echo "demo: waiting for pgpulse on $PGPULSE ..." >&2
for _ in $(seq 1 180); do
    [ "$(answers "$PGPULSE/ready")" = 200 ] && break
    kill -0 "${pids[0]}" 2>/dev/null || { echo "demo: pgpulse did not start" >&2; exit 1; }
    sleep 1
done
[ "$(answers "$PGPULSE/ready")" = 200 ] || { echo "demo: pgpulse is not ready after 3 minutes" >&2; exit 1; }

# The app's key (ingest scope), kept in $KEY_FILE and made again when it no longer works.
if [ ! -s "$KEY_FILE" ] || [ "$(answers "$PGPULSE/v1/metrics" "$(cat "$KEY_FILE")")" != 200 ]; then
    (umask 077 && "$BIN/pgpulse" keys create demo-app --scope ingest > "$KEY_FILE")
fi

setsid "$BIN/python" -m demo --port "$DEMO_PORT" --otlp-endpoint "$PGPULSE/v1/metrics" \
    --api-key-file "$KEY_FILE" --export-interval "$DEMO_EXPORT_INTERVAL" &
pids+=($!)
for _ in $(seq 1 30); do
    [ "$(answers "http://127.0.0.1:$DEMO_PORT/health")" = 200 ] && break
    sleep 0.5
done

setsid "$BIN/pgpulse" loadgen app --url "http://127.0.0.1:$DEMO_PORT" --rate "$DEMO_RATE" \
    --pattern "$DEMO_PATTERN" --burst-every 120 --burst-length 20 --duration 0 &
pids+=($!)
cat >&2 <<MSG
demo: the app on http://127.0.0.1:$DEMO_PORT sends its metrics every ${DEMO_EXPORT_INTERVAL}s to $PGPULSE/v1/metrics;
      the load generator sends it $DEMO_RATE req/s ($DEMO_PATTERN). Series: http_server_request_duration_seconds_*,
      http_server_active_requests, demo_requests_total, demo_errors_total (job="pgpulse-demo").
      The console: $PGPULSE/ ; Grafana's "HTTP services (RED)" dashboard shows them (make up). Ctrl-C stops all.
MSG
wait -n "${pids[@]}" || true
