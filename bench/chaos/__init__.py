"""`make chaos` (`python -m bench.chaos`): the real stack under load with overlapping faults drawn from a
seed, then an independent check that the books still balance to the micro (issue 23).

- stack.py: the processes (two proxies of two workers sharing PostgreSQL, Redis and one spool folder on a
  tmpfs; the sweeper; the fake provider with its served-calls log), the links behind forwarders;
- load.py: accounts, keys and the clients' calls;
- faults.py: the seeded fault schedule and its injection;
- checker.py: the invariants, read from the database, the provider's log, the spool and `gateway reconcile`;
- __main__.py: the run and its report (`CHAOS_SECONDS`, default 300; `CHAOS_SEED` or `--seed`, else random
  and printed first; exit 1 on any violation).
"""
