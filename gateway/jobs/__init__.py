"""Background work: what runs on a timer or on demand over the whole database, never on a request's path.

- `sweeper.py`: the hold sweeper (`gateway sweep`, and inside `gateway up`), which also records the
  low-balance crossings after each pass (`low_balance.py`);
- `watcher.py`: the chain watcher (`gateway watch`, a child of `gateway up` when payments are configured),
  which follows USDC transfers and feeds them to the payment use cases (gateway/payments/service.py);
- `reconcile.py`: the audit of the whole books, against themselves and the chain (`gateway reconcile`, and
  the operator console's action in gateway/ops/actions.py).
"""
