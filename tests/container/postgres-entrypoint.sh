#!/bin/sh
# Test image only (make container-smoke): PostgreSQL from Debian's packages behind the interface of the
# official postgres image that docker-compose.yml uses: POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB
# create the role and database on first start; the data lives in $PGDATA (a volume); `postgres ARGS` passes
# ARGS (e.g. -c max_connections=300) to the server.
set -eu
PGDATA=${PGDATA:-/var/lib/postgresql/data}
sockets=/tmp  # the image's /run is empty (mmdebstrap leaves no /run/postgresql); clients connect over TCP
bin=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  "$bin/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  "$bin/pg_ctl" -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=$sockets" -w start >/dev/null
  "$bin/psql" -v ON_ERROR_STOP=1 -h "$sockets" -U "$POSTGRES_USER" -d postgres -c "CREATE DATABASE \"$POSTGRES_DB\"" >/dev/null
  "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
fi
[ "${1:-}" = postgres ] && shift
exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories="$sockets" "$@"
