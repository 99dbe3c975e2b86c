"""The database as every `gateway` command meets it: reachable and migrated to this gateway's schema, or one
line saying which database is wrong and what to do (exit status 1; `reconcile`'s is 2), never a traceback.

Commands check this once, before their first statement: they connect, read Alembic's `alembic_version`
and compare it with the migrations' head. Only `gateway migrate` and `gateway up` change the schema; a
command that reads or writes never migrates, and never creates the embedded SQLite file either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar, overload

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cli.output import fail
from gateway.db.engine import dispose_all, get_engine

T = TypeVar("T")
MIGRATE = "run `gateway migrate` (or `gateway up`)"


class DatabaseNotReady(Exception):
    """The database cannot be used as it is; the message is one line for the operator."""


def shown(url: str) -> str:
    """`url` with its password masked."""
    return sa.engine.make_url(url).render_as_string(hide_password=True)


@overload
def run_with_database(url: str, work: Callable[[AsyncEngine], Awaitable[T]], *, code: int = 1) -> T: ...
@overload
def run_with_database(url: str, work: None = None, *, code: int = 1) -> None: ...
def run_with_database(
    url: str, work: Callable[[AsyncEngine], Awaitable[T]] | None = None, *, code: int = 1
) -> T | None:
    """`work(engine)` in a new event loop, once the database at `url` is known to be reachable and migrated
    (with no `work`, only that check: servers run it before they start). Otherwise print one line and exit
    with status `code`."""

    async def main() -> T | None:
        try:
            await _check_migrated(url)
            return await work(get_engine(url)) if work else None
        finally:
            await dispose_all()

    try:
        return asyncio.run(main())
    except DatabaseNotReady as exc:
        fail(str(exc), code)


def migrate_database(url: str) -> None:
    """Migrate the database at `url` to the head; DatabaseNotReady (one line) if it cannot be reached or migrated."""
    from alembic.util import CommandError

    from gateway.db.migrate import upgrade

    async def reachable() -> None:
        try:
            await _revisions(url)
        finally:
            await dispose_all()

    asyncio.run(reachable())
    try:
        upgrade(url)
    except (CommandError, OSError, sa.exc.SQLAlchemyError) as exc:
        raise DatabaseNotReady(f"cannot migrate database {shown(url)}: {_first_line(exc)}") from None


async def _check_migrated(url: str) -> None:
    from alembic.script import ScriptDirectory  # alembic: only when a command touches the database

    from gateway.db.migrate import alembic_config

    database = sa.engine.make_url(url).database
    if url.startswith("sqlite") and database and database != ":memory:" and not Path(database).exists():  # noqa: ASYNC240 - one stat, before any concurrent work
        raise DatabaseNotReady(
            f"database {shown(url)} does not exist: {MIGRATE} to create it, "
            "or set GATEWAY_HOME to the gateway's data folder"
        )
    current = await _revisions(url)
    script = ScriptDirectory.from_config(alembic_config(url))
    heads = set(script.get_heads())
    if current == heads:
        return
    if not current:
        raise DatabaseNotReady(f"database {shown(url)} is not migrated: {MIGRATE} first")
    at, needed = ", ".join(sorted(current)), ", ".join(sorted(heads))
    if current <= {rev.revision for rev in script.walk_revisions()}:
        raise DatabaseNotReady(
            f"database {shown(url)} is at schema revision {at}, this gateway needs {needed}: {MIGRATE}"
        )
    raise DatabaseNotReady(
        f"database {shown(url)} is at schema revision {at}, which this gateway does not know (it needs {needed}); "
        "was it migrated by a newer gateway?"
    )


async def _revisions(url: str) -> set[str]:
    """The revisions recorded in the database's `alembic_version` (none before the first migration)."""
    try:
        async with get_engine(url).connect() as conn:
            return await conn.run_sync(_read_revisions)
    except (OSError, sa.exc.SQLAlchemyError) as exc:
        reason, hint = _first_line(exc), _connect_hint(url, exc)
        raise DatabaseNotReady(f"cannot connect to database {shown(url)} ({reason}); {hint}") from None


def _read_revisions(conn: sa.Connection) -> set[str]:
    if not sa.inspect(conn).has_table("alembic_version"):
        return set()
    return set(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def _connect_hint(url: str, exc: BaseException) -> str:
    if getattr(getattr(exc, "orig", None), "sqlstate", None) == "3D000":  # PostgreSQL: no such database
        return f"create it, then {MIGRATE}"
    if url.startswith("sqlite"):
        return "check GATEWAY_HOME (or DATABASE_URL)"
    return "check DATABASE_URL and that the server is running (a new database needs `gateway migrate` or `gateway up`)"


def _first_line(exc: BaseException) -> str:
    """What went wrong, in one line: the driver's own message (without SQLAlchemy's SQL and links)."""
    cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc
    text = next(iter(str(cause).strip().splitlines()), "")
    if not text:
        return type(cause).__name__
    return f"{type(cause).__name__}: {text}" if isinstance(cause, OSError) else text
