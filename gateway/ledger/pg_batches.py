"""Group commit for the ledger's one-statement path (postgres.py): the holds (or the settles) a process sends
while its previous batch of them is in flight wait for it, then go to PostgreSQL together as one pipelined,
atomic batch (asyncpg's `fetchmany`): one round trip and one commit (one WAL flush) for all of them.

Alone, a statement goes at once, sent by its caller itself (a batch of one: no task, no future), so a quiet
gateway waits for nothing and pays for no machinery; under load each statement waits at most for the batch
ahead of it. The statements of a batch run one after another in one
transaction, each seeing the writes of those before it, exactly as if sent one by one: the same rules decide
every hold and settle. A batch is sorted by account, so concurrent batches (of this process and of
others) take the account rows' locks in one order and cannot deadlock. Each statement returns exactly one
row, so the batch's rows answer its statements in order.

A batch is atomic: when the server refuses one statement (a duplicate request id, say), the whole batch
rolls back, and each of its statements is sent again on its own to get its own answer. When the database
is unreachable, every statement of the batch fails as it would alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.exc import OperationalError

MAX_BATCH = 64

Send = Callable[[str, list[list[Any]]], Awaitable[list[asyncpg.Record | None]]]


@dataclass
class _Statement:
    account_id: int
    args: list[Any]
    answer: asyncio.Future[asyncpg.Record | None]


class Batcher:
    """One statement's batches, sent by `send`, in one event loop (postgres.py's `OneStatement` keeps one per
    statement and loop)."""

    def __init__(self, sql: str, send: Send) -> None:
        self._sql = sql
        self._send = send
        self.loop = asyncio.get_running_loop()
        self._waiting: list[_Statement] = []
        self._busy = False  # a batch is in flight (sent by a lone caller itself, or by the flusher task)
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, account_id: int, args: list[Any]) -> asyncpg.Record | None:
        """The statement's row, once its batch committed (or its error). With no batch in flight the statement
        goes at once, a batch of one sent by the caller itself (no task, no future: the common case on a quiet
        process); the statements that arrive meanwhile wait and go together after it. A caller cancelled while
        its own statement is on the wire cancels it (the connection is closed; the proxy shields its money
        writes, so its statements always run to the end)."""
        if not self._busy:
            self._busy = True
            try:
                (row,) = await self._send(self._sql, [args])
            finally:
                self._busy = False
                if self._waiting:
                    self._start_flusher()
            return row
        statement = _Statement(account_id, args, self.loop.create_future())
        self._waiting.append(statement)
        return await statement.answer

    def _start_flusher(self) -> None:
        self._busy = True
        self._flusher = self.loop.create_task(self._flush())

    async def _flush(self) -> None:
        batch: list[_Statement] = []
        try:
            while self._waiting:
                batch = self._waiting[:MAX_BATCH]
                del self._waiting[:MAX_BATCH]
                batch.sort(key=lambda s: s.account_id)
                await self._send_batch(batch)
        except BaseException as exc:  # cancelled (the loop is closing): nobody may wait forever
            for statement in [*batch, *self._waiting]:
                _answer(statement, exc)
            self._waiting.clear()
            raise
        finally:
            self._busy = False
            self._flusher = None

    async def _send_batch(self, batch: list[_Statement]) -> None:
        try:
            rows = await self._send(self._sql, [s.args for s in batch])
        except OperationalError as exc:  # unreachable: each statement alone would fail the same way
            for statement in batch:
                _answer(statement, exc)
            return
        except Exception as exc:  # noqa: BLE001 - whatever it is, it is its statements' answer (raised to their callers)
            if len(batch) == 1:
                _answer(batch[0], exc)
                return
            for statement in batch:  # one refused statement rolled the batch back: each alone gets its answer
                try:
                    (row,) = await self._send(self._sql, [statement.args])
                except Exception as alone:  # noqa: BLE001 - raised to this statement's caller
                    _answer(statement, alone)
                else:
                    _answer(statement, row)
            return
        if len(rows) != len(batch):
            raise AssertionError(f"a batch of {len(batch)} statements returned {len(rows)} rows")
        for statement, row in zip(batch, rows, strict=True):
            _answer(statement, row)


def _answer(statement: _Statement, outcome: asyncpg.Record | BaseException | None) -> None:
    if statement.answer.done():  # its caller was cancelled meanwhile (the statement ran all the same)
        return
    if isinstance(outcome, BaseException):
        statement.answer.set_exception(outcome)
    else:
        statement.answer.set_result(outcome)
