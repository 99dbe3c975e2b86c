# syntax=docker/dockerfile:1
# credit-gateway: one image for every role, chosen by the command (docs/operations.md):
#   proxy (a replica: LiteLLM + the gateway's hooks), sidecar, watch, sweep, migrate, and the admin commands.
# Configuration and secrets come from the environment at run time; none is baked into the image.
#
# Build:  docker build -t credit-gateway .
# Behind a TLS-inspecting proxy or a package mirror, hand pip its settings as build secrets (never layers):
#   docker build --secret id=pip.conf,src=pip.conf --secret id=build-ca,src=/etc/ssl/certs/ca-certificates.crt .
# with e.g. "[global]\ncert = /etc/ssl/certs/build-ca.pem" (and index-url = ...) in that pip.conf.
#
# BASE_IMAGE: the official image by exact tag; its Python minor (3.11) must match requirements.lock's wheels.
# Any Debian bookworm image with python3 and python3-venv works too (make container-smoke builds one).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/gateway
WORKDIR /app
# Dependencies first (this layer is rebuilt only when the lock or pyproject changes): the package's runtime
# dependencies at exactly the versions of requirements.lock (the dev extra stays out of the image), then a
# check that nothing outside the lock was installed and that the set is consistent.
COPY pyproject.toml requirements.lock ./
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf,required=false \
    --mount=type=secret,id=build-ca,target=/etc/ssl/certs/build-ca.pem,required=false \
    mkdir gateway; touch gateway/__init__.py; \
    /opt/gateway/bin/pip install --constraint requirements.lock --editable .; \
    unlocked="$(/opt/gateway/bin/pip freeze --exclude-editable | grep -vixFf requirements.lock || true)"; \
    if [ -n "$unlocked" ]; then echo "installed but not pinned in requirements.lock: $unlocked"; exit 1; fi; \
    /opt/gateway/bin/pip check; \
    rm -r gateway

FROM ${BASE_IMAGE}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
RUN groupadd --system --gid 10001 gateway \
 && useradd --system --uid 10001 --gid gateway --home-dir /var/lib/gateway --shell /usr/sbin/nologin gateway \
 && install -d -o gateway -g gateway /var/lib/gateway /var/lib/gateway/spool
COPY --from=build /opt/gateway /opt/gateway
# The editable install above points /opt/gateway at /app: the package, its LiteLLM hooks, the migrations
# and the default LiteLLM config (mount your own and pass `proxy --config`). Owned by root: read-only to
# the gateway user.
COPY pyproject.toml alembic.ini litellm_config.yaml /app/
COPY gateway /app/gateway
COPY hooks /app/hooks
COPY migrations /app/migrations
RUN /opt/gateway/bin/python -m compileall -q /app/gateway /app/hooks /app/migrations
ENV PATH=/opt/gateway/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    GATEWAY_HOME=/var/lib/gateway \
    SPOOL_DIR=/var/lib/gateway/spool \
    HOST=0.0.0.0
USER 10001:10001
WORKDIR /var/lib/gateway
# A proxy's settle spool (settles waiting for the database) is $SPOOL_DIR: it must outlive the container,
# so mount a volume there (docker-compose.yml does); other roles do not use it.
EXPOSE 4000 8000
# Asks whatever role this container runs: the proxy's /health/liveliness, the sidecar's /healthz; the
# sweeper and the watcher are healthy while they run.
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 CMD ["python", "-m", "gateway.healthcheck"]
ENTRYPOINT ["gateway"]
CMD ["--help"]
