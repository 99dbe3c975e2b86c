"""The container image's HEALTHCHECK (`python -m gateway.healthcheck`): is the role this container runs serving?

One image runs every role, so the probe looks at the container's processes: a LiteLLM proxy (what `gateway
proxy` execs) must answer `/health/liveliness` on PROXY_PORT, a sidecar `/healthz` on SIDECAR_PORT; the
sweeper, the watcher and one-off commands have no port and are healthy while they run. Exit status 0 is
healthy, 1 unhealthy (one line saying why). Liveness only: a database outage does not make a container
unhealthy (an engine would restart it for nothing; /readyz and `gateway reconcile` report that).
Standard library and settings only, so that a probe every 30 s costs little.
"""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

from gateway.config import load_settings

TIMEOUT_SECONDS = 4.0
PROXY_MODULE = "gateway.proxy.launch"  # what `gateway proxy` execs (LiteLLM's command line); not imported here


def role(proc: Path = Path("/proc")) -> str | None:
    """'proxy' or 'sidecar' if a process of this container (its PID namespace) serves that role, else None."""
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            argv = [a.decode(errors="replace") for a in cmdline.read_bytes().split(b"\0") if a]
        except OSError:  # the process ended while we looked
            continue
        names = [Path(a).name for a in argv[:4]]
        if "litellm" in names[:2] or argv[1:3] == ["-m", PROXY_MODULE]:
            return "proxy"
        if "gateway" in names and argv[names.index("gateway") + 1 :][:1] == ["sidecar"]:
            return "sidecar"
    return None


def main() -> int:
    settings = load_settings()
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    urls = {
        "proxy": f"http://{host}:{settings.proxy_port}/health/liveliness",
        "sidecar": f"http://{host}:{settings.sidecar_port}/healthz",
    }
    url = urls.get(role() or "")
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS):
            return 0
    except OSError as exc:  # refused, timed out, or an error status (HTTPError)
        sys.stdout.write(f"unhealthy: {url}: {exc}\n")  # what `docker inspect` shows of the probe
        return 1


if __name__ == "__main__":
    sys.exit(main())
