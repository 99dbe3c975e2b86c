"""Reconcile: check the books against themselves and, when a chain RPC is given, against the chain.

Checks, each mismatch naming the account it concerns:
- every account's balance equals the sum of its ledger, and its held amount the sum of its pending holds;
  no balance is below zero;
- every settled call (`llm_usage`) has its one `llm_usage` ledger debit on its account, of its user price
  minus what went uncollected, and every such debit has its call;
- every credited payment has its one `onchain_payment` ledger row (same account, same amount), every such
  row a credited payment, no payment is credited twice, and every credited payment that a reorg removed
  has its reversal;
- no settle was lost: no hold is still open past its TTL, and none was expired by the sweeper without
  its call being settled after all (a late settle charges the call, so that hold is not a loss);
- every credited payment is still on chain: the same successful transaction and log, sender, receiver
  and amount;
- no x402 authorization is left open (claimed or submitted) long after its settlement should have ended;
- no settle or release was refused permanently by the ledger: each one set aside in this host's settle
  spool (`SPOOL_DIR`, gateway.ledger.spool) is listed with its request id and the database's reason.

It also lists what calls cost above their holds and was never taken from the accounts
(`llm_usage.uncollected_micros`): operator loss, reported per call and per account, not a mismatch.

A job: it audits the whole books, on demand (`gateway reconcile`, and the operator console's action in
gateway/ops/actions.py), and writes nothing; the payment reads it checks against (the chain, a payment's
reference) are gateway/payments/'s.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.config import Settings
from gateway.db.payments_schema import PaymentStatus, payments
from gateway.db.schema import as_utc
from gateway.db.schema import billing_accounts as acc
from gateway.db.schema import credit_holds as holds
from gateway.db.schema import credit_ledger as ledger
from gateway.db.schema import llm_usage as usage
from gateway.db.x402_schema import AuthorizationStatus
from gateway.db.x402_schema import x402_authorizations as x402
from gateway.ledger.spool import Spool
from gateway.ledger.types import HoldStatus
from gateway.payments.chain import ChainRPC
from gateway.payments.service import REFERENCE_SQL, check_chain_id, live_transfer, payment_reference

X402_GRACE_SECONDS = 600  # beyond X402_MAX_TIMEOUT_SECONDS before an open x402 authorization is reported


@dataclass(frozen=True)
class Mismatch:
    check: str
    account_id: int | None
    detail: str


@dataclass(frozen=True)
class UncollectedCall:
    """A call that cost more than its hold: `uncollected_micros` of its price was never charged."""

    request_id: str
    account_id: int
    model: str
    user_price_micros: int
    uncollected_micros: int
    settled_at: str  # ISO 8601


@dataclass(frozen=True)
class UncollectedAccount:
    account_id: int
    calls: int
    uncollected_micros: int


@dataclass(frozen=True)
class ReconcileReport:
    accounts: int
    credited_payments: int
    chain_checked: bool
    mismatches: tuple[Mismatch, ...]
    uncollected: tuple[UncollectedCall, ...]  # operator loss: listed, never a mismatch

    @property
    def ok(self) -> bool:
        return not self.mismatches

    @property
    def uncollected_micros(self) -> int:
        return sum(c.uncollected_micros for c in self.uncollected)

    def uncollected_by_account(self) -> list[UncollectedAccount]:
        """Operator loss per account, the largest first."""
        micros: Counter[int] = Counter()
        calls: Counter[int] = Counter()
        for c in self.uncollected:
            micros[c.account_id] += c.uncollected_micros
            calls[c.account_id] += 1
        return [UncollectedAccount(a, calls[a], m) for a, m in sorted(micros.items(), key=lambda am: (-am[1], am[0]))]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready document (what `gateway reconcile --json` prints)."""
        return {
            **asdict(self),
            "mismatches": [asdict(m) for m in self.mismatches],
            "ok": self.ok,
            "uncollected": {
                "total_micros": self.uncollected_micros,
                "accounts": [asdict(a) for a in self.uncollected_by_account()],
                "calls": [asdict(c) for c in self.uncollected],
            },
        }


