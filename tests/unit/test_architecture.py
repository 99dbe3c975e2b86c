"""Import contracts: the folder layout is the architecture, and these rules keep it so.

- docs/architecture.md's table ("Where things are") is the rule: a module of the row covering it (the most
  specific `folder` cell: a file's own row beats its folder's) imports only its own row's modules and the
  rows named in backticks in its `may import` cell (`everything`: any). Every module of the package is
  covered by a row, and every name a cell gives is a row: the table cannot drift from the code.
- Frameworks stay at the edges: only `gateway.proxy` imports LiteLLM; only `gateway.sidecar` and
  `gateway.proxy` (LiteLLM's app is FastAPI) import FastAPI/Starlette; only `gateway.cli` imports typer/rich;
  the package never imports the development tools (`devtools`, `tests`, `bench`).

Every import counts, also one inside a function (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import REPO_ROOT

PACKAGE = REPO_ROOT / "gateway"
TABLE = REPO_ROOT / "docs" / "architecture.md"
CHECKED = ("gateway", "hooks")  # rows for other folders (devtools, tests) describe, they do not constrain
WEB = ("fastapi", "starlette", "uvicorn")
TERMINAL = ("typer", "rich")
DEV = ("devtools", "tests", "bench")


@dataclass(frozen=True)
class Row:
    """One row of the table: the modules it covers (dotted prefixes) and the rows they may import."""

    covers: tuple[str, ...]
    may_import: frozenset[str] | None  # None: everything


def dotted(path: str) -> str:
    """`gateway/ledger/` -> `gateway.ledger`, `gateway/onboarding.py` -> `gateway.onboarding`."""
    return path.strip("/").removesuffix(".py").replace("/", ".")


def read_table(text: str) -> list[Row]:
    """The rows of the `| folder | owns | may import |` table whose folder is checked code."""
    lines = text.splitlines()
    start = next(
        i for i, line in enumerate(lines) if re.fullmatch(r"\|\s*folder\s*\|\s*owns\s*\|\s*may import\s*\|", line)
    )
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        folder, _owns, may = (cell.strip() for cell in line.strip().strip("|").split("|"))
        covers = tuple(dotted(p) for p in re.findall(r"`([^`]+)`", folder))
        if not covers or not covers[0].startswith(CHECKED):
            continue
        names = re.findall(r"`([^`]+)`", may)
        if names == ["everything"]:
            rows.append(Row(covers, None))
        else:
            rows.append(Row(covers, frozenset(dotted(n if n.startswith(CHECKED) else f"gateway/{n}") for n in names)))
    return rows


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


def row_of(name: str, rows: list[Row]) -> tuple[str, Row] | None:
    """The most specific row covering module `name`, with the prefix that matched."""
    matches = [(prefix, row) for row in rows for prefix in row.covers if within(name, (prefix,))]
    return max(matches, key=lambda match: len(match[0]), default=None)


def table_violations(module: str, imported: set[str], rows: list[Row]) -> list[str]:
    """What `module` imports of ours that its row's `may import` cell does not allow."""
    found = []
    own = row_of(module, rows)
    if own is None:
        return [f"{module} is in no row of docs/architecture.md's table"]
    prefix, row = own
    if row.may_import is None:
        return []
    allowed = (*row.covers, *row.may_import)
    for name in sorted(n for n in imported if within(n, CHECKED) and n not in CHECKED):
        if row_of(name, rows) is None or not within(name, allowed):
            rule = f"docs/architecture.md says `{prefix}` may import only {sorted(row.may_import)}"
            found.append(f"{module} imports {name}: {rule}")
    return found


def framework_violations(module: str, imported: set[str]) -> list[str]:
    found = []

    def forbid(prefixes: tuple[str, ...], why: str) -> None:
        found.extend(f"{module} imports {name}: {why}" for name in sorted(imported) if within(name, prefixes))

    if not within(module, ("gateway.proxy",)):
        forbid(("litellm",), "only gateway.proxy imports LiteLLM")
    if not within(module, ("gateway.sidecar", "gateway.proxy")):
        forbid(WEB, "only the sidecar and the proxy adapter import a web framework")
    if not within(module, ("gateway.cli",)):
        forbid(TERMINAL, "only the CLI imports typer and rich")
    forbid(DEV, "the package never imports development tools")
    return found


def violations(module: str, imported: set[str], rows: list[Row] | None = None) -> list[str]:
    """Every contract above, for one module."""
    rows = read_table(TABLE.read_text()) if rows is None else rows
    found = table_violations(module, imported, rows)
    if within(module, ("gateway",)):
        found += framework_violations(module, imported)
    return found


def checked_modules() -> Iterator[tuple[str, Path]]:
    for folder in CHECKED:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            yield module_name(path), path


def package_violations() -> list[str]:
    rows = read_table(TABLE.read_text())
    found = []
    for module, path in checked_modules():
        if module in CHECKED:  # the package's own `__init__`: a docstring
            continue
        imported = set(imports_of(path.read_text(), module, path.name == "__init__.py"))
        found.extend(violations(module, imported, rows))
    return found


def test_the_package_keeps_its_import_contracts():
    assert package_violations() == []


def test_every_name_in_the_table_is_a_module_of_ours():
    rows = read_table(TABLE.read_text())
    modules = {module for module, _ in checked_modules()}
    named = {prefix for row in rows for prefix in (*row.covers, *(row.may_import or ()))}
    assert sorted(n for n in named if not any(within(m, (n,)) for m in modules)) == []


def test_the_table_is_read_as_written():
    rows = read_table(TABLE.read_text())
    assert row_of("gateway.core.money", rows)[1].may_import == {"gateway.config"}
    assert row_of("gateway.ledger.service", rows)[1].may_import >= {"gateway.core", "gateway.db"}
    assert row_of("gateway.cli.serve", rows)[1].may_import is None
    assert "gateway.proxy" not in row_of("gateway.sidecar.app", rows)[1].may_import


@pytest.mark.parametrize(
    ("module", "line", "rule"),
    [
        ("gateway.core.money", "from gateway.ledger import hold", "`gateway.core` may import only"),
        ("gateway.core.money", "from gateway.failures import is_transient", "`gateway.core` may import only"),
        ("gateway.ledger.service", "import litellm", "only gateway.proxy imports LiteLLM"),
        ("gateway.ledger.service", "from gateway.accounts import keys", "`gateway.ledger` may import only"),
        ("gateway.observability.db_gauges", "from gateway.ledger.types import HoldStatus", "may import only"),
        ("gateway.payments.service", "from fastapi import Request", "web framework"),
        ("gateway.payments.service", "from gateway.observability.metrics import X", "may import only"),
        ("gateway.accounts.keys", "def f():\n    from gateway.sidecar.app import create_app", "may import only"),
        ("gateway.auth.siwe", "from rich.console import Console", "typer and rich"),
        ("gateway.proxy.guard", "from devtools.fake_upstream import FakeUpstream", "development tools"),
        ("gateway.sidecar.deps", "from gateway.proxy import runtime", "`gateway.sidecar` may import only"),
        ("hooks.auth", "from gateway.sidecar import app", "`hooks` may import only"),
        ("gateway.newfolder.thing", "import os", "in no row"),
    ],
)
def test_a_forbidden_import_is_caught(module, line, rule):
    imported = set(imports_of(line, module, is_package=False))
    assert any(rule in v for v in violations(module, imported)), violations(module, imported)
