#!/bin/sh
# Entry point of the `lb` service (docker-compose.yml): nginx in front of the proxy replicas, resolving the
# service name `proxy` through this container's own DNS server (Docker's or Podman's), read from resolv.conf.
set -eu
resolver=$(awk '$1 == "nameserver" { print $2; exit }' /etc/resolv.conf)
case "$resolver" in
  "") echo "lb: no nameserver in /etc/resolv.conf" >&2; exit 1 ;;
  *:*) resolver="[$resolver]" ;;
esac
sed "s/@RESOLVER@/$resolver/" /etc/gateway-lb/nginx.conf.template > /tmp/nginx.conf
exec nginx -c /tmp/nginx.conf -g "daemon off;"