async def reconcile(
    db: AsyncEngine, settings: Settings, rpc: ChainRPC | None = None, now: datetime | None = None
) -> ReconcileReport:
    async with db.connect() as conn:
        accounts = (await conn.execute(sa.select(sa.func.count()).select_from(acc))).scalar_one()
        credited = (await conn.execute(sa.select(payments).where(payments.c.status == PaymentStatus.CREDITED))).all()
        found = [
            *await _balances(conn),
            *await _payment_credits(conn),
            *await _credits_without_payment(conn),
            *await _usage_debits(conn),
            *await _lost_settles(conn, now or datetime.now(UTC)),
            *await _x402_unsettled(conn, now or datetime.now(UTC), settings),
            *_set_aside(settings),
        ]
        uncollected = await _uncollected(conn)
    if rpc is not None:
        await check_chain_id(rpc, settings)
        found += [m for row in credited if (m := await _on_chain(rpc, row)) is not None]
    return ReconcileReport(accounts, len(credited), rpc is not None, tuple(found), uncollected)


async def reconcile_configured(db: AsyncEngine, settings: Settings) -> ReconcileReport:
    """`reconcile`, against the chain too when CHAIN_RPC_URL is set (what `gateway reconcile` and the operator
    console run)."""
    if not settings.chain_rpc_url:
        return await reconcile(db, settings)
    async with ChainRPC(settings.chain_rpc_url, timeout=settings.chain_rpc_timeout_seconds) as rpc:
        return await reconcile(db, settings, rpc)


def _set_aside(settings: Settings) -> list[Mismatch]:
    """The settles and releases the ledger refused permanently (on the request path or at replay)."""
    spool = Spool(settings.effective_spool_dir)
    return [
        Mismatch(
            f"refused_{entry.kind}",
            entry.account_id,
            f"{entry.kind} of {entry.request_id} refused by the ledger at "
            f"{datetime.fromtimestamp(entry.refused_at, UTC).isoformat(timespec='seconds')} ({entry.reason}); "
            f"set aside in {spool.path}",
        )
        for entry in spool.refused()
    ]


async def _balances(conn: AsyncConnection) -> list[Mismatch]:
    ledger_sum = sa.func.coalesce(
        sa.select(sa.func.sum(ledger.c.amount_micros)).where(ledger.c.account_id == acc.c.id).scalar_subquery(), 0
    )
    held_sum = sa.func.coalesce(
        sa.select(sa.func.sum(holds.c.amount_micros))
        .where(holds.c.account_id == acc.c.id, holds.c.status == HoldStatus.PENDING)
        .scalar_subquery(),
        0,
    )
    rows = (
        await conn.execute(
            sa.select(
                acc.c.id, acc.c.balance_micros, acc.c.held_micros, ledger_sum.label("ledger"), held_sum.label("held")
            )
            .where(sa.or_(acc.c.balance_micros != ledger_sum, acc.c.held_micros != held_sum, acc.c.balance_micros < 0))
            .order_by(acc.c.id)
        )
    ).all()
    found = []
    for r in rows:
        if r.balance_micros != r.ledger:
            found.append(Mismatch("balance", r.id, f"balance {r.balance_micros} micros != ledger sum {r.ledger}"))
        if r.held_micros != r.held:
            found.append(Mismatch("held", r.id, f"held {r.held_micros} micros != pending holds {r.held}"))
        if r.balance_micros < 0:
            found.append(Mismatch("negative_balance", r.id, f"balance {r.balance_micros} micros is below zero"))
    return found


