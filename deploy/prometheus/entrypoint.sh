#!/bin/sh
# Hand /metrics' bearer token (METRICS_BEARER_TOKEN) to Prometheus as a file, then run it. Without the token
# every scrape would answer 401: refuse to start with one clear line instead.
set -eu
if [ -z "${METRICS_BEARER_TOKEN:-}" ]; then
  echo "error: set METRICS_BEARER_TOKEN in .env: the gateway's /metrics answers 401 without it" >&2
  exit 1
fi
umask 077
printf '%s' "$METRICS_BEARER_TOKEN" > /prometheus/metrics_token
exec /usr/bin/prometheus --config.file=/etc/prometheus/prometheus.yml --storage.tsdb.path=/prometheus \
  --web.listen-address=:9090 "$@"
