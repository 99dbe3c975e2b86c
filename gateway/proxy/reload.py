"""The config generation one LiteLLM worker serves, and swapping it for a new one without a restart.

On `RELOAD_SIGNAL` (sent by `gateway reload`, or by the proxy's parent on SIGHUP: gateway.proxy.launch) the
worker re-reads the config file it was started with and:
1. checks it with `gateway check`'s own code (gateway.proxy.catalog.load, here with LiteLLM already
   imported: well under a second). An error refuses the reload: the worker keeps serving what it had,
   untouched, and reports the one-line problem (the model and the fix);
2. otherwise swaps, in one synchronous step on the event loop (no other call runs in between): the router's
   model list (`Router.set_model_list`, the code LiteLLM's own Router builds it with), the per-generation
   price and tokenizer caches (gateway.proxy.pricing), the model labels of the metrics, the loaded hash;
3. publishes the new price list for the sidecar and its status file (gateway.proxy.loaded).

A call admitted before the swap carries its own prices on its `Call` and is settled at them; one admitted
after it is held and settled at the new ones. Only the model list (with its prices and limits) is reloaded:
a change to general_settings, litellm_settings or router_settings is noted in the status and takes effect
at the next restart (roll the replicas, docs/operations.md).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.observability import metrics
from gateway.proxy import loaded, pricing
from gateway.proxy.runtime import runtime

log = logging.getLogger("gateway.proxy.reload")

RESTART_SECTIONS = ("general_settings", "litellm_settings", "router_settings", "environment_variables")


@dataclass(frozen=True)
class Generation:
    config: Path
    hash: str
    loaded_at: float
    restart_sections: str  # the sections a reload does not take, as loaded at start-up


_current: Generation | None = None
_lock = asyncio.Lock()


def current() -> Generation | None:
    return _current


def _config_path() -> Path:
    from litellm.proxy import proxy_server

    configured = proxy_server.user_config_file_path or os.environ.get("CONFIG_FILE_PATH")
    return Path(configured or runtime().settings.effective_litellm_config).resolve()


def _restart_sections(document: Any) -> str:
    doc = document if isinstance(document, dict) else {}
    return yaml.safe_dump({name: doc.get(name) for name in RESTART_SECTIONS}, sort_keys=True)


def _set(generation: Generation) -> None:
    global _current
    if _current is not None and _current.hash != generation.hash:
        metrics.CONFIG_LOADED.labels(_current.hash).set(0)
    _current = generation
    metrics.CONFIG_LOADED.labels(generation.hash).set(generation.loaded_at)


def _report(generation: Generation, request: str, error: str | None = None, note: str | None = None) -> None:
    settings = runtime().settings
    pid = os.getpid()
    status = loaded.Loaded(
        pid=pid,
        parent=os.getppid(),
        port=settings.proxy_port,
        config=str(generation.config),
        hash=generation.hash,
        loaded_at=generation.loaded_at,
        request=request,
        error=error,
        note=note,
        started=loaded.process_start(pid),
    )
    loaded.write(settings.gateway_home, status)


def install(loop: asyncio.AbstractEventLoop) -> None:
    """At a worker's start-up: record what it loaded (LiteLLM read the same file a moment ago), and reload on
    `RELOAD_SIGNAL` from then on (the parent ignores that signal for workers still starting: launch.py)."""
    _started()
    tasks: set[asyncio.Task[None]] = set()

    def on_signal() -> None:
        task = loop.create_task(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    loop.add_signal_handler(loaded.RELOAD_SIGNAL, on_signal)
    home, pid = runtime().settings.gateway_home, os.getpid()
    atexit.register(loaded.remove, home, pid)


def _started() -> None:
    path = _config_path()
    content = path.read_bytes()
    generation = Generation(path, loaded.config_hash(content), time.time(), _restart_sections(yaml.safe_load(content)))
    _set(generation)
    _report(generation, "")


async def reload() -> None:
    """Take the config file anew (see the module docstring); one reload at a time per worker."""
    async with _lock:
        request = loaded.current_request(runtime().settings.gateway_home)
        old = _current
        if old is None:
            return
        began = time.perf_counter()
        try:
            error, note = _swap(old)
        except Exception as exc:  # a bug, not a bad file: said as it is
            log.exception("config reload failed")
            error, note = f"error: reload failed ({type(exc).__name__}: {exc}); see the proxy's log", None
        now = _current or old
        if error:
            log.warning("config reload refused, still serving %s: %s", old.hash, error)
        else:
            log.warning("config reloaded: %s -> %s in %.0f ms", old.hash, now.hash, (time.perf_counter() - began) * 1e3)
        _report(now, request, error, note)


def _swap(old: Generation) -> tuple[str | None, str | None]:
    """Check and swap; (the refusal line, None) or (None, a note on what needs a restart)."""
    from litellm.proxy import proxy_server

    from gateway.proxy import call_metrics
    from gateway.proxy.catalog import load, publish

    settings = runtime().settings
    path = old.config
    try:
        content = path.read_bytes()
    except OSError as exc:
        return f"error: cannot read {path}: {exc.strerror}; nothing changed", None
    catalog = load(path, settings.user_price_markup_factor)
    if catalog.errors:
        more = f"; {len(catalog.errors) - 1} more error(s): gateway check lists them" if len(catalog.errors) > 1 else ""
        return f"{catalog.errors[0].line()}{more}; nothing changed (still serving {old.hash})", None
    if path.read_bytes() != content:  # saved again while it was checked: what was checked is not what is there
        return f"error: {path} changed while it was checked; nothing changed, run the reload again", None
    document = yaml.safe_load(content)
    router = proxy_server.llm_router
    if router is None:
        return "error: the proxy has no router yet; nothing changed", None
    # from here on nothing awaits: calls on this worker see the old generation or the new one, never a mix
    router.set_model_list(list(document["model_list"]))
    proxy_server.llm_model_list = router.get_model_list()
    pricing.new_generation()
    call_metrics.models_changed()
    new = Generation(path, loaded.config_hash(content), time.time(), old.restart_sections)
    _set(new)
    publish(catalog, settings.price_list_path)
    if _restart_sections(document) == old.restart_sections:
        return None, None
    return None, f"{', '.join(RESTART_SECTIONS)} changed: they take effect at the next restart only"
