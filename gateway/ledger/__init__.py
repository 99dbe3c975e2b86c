"""The ledger: every balance change and every hold, each one database transaction.

`from gateway import ledger` gives its operations (service.py) and vocabulary (types.py); how they run is
portable.py (SQLAlchemy Core transactions, SQLite and PostgreSQL) and postgres.py (one statement each for
hold, settle and release); spool.py keeps settles the database could not take.
"""

from gateway.core.limits import KeyLimit, KeyLimitExceeded
from gateway.core.posting import InsufficientCredit
from gateway.ledger.service import (
    ADJUSTMENT_REASONS,
    adjust,
    expire_stale_holds,
    get_balance,
    get_entry,
    get_hold,
    get_key_limit,
    hold,
    post_entry,
    post_entry_in,
    release,
    settle,
)
from gateway.ledger.types import (
    MAX_ENTRY_MICROS,
    REASONS,
    Balance,
    Hold,
    HoldStatus,
    LedgerEntry,
    Reason,
    ReferenceReused,
    Settlement,
    UnknownAccount,
    Usage,
)

__all__ = [
    "ADJUSTMENT_REASONS",
    "MAX_ENTRY_MICROS",
    "REASONS",
    "Balance",
    "Hold",
    "HoldStatus",
    "InsufficientCredit",
    "KeyLimit",
    "KeyLimitExceeded",
    "LedgerEntry",
    "Reason",
    "ReferenceReused",
    "Settlement",
    "UnknownAccount",
    "Usage",
    "adjust",
    "expire_stale_holds",
    "get_balance",
    "get_entry",
    "get_hold",
    "get_key_limit",
    "hold",
    "post_entry",
    "post_entry_in",
    "release",
    "settle",
]
