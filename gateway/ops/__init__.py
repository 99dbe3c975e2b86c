"""The operator console's domain: what an operator sees (read-only SQL over the existing tables) and what an
operator does (grant, revoke, limits, freeze, reconcile), each action idempotent on the operator's reference
and recorded in the append-only `ops_audit` table.

- `audit.py`: recording an action once per reference, and reading the audit trail;
- `actions.py`: the actions themselves, each through the module that owns the data (ledger, keys);
- `business.py`: revenue, provider cost, margin and uncollected per UTC day and model;
- `money_in.py`: top-ups and x402 payments by status;
- `books.py`: open and expired holds, the settle spool on this host, the last reconcile;
- `lookup.py`: one account found by wallet.

Who is an operator is decided by the entry points from OPERATOR_WALLETS (`Settings.is_operator`) at every
request; nothing here trusts a caller's claim of it.
"""
