#!/bin/sh
# Hand /metrics' bearer token (METRICS_BEARER_TOKEN, may be empty) to Prometheus as a file, then run it.
set -eu
umask 077
printf '%s' "${METRICS_BEARER_TOKEN:-}" > /prometheus/metrics_token
exec /usr/bin/prometheus --config.file=/etc/prometheus/prometheus.yml --storage.tsdb.path=/prometheus \
  --web.listen-address=:9090 "$@"
