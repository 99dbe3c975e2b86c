"""The reload status files (gateway.proxy.loaded): a live worker is listed, a stale file or a reused pid never is."""

from __future__ import annotations

import os
import subprocess
import sys

from gateway.proxy import loaded


def _status(pid: int, started: str) -> loaded.Loaded:
    return loaded.Loaded(pid, 1, 4000, "/c.yaml", "abc", 0.0, "", started=started)


def test_a_live_worker_is_listed_and_a_gone_or_reused_pid_is_removed(tmp_path):
    me = os.getpid()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone_pid = int(gone.stdout)
    loaded.write(tmp_path, _status(me, loaded.process_start(me)))
    loaded.write(tmp_path, _status(gone_pid, "1"))
    parent = os.getppid()
    loaded.write(tmp_path, _status(parent, "1"))  # a live pid, but not the process that wrote the file
    assert [s.pid for s in loaded.read_all(tmp_path)] == [me]
    assert sorted(p.name for p in loaded.folder(tmp_path).glob("*.json")) == [f"{me}.json"]


def test_a_request_id_is_new_each_time(tmp_path):
    first = loaded.new_request(tmp_path)
    assert loaded.current_request(tmp_path) == first
    second = loaded.new_request(tmp_path)
    assert second != first and loaded.current_request(tmp_path) == second