async def _payment_credits(conn: AsyncConnection) -> list[Mismatch]:
    """Every payment ever credited against its credit (and, if a reorg removed it, its reversal)."""
    credit, reversal = ledger.alias("credit"), ledger.alias("reversal")
    rows = (
        await conn.execute(
            sa.select(
                payments.c.account_id,
                payments.c.status,
                payments.c.micros_credited,
                REFERENCE_SQL.label("reference"),
                credit.c.account_id.label("credit_account"),
                credit.c.amount_micros.label("credit"),
                reversal.c.amount_micros.label("reversal"),
            )
            .select_from(
                payments.outerjoin(
                    credit, sa.and_(credit.c.reason == "onchain_payment", credit.c.reference == REFERENCE_SQL)
                ).outerjoin(
                    reversal,
                    sa.and_(reversal.c.reason == "adjustment", reversal.c.reference == "reorg:" + REFERENCE_SQL),
                )
            )
            .where(sa.or_(payments.c.status == PaymentStatus.CREDITED, payments.c.micros_credited.is_not(None)))
            .order_by(payments.c.id)
        )
    ).all()
    found = []
    for r in rows:
        where = f"payment {r.reference}"
        if r.micros_credited is None or r.account_id is None:
            found.append(Mismatch("payment", r.account_id, f"{where} is credited without an amount or an account"))
        elif r.credit is None:
            found.append(Mismatch("payment", r.account_id, f"{where} is credited without its ledger row"))
        elif (r.credit, r.credit_account) != (r.micros_credited, r.account_id):
            found.append(
                Mismatch(
                    "payment",
                    r.account_id,
                    f"{where} credited {r.micros_credited} micros but its ledger row says {r.credit} "
                    f"to account {r.credit_account}",
                )
            )
        if r.status == PaymentStatus.REORGED and r.reversal != -r.micros_credited:  # reorged rows here were credited
            found.append(Mismatch("reorg", r.account_id, f"{where} left the chain but is not reversed"))
        if r.status != PaymentStatus.REORGED and r.reversal is not None:
            found.append(Mismatch("reorg", r.account_id, f"{where} is reversed but still {r.status}"))
    return found


async def _credits_without_payment(conn: AsyncConnection) -> list[Mismatch]:
    """`onchain_payment` ledger rows with no credited payment, or two for one payment (e.g. hash case)."""
    orphans = (
        await conn.execute(
            sa.select(ledger.c.account_id, ledger.c.reference, ledger.c.amount_micros)
            .select_from(ledger.outerjoin(payments, ledger.c.reference == REFERENCE_SQL))
            .where(ledger.c.reason == "onchain_payment", payments.c.micros_credited.is_(None))
            .order_by(ledger.c.id)
        )
    ).all()
    found = [
        Mismatch(
            "payment", r.account_id, f"ledger credit {r.reference} ({r.amount_micros} micros) has no credited payment"
        )
        for r in orphans
    ]
    reference = sa.func.lower(ledger.c.reference)
    twice = (
        await conn.execute(
            sa.select(
                reference.label("reference"),
                sa.func.min(ledger.c.account_id).label("account_id"),
                sa.func.count().label("n"),
            )
            .where(ledger.c.reason == "onchain_payment")
            .group_by(reference)
            .having(sa.func.count() > 1)
        )
    ).all()
    found += [Mismatch("payment", r.account_id, f"payment {r.reference} is credited {r.n} times") for r in twice]
    return found


async def _usage_debits(conn: AsyncConnection) -> list[Mismatch]:
    """Every settled call against its ledger debit (user price - uncollected), and every such debit against
    its call. A call whose whole price went uncollected debits nothing: no ledger row is the same as 0."""
    debit = ledger.alias("debit")
    expected = usage.c.user_price_micros - usage.c.uncollected_micros
    rows = (
        await conn.execute(
            sa.select(
                usage.c.account_id,
                usage.c.request_id,
                usage.c.user_price_micros,
                usage.c.uncollected_micros,
                debit.c.account_id.label("debit_account"),
                debit.c.amount_micros.label("debit"),
            )
            .select_from(
                usage.outerjoin(debit, sa.and_(debit.c.reason == "llm_usage", debit.c.reference == usage.c.request_id))
            )
            .where(
                sa.or_(
                    -sa.func.coalesce(debit.c.amount_micros, 0) != expected, debit.c.account_id != usage.c.account_id
                )
            )
            .order_by(usage.c.id)
        )
    ).all()
    found = [
        Mismatch(
            "usage",
            r.account_id,
            f"call {r.request_id} (price {r.user_price_micros}, uncollected {r.uncollected_micros} micros) "
            + (
                "has no ledger debit"
                if r.debit is None
                else f"is debited {-r.debit} micros to account {r.debit_account}"
            ),
        )
        for r in rows
    ]
    orphans = (
        await conn.execute(
            sa.select(ledger.c.account_id, ledger.c.reference, ledger.c.amount_micros)
            .select_from(ledger.outerjoin(usage, usage.c.request_id == ledger.c.reference))
            .where(ledger.c.reason == "llm_usage", usage.c.id.is_(None))
            .order_by(ledger.c.id)
        )
    ).all()
    found += [
        Mismatch("usage", r.account_id, f"ledger debit {r.reference} ({r.amount_micros} micros) has no recorded call")
        for r in orphans
    ]
    return found


