"""The runtime of the plugin inside one LiteLLM worker: the one place the hooks find it.

hooks/ files are executed anew by LiteLLM for each reference, so they must not hold state; everything
shared between the auth function and the callbacks is the worker's `Runtime` (gateway/runtime.py), built
from the settings on first use. A test installs its own with `replace_runtime` (and puts the previous back).
"""

from __future__ import annotations

from gateway.config import get_settings
from gateway.runtime import Runtime, build_runtime

_current: Runtime | None = None


def runtime() -> Runtime:
    """This worker's runtime (built on the first call)."""
    global _current
    if _current is None:
        _current = build_runtime(get_settings())
    return _current


def replace_runtime(new: Runtime | None) -> Runtime | None:
    """Make `new` this worker's runtime (None: built again on next use); the previous one, for its owner to
    close or put back."""
    global _current
    previous, _current = _current, new
    return previous
