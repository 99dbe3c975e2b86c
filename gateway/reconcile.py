"""Reconcile: check the books against themselves and, when a chain RPC is given, against the chain.

Checks, each mismatch naming the account it concerns:
- every account's balance equals the sum of its ledger, and its held amount the sum of its pending holds;
- every credited payment has its one `onchain_payment` ledger row (same account, same amount), every such
  row a credited payment, no payment is credited twice, and every credited payment that a reorg removed
  has its reversal;
- no hold is still open past its TTL (each one is a lost settle);
- every credited payment is still on chain: the same successful transaction and log, sender, receiver
  and amount.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.chain import ChainRPC
from gateway.config import Settings
from gateway.db.payments_schema import CREDITED, REORGED, payments
from gateway.db.schema import billing_accounts as acc
from gateway.db.schema import credit_holds as holds
from gateway.db.schema import credit_ledger as ledger
from gateway.payments import REFERENCE_SQL, check_chain_id, live_transfer, payment_reference


@dataclass(frozen=True)
class Mismatch:
    check: str
    account_id: int | None
    detail: str


@dataclass(frozen=True)
class ReconcileReport:
    accounts: int
    credited_payments: int
    chain_checked: bool
    mismatches: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def as_dict(self) -> dict:
        """A JSON-ready document (what `gateway reconcile --json` prints)."""
        return {**asdict(self), "mismatches": [asdict(m) for m in self.mismatches], "ok": self.ok}


async def reconcile(
    db: AsyncEngine, settings: Settings, rpc: ChainRPC | None = None, now: datetime | None = None
) -> ReconcileReport:
    async with db.connect() as conn:
        accounts = (await conn.execute(sa.select(sa.func.count()).select_from(acc))).scalar_one()
        credited = (await conn.execute(sa.select(payments).where(payments.c.status == CREDITED))).all()
        found = [
            *await _balances(conn),
            *await _payment_credits(conn),
            *await _credits_without_payment(conn),
            *await _expired_holds(conn, now or datetime.now(timezone.utc)),
        ]
    if rpc is not None:
        await check_chain_id(rpc, settings)
        found += [m for row in credited if (m := await _on_chain(rpc, row)) is not None]
    return ReconcileReport(accounts, len(credited), rpc is not None, tuple(found))


async def _balances(conn: AsyncConnection) -> list[Mismatch]:
    ledger_sum = sa.func.coalesce(
        sa.select(sa.func.sum(ledger.c.amount_micros)).where(ledger.c.account_id == acc.c.id).scalar_subquery(), 0
    )
    held_sum = sa.func.coalesce(
        sa.select(sa.func.sum(holds.c.amount_micros))
        .where(holds.c.account_id == acc.c.id, holds.c.status == "pending")
        .scalar_subquery(),
        0,
    )
    rows = (
        await conn.execute(
            sa.select(acc.c.id, acc.c.balance_micros, acc.c.held_micros, ledger_sum.label("ledger"), held_sum.label("held"))
            .where(sa.or_(acc.c.balance_micros != ledger_sum, acc.c.held_micros != held_sum))
            .order_by(acc.c.id)
        )
    ).all()
    found = []
    for r in rows:
        if r.balance_micros != r.ledger:
            found.append(Mismatch("balance", r.id, f"balance {r.balance_micros} micros != ledger sum {r.ledger}"))
        if r.held_micros != r.held:
            found.append(Mismatch("held", r.id, f"held {r.held_micros} micros != pending holds {r.held}"))
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
                payments.outerjoin(credit, sa.and_(credit.c.reason == "onchain_payment", credit.c.reference == REFERENCE_SQL))
                .outerjoin(
                    reversal, sa.and_(reversal.c.reason == "adjustment", reversal.c.reference == "reorg:" + REFERENCE_SQL)
                )
            )
            .where(sa.or_(payments.c.status == CREDITED, payments.c.micros_credited.is_not(None)))
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
        if r.status == REORGED and r.reversal != -r.micros_credited:  # reorged rows here were credited
            found.append(Mismatch("reorg", r.account_id, f"{where} left the chain but is not reversed"))
        if r.status != REORGED and r.reversal is not None:
            found.append(Mismatch("reorg", r.account_id, f"{where} is reversed but still {r.status}"))
    return found


async def _credits_without_payment(conn: AsyncConnection) -> list[Mismatch]:
    """`onchain_payment` ledger rows with no credited payment, or two for one payment (e.g. hash case)."""
    orphans = (
        await conn.execute(
            sa.select(ledger.c.account_id, ledger.c.reference, ledger.c.amount_micros)
            .select_from(ledger.outerjoin(payments, REFERENCE_SQL == ledger.c.reference))
            .where(ledger.c.reason == "onchain_payment", payments.c.micros_credited.is_(None))
            .order_by(ledger.c.id)
        )
    ).all()
    found = [
        Mismatch("payment", r.account_id, f"ledger credit {r.reference} ({r.amount_micros} micros) has no credited payment")
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


async def _expired_holds(conn: AsyncConnection, now: datetime) -> list[Mismatch]:
    rows = (
        await conn.execute(
            sa.select(holds.c.account_id, holds.c.request_id, holds.c.amount_micros, holds.c.expires_at)
            .where(holds.c.status == "pending", holds.c.expires_at < now)
            .order_by(holds.c.id)
        )
    ).all()
    return [
        Mismatch("hold", r.account_id, f"hold {r.request_id} ({r.amount_micros} micros) open past its TTL ({r.expires_at})")
        for r in rows
    ]


async def _on_chain(rpc: ChainRPC, row: sa.Row) -> Mismatch | None:
    if await live_transfer(rpc, row) is not None:
        return None
    reference = payment_reference(row.chain_id, row.tx_hash, row.log_index)
    return Mismatch(
        "chain",
        row.account_id,
        f"credited payment {reference} ({row.raw_amount} from {row.from_address} to {row.to_address}) is not on chain",
    )
