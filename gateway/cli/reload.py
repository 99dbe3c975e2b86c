"""`gateway reload`: every proxy worker on this host re-reads its LiteLLM config without a restart, checked
first inside each worker with `gateway check`'s code (gateway.proxy.reload); reports per worker the config
hash it serves and when it loaded it, or the one line why it refused (then it serves what it had).

No LiteLLM import here: the request and the answers are files under $GATEWAY_HOME/reload/ and a signal
(gateway.proxy.loaded), so a reload takes about a second, not the ~8 s a fresh `gateway check` needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import typer

from gateway.cli.common import JsonOpt, emit
from gateway.cli.output import err, out
from gateway.config import get_settings
from gateway.proxy import loaded

TimeoutOpt = typer.Option(30.0, "--timeout", min=1, help="Seconds to wait for every worker's answer.")


def ask(home: Path, timeout: float) -> tuple[list[loaded.Loaded], list[loaded.Loaded]]:
    """Signal every live worker under `home`, wait for their answers: (answered, silent)."""
    asked = loaded.signal_all(home)
    request = loaded.current_request(home)
    deadline = time.monotonic() + timeout
    answered: dict[int, loaded.Loaded] = {}
    while True:
        for status in loaded.read_all(home):
            if status.request == request:
                answered[status.pid] = status
        silent = [w for w in asked if w.pid not in answered]
        if not silent or time.monotonic() >= deadline:
            return sorted(answered.values(), key=lambda s: (s.port, s.pid)), silent
        time.sleep(0.1)


def line(status: loaded.Loaded) -> str:
    at = datetime.fromtimestamp(status.loaded_at, UTC).strftime("%H:%M:%S.%f")[:-3]
    where = f"proxy :{status.port} worker {status.pid}"
    if status.error:
        return f"{where}: refused, still serving {status.hash} (loaded {at} UTC)"
    return f"{where}: serving {status.hash} (loaded {at} UTC){'; ' + status.note if status.note else ''}"


def took(answered: list[loaded.Loaded], silent: list[loaded.Loaded]) -> bool:
    """Whether every worker asked took the new config."""
    return bool(answered) and not silent and not any(s.error for s in answered)


def report(answered: list[loaded.Loaded], silent: list[loaded.Loaded], say: Callable[[str], None]) -> None:
    """Say why the config was refused (each distinct problem once), then the outcome per worker, one line each."""
    for error in dict.fromkeys(s.error for s in answered if s.error):
        say(error)
    for status in answered:
        say(line(status))
    for status in silent:
        say(f"proxy :{status.port} worker {status.pid}: no answer (still serving {status.hash})")


def reload(timeout: float = TimeoutOpt, as_json: bool = JsonOpt) -> None:
    """Reload the LiteLLM config in every proxy worker on this host (also: SIGHUP to `gateway up` or to a
    `gateway proxy`). A config with an error is refused and nothing changes. Exit status 1 unless every
    worker took it."""
    home = get_settings().gateway_home
    answered, silent = ask(home, timeout)
    if not answered and not silent:
        err.print(f"no running proxy found under {loaded.folder(home)} (GATEWAY_HOME)", highlight=False)
        raise typer.Exit(1)
    ok = took(answered, silent)
    doc = {"ok": ok, "workers": [asdict(s) for s in answered], "silent": [asdict(s) for s in silent]}
    emit(as_json, doc, lambda: report(answered, silent, lambda text: out.print(text, markup=False, highlight=False)))
    if not ok:
        raise typer.Exit(1)
