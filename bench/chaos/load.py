"""The chaos run's load: many accounts and keys (some near zero, some keys with a credit limit), and clients
making plain, streamed and embeddings calls through both proxies, some leaving mid-stream.

Every call carries a tag (`[tag:<account>.<n>]` in its prompt or input) that the fake provider writes in its
log, so the checker can tell, per account, what the provider served. What each call got (its status, or
`disconnected` / `transport` when the connection was lost) is kept here for the report. The choices are
drawn from the run's seed; their timing depends on the machine (the processes are real).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway import ledger
from gateway.accounts.keys import create_key
from gateway.accounts.wallets import get_or_create_account

# what a client must never read in an answer (internal text from a driver, SQL or a traceback)
INTERNAL_WORDS = ("SELECT", "asyncpg", "sqlalchemy", "Traceback", "redis.exceptions", "127.0.0.1", "sqlite3")
CONCURRENCY = 6


@dataclass(frozen=True)
class Customer:
    index: int
    account_id: int
    keys: tuple[str, ...]
    funded_micros: int
    wallet: LocalAccount  # the account's wallet (it pays top-ups on chain)


@dataclass
class Load:
    customers: list[Customer]
    outcomes: Counter[str] = field(default_factory=Counter)
    leaks: list[str] = field(default_factory=list)  # answers that carried internal text
    calls: int = 0
    answered: dict[str, str] = field(default_factory=dict)  # request id -> tag, of every complete 200 answer


async def make_customers(db: AsyncEngine, rng: random.Random, count: int) -> list[Customer]:
    """`count` accounts: most funded, a quarter near zero, a few small; one or two keys each, some limited."""
    customers = []
    for index in range(count):
        wallet = Account.from_key(rng.randbytes(32))
        account = await get_or_create_account(db, wallet.address)
        roll = rng.random()
        funded = 5_000_000 if roll < 0.6 else rng.randrange(50, 3_000) if roll < 0.85 else 60_000
        await ledger.post_entry(db, account.id, funded, "admin_grant", f"chaos-grant-{account.id}")
        keys = []
        for k in range(rng.choice((1, 1, 2))):
            limit = rng.randrange(5_000, 100_000) if rng.random() < 0.3 else None
            keys.append((await create_key(db, account.id, f"chaos-{index}-{k}", limit_micros=limit)).raw_key)
        customers.append(Customer(index, account.id, tuple(keys), funded, wallet))
    return customers


async def run_load(base_urls: Callable[[], list[str]], load: Load, rng: random.Random, until: float) -> None:
    """Clients call until the monotonic clock reaches `until`."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)  # a killed proxy leaves no stale socket
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, connect=5), limits=limits) as http:
        await asyncio.gather(
            *[_client(http, base_urls, load, random.Random(rng.random()), until) for _ in range(CONCURRENCY)]
        )


async def _client(
    http: httpx.AsyncClient, base_urls: Callable[[], list[str]], load: Load, rng: random.Random, until: float
) -> None:
    while time.monotonic() < until:
        customer = rng.choice(load.customers)
        key = rng.choice(customer.keys)
        urls = base_urls()
        url = urls[rng.randrange(len(urls))]
        load.calls += 1
        tag = f"{customer.index}.{load.calls}"
        kind = rng.choices(("plain", "stream", "embeddings"), (5, 4, 1))[0]
        leave_after = rng.randrange(1, 6) if kind == "stream" and rng.random() < 0.2 else None
        outcome = await _call(http, url, key, tag, kind, rng.randrange(4, 40), leave_after, load)
        load.outcomes[f"{kind}:{outcome}"] += 1
        await asyncio.sleep(rng.random() * 0.05)


async def _call(
    http: httpx.AsyncClient,
    url: str,
    key: str,
    tag: str,
    kind: str,
    max_tokens: int,
    leave_after: int | None,
    load: Load,
) -> str:
    headers = {"authorization": f"Bearer {key}"}
    text = f"[tag:{tag}] hello there"
    if kind == "embeddings":
        path, body = "/embeddings", {"model": "text-embedding-3-small", "input": text}
    else:
        path = "/chat/completions"
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}
        if kind == "stream":
            body["stream"] = True
    try:
        async with http.stream("POST", url + path, json=body, headers=headers) as response:
            if response.status_code != 200:
                answer = (await response.aread()).decode(errors="replace")
                if any(word in answer for word in INTERNAL_WORDS):
                    load.leaks.append(f"{response.status_code} {answer[:300]}")
                return str(response.status_code)
            lines = 0
            async for _ in response.aiter_lines():
                lines += 1
                if leave_after is not None and lines >= leave_after:
                    return "disconnected"  # leaving the block closes the connection mid-stream
            load.answered[response.headers.get("x-gateway-request-id", "")] = tag
            return "200"
    except httpx.HTTPError as exc:
        return f"transport:{type(exc).__name__}"
