"""What each proxy worker on this host has loaded, and how a reload is asked for: plain files under
$GATEWAY_HOME/reload/, so `gateway reload` reads and signals them without importing LiteLLM.

- Every LiteLLM worker writes `<pid>.json` (`Loaded`) when it starts and after each reload request: the
  config it serves, that file's hash and when it was loaded, and the one-line refusal of the last request
  if that request was refused (the worker then keeps serving what it had).
- `gateway reload` writes a fresh request id to `request`, then sends `RELOAD_SIGNAL` to every live worker
  listed; each worker answers by rewriting its file with that request id (gateway.proxy.reload).
- A file whose process is gone, or whose pid now belongs to another process (its start time differs), is
  stale: it is removed, never signalled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

RELOAD_SIGNAL = signal.SIGUSR1
_REQUEST = "request"


@dataclass(frozen=True)
class Loaded:
    pid: int
    parent: int  # the LiteLLM (uvicorn) parent process of this worker
    port: int
    config: str
    hash: str  # config_hash of the file it serves
    loaded_at: float  # unix time the config was swapped in
    request: str  # the reload request this answers ("" at start-up)
    error: str | None = None  # why that request was refused (one line), None if it was taken
    note: str | None = None  # what the reload did not take (sections that need a restart)
    started: str = ""  # the process's start time (guards against a reused pid)


def folder(home: Path) -> Path:
    return home.resolve() / "reload"


def config_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()[:16]


def process_start(pid: int) -> str:
    """The kernel's start time of `pid` ("" without /proc, or when the process is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after the command name


def write(home: Path, loaded: Loaded) -> None:
    """This worker's status, replaced atomically."""
    target = folder(home)
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=target, prefix=f".{loaded.pid}.", delete=False) as tmp:
        json.dump(asdict(loaded), tmp)
    Path(tmp.name).replace(target / f"{loaded.pid}.json")


def remove(home: Path, pid: int) -> None:
    with contextlib.suppress(OSError):
        (folder(home) / f"{pid}.json").unlink()


def _alive(loaded: Loaded) -> bool:
    if not Path("/proc").is_dir():
        try:
            os.kill(loaded.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return process_start(loaded.pid) == loaded.started != ""


def read_all(home: Path) -> list[Loaded]:
    """Every live worker's status on this host (stale files are removed)."""
    found = []
    for path in sorted(folder(home).glob("*.json")):
        try:
            loaded = Loaded(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue  # being replaced, or not ours
        if _alive(loaded):
            found.append(loaded)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return found


def new_request(home: Path) -> str:
    request = uuid.uuid4().hex
    target = folder(home)
    target.mkdir(parents=True, exist_ok=True)
    (target / f".{_REQUEST}.{request}").write_text(request)
    (target / f".{_REQUEST}.{request}").replace(target / _REQUEST)
    return request


def current_request(home: Path) -> str:
    try:
        return (folder(home) / _REQUEST).read_text().strip()
    except OSError:
        return ""


def signal_all(home: Path) -> list[Loaded]:
    """Ask every live worker on this host to reload: a new request id, then the signal. Returns those asked."""
    new_request(home)
    asked = []
    for loaded in read_all(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(loaded.pid, RELOAD_SIGNAL)
            asked.append(loaded)
    return asked
