#!/usr/bin/env bash
# `make backup`: back up the running stack into backups/<UTC timestamp>/ (or $1):
#
#   manifest.json, pgpulse.dump   `pgpulse backup` against the db service, run in a
#                                 one-shot container of the pgpulse image as the owner
#   grafana_data.tar.gz           the Grafana volume (users, preferences, UI-made
#   loki_data.tar.gz              dashboards and alerts) and the Loki volume (logs)
#
# Grafana and Loki are stopped for the few seconds their volumes are archived, so
# the archives are consistent; Promtail keeps and resends what it reads meanwhile.
# COMPOSE names the compose command (default: docker compose).
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a compose <<< "${COMPOSE:-docker compose}"

if [ ! -f .env ]; then
    echo "No .env: copy .env.example to .env and set the secrets first." >&2
    exit 1
fi
dir="${1:-backups/$(date -u +%Y%m%dT%H%M%SZ)}"
if [ -e "$dir/manifest.json" ]; then
    echo "$dir already holds a backup: choose another directory." >&2
    exit 1
fi
mkdir -p "$dir"
abs="$(cd "$dir" && pwd)"
uid="$(id -u):$(id -g)"

echo "==> database -> $dir"
"${compose[@]}" up -d --wait db
"${compose[@]}" run --rm --no-deps --user "$uid" -v "$abs:/backup" migrate \
    pgpulse backup --output /backup

echo "==> Grafana and Loki volumes -> $dir"
"${compose[@]}" stop grafana loki
restart() { "${compose[@]}" start loki grafana >/dev/null || true; }
trap restart EXIT
"${compose[@]}" --profile tools run --rm --no-deps -v "$abs:/backup" backup-tools sh -euc "
    for v in grafana_data loki_data; do
        tar -czf /backup/\$v.tar.gz -C /volumes/\$v .
        echo \"    \$v.tar.gz: \$(du -h /backup/\$v.tar.gz | cut -f1)\"
    done
    chown $uid /backup/grafana_data.tar.gz /backup/loki_data.tar.gz"
echo "backup complete: $dir"