async def _lost_settles(conn: AsyncConnection, now: datetime) -> list[Mismatch]:
    """Holds still pending past their TTL, and holds the sweeper expired whose call was never settled."""
    settled = sa.exists().where(usage.c.request_id == holds.c.request_id)
    rows = (
        await conn.execute(
            sa.select(
                holds.c.account_id,
                holds.c.request_id,
                holds.c.amount_micros,
                holds.c.status,
                holds.c.expires_at,
                holds.c.closed_at,
            )
            .where(
                sa.or_(
                    sa.and_(holds.c.status == HoldStatus.PENDING, holds.c.expires_at < now),
                    sa.and_(holds.c.status == HoldStatus.EXPIRED, ~settled),
                )
            )
            .order_by(holds.c.id)
        )
    ).all()
    return [
        Mismatch(
            "hold",
            r.account_id,
            f"hold {r.request_id} ({r.amount_micros} micros) open past its TTL ({_when(r.expires_at)})",
        )
        if r.status == HoldStatus.PENDING
        else Mismatch(
            "expired_hold",
            r.account_id,
            f"hold {r.request_id} ({r.amount_micros} micros) expired without a settle: "
            f"TTL ended {_when(r.expires_at)}, released {_when(r.closed_at)}",
        )
        for r in rows
    ]


async def _x402_unsettled(conn: AsyncConnection, now: datetime, settings: Settings) -> list[Mismatch]:
    """x402 authorizations left claimed or submitted well past the longest a settlement waits: a process died
    between sending the transfer and crediting it, so USDC may have been paid for nothing yet."""
    cutoff = now - timedelta(seconds=settings.x402_max_timeout_seconds + X402_GRACE_SECONDS)
    rows = (
        await conn.execute(
            sa.select(x402.c.payer, x402.c.nonce, x402.c.status, x402.c.tx_hash, x402.c.value, x402.c.updated_at)
            .where(
                x402.c.status.in_((AuthorizationStatus.CLAIMED, AuthorizationStatus.SUBMITTED)),
                x402.c.updated_at < cutoff,
            )
            .order_by(x402.c.id)
        )
    ).all()
    return [
        Mismatch(
            "x402",
            None,
            f"x402 authorization {r.nonce} of {r.payer} ({r.value} micros) is still {r.status} "
            f"since {_when(r.updated_at)} (transaction {r.tx_hash or 'not recorded'}): if its transfer was mined, "
            "the payer's retry of the same payment credits it; else credit it by hand",
        )
        for r in rows
    ]


async def _uncollected(conn: AsyncConnection) -> tuple[UncollectedCall, ...]:
    rows = (
        await conn.execute(
            sa.select(
                usage.c.request_id,
                usage.c.account_id,
                usage.c.model,
                usage.c.user_price_micros,
                usage.c.uncollected_micros,
                usage.c.created_at,
            )
            .where(usage.c.uncollected_micros > 0)
            .order_by(usage.c.id)
        )
    ).all()
    return tuple(
        UncollectedCall(
            r.request_id, r.account_id, r.model, r.user_price_micros, r.uncollected_micros, _when(r.created_at)
        )
        for r in rows
    )


def _when(value: datetime | None) -> str:
    return "at an unknown time" if value is None else as_utc(value).isoformat()


async def _on_chain(rpc: ChainRPC, row: sa.Row[Any]) -> Mismatch | None:
    if await live_transfer(rpc, row) is not None:
        return None
    reference = payment_reference(row.chain_id, row.tx_hash, row.log_index)
    return Mismatch(
        "chain",
        row.account_id,
        f"credited payment {reference} ({row.raw_amount} from {row.from_address} to {row.to_address}) is not on chain",
    )
