"""The LiteLLM proxy's parent process, as `gateway up` and `gateway proxy` start it: LiteLLM's own command
line (`litellm --config ... --num_workers N`), with two changes to how its uvicorn parent treats signals.

- SIGHUP reloads the config in every worker (gateway.proxy.reload) instead of uvicorn's default, which
  replaces each worker by a fresh process: ~40 s of start-up per worker here, and no check of the file
  (with one worker, which uvicorn runs in this process, SIGHUP would otherwise end it).
- `RELOAD_SIGNAL` is ignored until a worker has installed its own handler (an ignored signal stays ignored
  across the exec that starts a worker), so a reload asked for while a worker starts cannot kill it.

SIGTERM and SIGINT keep uvicorn's meaning: each worker stops accepting connections, lets calls in flight
finish for GRACEFUL_SHUTDOWN_TIMEOUT seconds (SHUTDOWN_GRACE_SECONDS, set by `child_env`) and exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

from gateway.proxy.loaded import RELOAD_SIGNAL


def _reload_workers(self: object) -> None:
    """uvicorn's `Multiprocess.handle_hup`, replaced: signal each worker to reload in place."""
    for process in getattr(self, "processes", []):
        if process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, RELOAD_SIGNAL)


def main() -> None:
    from uvicorn.supervisors.multiprocess import Multiprocess

    Multiprocess.handle_hup = _reload_workers  # type: ignore[method-assign]
    signal.signal(RELOAD_SIGNAL, signal.SIG_IGN)
    # with one worker uvicorn serves in this process and leaves SIGHUP alone (its default would kill it)
    signal.signal(signal.SIGHUP, lambda _sig, _frame: os.kill(os.getpid(), RELOAD_SIGNAL))
    from litellm.proxy.proxy_cli import run_server

    sys.argv[0] = "litellm"
    run_server()


if __name__ == "__main__":
    main()
