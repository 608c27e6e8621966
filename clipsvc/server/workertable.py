"""What every worker of one gunicorn server is doing, in memory the master shares with the workers it forks.

Two decisions read it. Torch threads follow the load (clipsvc.encoder.cputhreads): a worker serving alone takes all the
cores for a forward pass, workers serving together share them. New connections go to the least loaded workers
(clipsvc.server.worker): a threaded worker that already has requests in hand lets an idle one accept, as gunicorn's
sync workers did by accepting only when free.
"""

from __future__ import annotations

import multiprocessing
import os
import threading

_PID, _REQUESTS, _COMPUTING, _LOADED, _FIELDS = 0, 1, 2, 3, 4
# How long a worker waits to claim its row while another process holds the claim: a process killed while claiming
# (SIGKILL, the OOM killer) never releases it, and the table must not wedge the server over that.
CLAIM_TIMEOUT_S = 1.0


class WorkerTable:
    """One row per worker process: its pid, its requests in hand, whether it is in a forward pass, and whether it has
    loaded its model (for the server's one `ready` line, clipsvc.server.lifecycle.announce_ready).

    No lock is held while a row is read or written, so a worker killed at any moment (SIGKILL, the OOM killer)
    cannot leave one held for the master and the other workers to wait on forever, as a shared lock did: a killed
    worker deadlocked the whole server. Each row has one writer, the process it belongs to (its threads take a lock
    of that process's own), and the master frees the row of a worker that has exited; readers read aligned 64-bit
    fields, each whole. Only claiming a free row is serialised across processes, with a timeout."""

    def __init__(self, slots: int):
        self._rows = multiprocessing.RawArray("q", slots * _FIELDS)  # zeros: free rows; no lock of its own
        self._claim = multiprocessing.Lock()
        self._own_lock, self._own_pid = threading.Lock(), os.getpid()

    def _row(self, pid: int) -> int | None:
        """The index of `pid`'s row, claiming a free one if it has none; None when the table is full."""
        found = self._find(pid)
        if found is not None:
            return found
        claimed = self._claim.acquire(timeout=CLAIM_TIMEOUT_S)
        try:
            found = self._find(pid)
            if found is None:
                found = self._find(0)
                if found is not None:
                    self._rows[found + _PID] = pid
            return found
        finally:
            if claimed:
                self._claim.release()

    def _find(self, pid: int) -> int | None:
        rows = self._rows
        return next((start for start in range(0, len(rows), _FIELDS) if rows[start + _PID] == pid), None)

    def _lock(self) -> threading.Lock:
        """This process's lock for its own row's read-modify-writes (a forked child gets a new one)."""
        if self._own_pid != os.getpid():
            self._own_lock, self._own_pid = threading.Lock(), os.getpid()
        return self._own_lock

    def _update(self, pid: int, field: int, value: int) -> int:
        """Set one of `pid`'s fields; returns how many workers are busy afterwards."""
        start = self._row(pid)
        if start is not None:
            self._rows[start + field] = value
        return self.busy()

    def requests(self, pid: int, count: int) -> None:
        """`pid` has `count` requests in hand (read, waiting or computing); 0 registers an idle worker."""
        self._update(pid, _REQUESTS, count)

    def add_request(self, pid: int, change: int) -> None:
        """One more (+1) or one fewer (-1) request in `pid`'s hand; any of its threads may call this."""
        start = self._row(pid)
        if start is not None:
            with self._lock():
                self._rows[start + _REQUESTS] = max(0, self._rows[start + _REQUESTS] + change)

    def computing(self, pid: int, flag: bool) -> int:
        """`pid` starts (True) or ends a forward pass; returns the busy workers, `pid` included."""
        return self._update(pid, _COMPUTING, int(flag))

    def loaded(self, pid: int) -> int:
        """`pid` has loaded its model; returns how many live workers have, `pid` included (the master frees an exited
        worker's row, so a worker that died after loading no longer counts)."""
        start = self._row(pid)
        if start is not None:
            self._rows[start + _LOADED] = 1
        rows = self._rows
        return sum(rows[start + _LOADED] for start in range(0, len(rows), _FIELDS) if rows[start + _PID])

    def remove(self, pid: int) -> None:
        """A worker has exited (in the master): its row is free again, whatever it was doing when it died. The pid
        goes last, so a worker claiming the row meanwhile finds it clean."""
        start = self._find(pid)
        if start is not None:
            for field in range(_FIELDS - 1, -1, -1):
                self._rows[start + field] = 0

    def should_accept(self, pid: int) -> bool:
        """Whether `pid` is the worker to take the next connection: the one with the fewest requests in hand, the
        first in the table among equals. Idle workers thus serve one client from the same warm process (its
        caches and threads awake), and a busy worker leaves new connections to one that has fewer."""
        rows = self._rows
        mine = self._find(pid)
        starts = [start for start in range(0, len(rows), _FIELDS) if rows[start + _PID]]
        if mine is None or not starts:
            return True
        return min(starts, key=lambda start: rows[start + _REQUESTS]) == mine

    def busy(self) -> int:
        """The workers with requests in hand or in a forward pass."""
        rows = self._rows
        return sum(1 for start in range(0, len(rows), _FIELDS)
                   if rows[start + _PID] and (rows[start + _REQUESTS] or rows[start + _COMPUTING]))
