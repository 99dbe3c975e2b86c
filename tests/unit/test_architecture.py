"""Import contracts: the folder layout is the architecture, and these rules keep it so.

- `gateway.core` (pure rules) imports nothing of ours but `gateway.config`, and no framework.
- The domain and its adapters (`ledger`, `accounts`, `auth`, `payments`, `cache`, `db`, `onboarding`, the
  shared modules) import neither LiteLLM nor a web framework nor the CLI's libraries.
- Only `gateway.proxy` imports LiteLLM; only `gateway.sidecar` and `gateway.proxy` (LiteLLM's app is
  FastAPI) import FastAPI/Starlette; only `gateway.cli` imports typer/rich.
- The entry points (`cli`, `sidecar`, `proxy`) are imported by no other part of the package (the CLI and
  `python -m gateway` start the others), and the package
  never imports the development tools (`devtools`, `tests`, `bench`).

Every import counts, also one inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import REPO_ROOT

PACKAGE = REPO_ROOT / "gateway"
ENTRY_POINTS = ("gateway.cli", "gateway.sidecar", "gateway.proxy")
WEB = ("fastapi", "starlette", "uvicorn")
TERMINAL = ("typer", "rich")
DEV = ("devtools", "tests", "bench")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(source: str, module: str, is_package: bool) -> Iterator[str]:
    """Every module `source` imports (absolute names; relative imports resolved against `module`)."""
    base = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = ".".join(base.split(".")[: len(base.split(".")) - node.level + 1])
                target = f"{anchor}.{node.module}" if node.module else anchor
            else:
                target = node.module or ""
            yield target
            yield from (f"{target}.{alias.name}" for alias in node.names)  # `from gateway import ledger`


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations(module: str, imported: set[str]) -> list[str]:
    """The contracts above, for one module of the package."""
    found = []

    def forbid(prefixes: tuple[str, ...], why: str) -> None:
        found.extend(f"{module} imports {name}: {why}" for name in sorted(imported) if within(name, prefixes))

    ours = {name for name in imported if within(name, ("gateway",))}
    if within(module, ("gateway.core",)):
        stray = sorted(n for n in ours if not within(n, ("gateway.core", "gateway.config")) and n != "gateway")
        found.extend(f"{module} imports {name}: core imports nothing of ours but config" for name in stray)
    if not within(module, ("gateway.proxy",)):
        forbid(("litellm",), "only gateway.proxy imports LiteLLM")
    if not within(module, ("gateway.sidecar", "gateway.proxy")):
        forbid(WEB, "only the sidecar and the proxy adapter import a web framework")
    if not within(module, ("gateway.cli",)):
        forbid(TERMINAL, "only the CLI imports typer and rich")
    for entry in ENTRY_POINTS:
        if not within(module, (entry, "gateway.cli", "gateway.__main__")):  # the CLI starts the others
            forbid((entry,), f"{entry} is an entry point: nothing else in the package imports it")
    forbid(DEV, "the package never imports development tools")
    return found


def package_violations(root: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path)
        imported = set(imports_of(path.read_text(), module, path.name == "__init__.py"))
        found.extend(violations(module, imported))
    return found


def test_the_package_keeps_its_import_contracts():
    assert package_violations() == []


@pytest.mark.parametrize(
    ("module", "line", "rule"),
    [
        ("gateway.core.money", "from gateway.ledger import hold", "core imports nothing of ours"),
        ("gateway.ledger.service", "import litellm", "only gateway.proxy imports LiteLLM"),
        ("gateway.payments.service", "from fastapi import Request", "web framework"),
        ("gateway.accounts.keys", "def f():\n    from gateway.sidecar.app import create_app", "entry point"),
        ("gateway.auth.siwe", "from rich.console import Console", "typer and rich"),
        ("gateway.proxy.guard", "from devtools.fake_upstream import FakeUpstream", "development tools"),
        ("gateway.sidecar.deps", "from gateway.proxy import runtime", "entry point"),
    ],
)
def test_a_forbidden_import_is_caught(module, line, rule):
    imported = set(imports_of(line, module, is_package=False))
    assert any(rule in v for v in violations(module, imported)), violations(module, imported)
