"""The ledger: every balance change and every hold, each one database transaction.

`from gateway import ledger` gives its operations (service.py) and vocabulary (types.py): hold, settle and
release are methods of a `Ledger` (`open_ledger(db)`, one per runtime), the rest functions of an engine; how
they run is portable.py (SQLAlchemy Core transactions, SQLite and PostgreSQL) and postgres.py (one statement
each for hold, settle and release); spool.py keeps settles the database could not take.
"""

from gateway.core.limits import KeyLimit, KeyLimitExceeded
from gateway.core.posting import InsufficientCredit
from gateway.ledger.service import (
    ADJUSTMENT_REASONS,
    Ledger,
    adjust,
    get_balance,
    get_entry,
    get_hold,
    get_key_limit,
    open_ledger,
    post_entry,
    post_entry_in,
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
    "Ledger",
    "LedgerEntry",
    "Reason",
    "ReferenceReused",
    "Settlement",
    "UnknownAccount",
    "Usage",
    "adjust",
    "get_balance",
    "get_entry",
    "get_hold",
    "get_key_limit",
    "open_ledger",
    "post_entry",
    "post_entry_in",
]
