"""CPU time of processes, read from /proc (Linux): a process tree (a proxy and its workers), or a list
of processes (redis-server, the PostgreSQL backends of one database).

Times are in seconds of CPU (user + system). In a tree, children that exit inside a measured window are
counted through their parent's cutime/cstime once reaped.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[str, int, float, float] | None:
    """(comm, ppid, own cpu seconds, reaped children's cpu seconds) or None if the process is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17
    ppid = int(fields[1])
    own = (int(fields[11]) + int(fields[12])) / _TICK
    children = (int(fields[13]) + int(fields[14])) / _TICK
    return comm, ppid, own, children


def _all() -> dict[int, tuple[str, int, float, float]]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                out[int(entry)] = st
    return out


def tree_pids(root: int, table: dict | None = None) -> list[int]:
    table = table if table is not None else _all()
    kids: dict[int, list[int]] = {}
    for pid, (_, ppid, _, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.append(pid)
            todo.extend(kids.get(pid, []))
    return found


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and all its descendants (plus the ones they reaped)."""
    table = _all()
    pids = tree_pids(root, table)
    return sum(table[p][2] for p in pids) + (table[root][3] if root in table else 0.0)


def named_pids(*names: str) -> list[int]:
    """Every process whose name starts with one of `names`."""
    return [pid for pid, st in _all().items() if st[0].startswith(names)]


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each of these processes that still runs."""
    out = {}
    for pid in pids:
        st = _stat(pid)
        if st is not None:
            out[pid] = st[2]
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two `cpu_by_pid` readings: by processes seen both times, and by those that
    started in between. (One that exited in between counts until the first reading only.)"""
    return sum(after.get(pid, cpu) - cpu for pid, cpu in before.items()) + sum(
        cpu for pid, cpu in after.items() if pid not in before
    )


async def postgres_pids(dsn: str, database: str) -> list[int]:
    """The PostgreSQL processes that work for `database`: its client backends and the shared writers
    (WAL writer, checkpointer, background writer), not the backends of other databases on the server."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE (datname = $1 AND pid <> pg_backend_pid()) "
            "OR backend_type IN ('walwriter', 'checkpointer', 'background writer')",
            database,
        )
    finally:
        await conn.close()
    return [r["pid"] for r in rows]


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all cores, from /proc/stat)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK
