#!/usr/bin/env bash
# `make restore`: put a backup made by `make backup` back into the stack.
#
#   deploy/stack-restore.sh [DIR] [--force]
#
# DIR defaults to the newest backup under backups/. The services that write are
# stopped first; `pgpulse restore` then checks the archive against its manifest and
# refuses a database that is not empty unless --force (FORCE=1 with make), which
# drops and re-creates it; every table is verified against its row count and
# checksum. Only then are the Grafana and Loki volumes replaced from their archives.
# Whatever happens, the stack is started again at the end.
# COMPOSE names the compose command (default: docker compose).
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a compose <<< "${COMPOSE:-docker compose}"

dir="" force=()
for arg in "$@"; do
    case "$arg" in
        --force) force=(--force) ;;
        -*) echo "unknown option $arg" >&2; exit 2 ;;
        *) dir="$arg" ;;
    esac
done
if [ ! -f .env ]; then
    echo "No .env: copy .env.example to .env and set the secrets first." >&2
    exit 1
fi
if [ -z "$dir" ]; then
    dir="$(ls -1d backups/*/ 2>/dev/null | sort | tail -n 1 || true)"
fi
if [ -z "$dir" ] || [ ! -f "$dir/manifest.json" ]; then
    echo "No backup to restore${dir:+ in $dir}: give one, e.g. make restore BACKUP=backups/20260101T000000Z" >&2
    exit 1
fi
abs="$(cd "$dir" && pwd)"
echo "==> restoring $dir"

"${compose[@]}" stop proxy collector scheduler grafana loki promtail
restart() { "${compose[@]}" up -d; }
trap restart EXIT
"${compose[@]}" up -d --wait db

echo "==> database"
"${compose[@]}" run --rm --no-deps -v "$abs:/backup:ro" migrate pgpulse restore /backup "${force[@]}"

echo "==> Grafana and Loki volumes"
"${compose[@]}" --profile tools run --rm --no-deps -v "$abs:/backup:ro" backup-tools sh -euc '
    for v in grafana_data loki_data; do
        if [ -f /backup/$v.tar.gz ]; then
            find /volumes/$v -mindepth 1 -delete
            tar -xzf /backup/$v.tar.gz -C /volumes/$v
            echo "    $v restored"
        else
            echo "    $v: no archive in the backup, left as it is"
        fi
    done'
echo "restore complete: $dir"
