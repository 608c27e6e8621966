"""What every worker of one gunicorn server is doing, in memory the master shares with the workers it forks.

Two decisions read it. Torch threads follow the load (clipsvc.encoder.cputhreads): a worker serving alone takes all the
cores for a forward pass, workers serving together share them. New connections go to the least loaded workers
(clipsvc.server.worker): a threaded worker that already has requests in hand lets an idle one accept, as gunicorn's
sync workers did by accepting only when free.
"""

from __future__ import annotations

import multiprocessing

_PID, _REQUESTS, _COMPUTING, _LOADED, _FIELDS = 0, 1, 2, 3, 4


class WorkerTable:
    """One row per worker process: its pid, its requests in hand, whether it is in a forward pass, and whether it has
    loaded its model (for the server's one `ready` line, clipsvc.server.lifecycle.announce_ready)."""

    def __init__(self, slots: int):
        self._rows = multiprocessing.Array("q", slots * _FIELDS)  # zeros: free rows; carries its own lock

    def _row(self, rows, pid: int) -> int | None:
        """The index of `pid`'s row, claiming a free one if it has none; None when the table is full."""
        free = None
        for start in range(0, len(rows), _FIELDS):
            if rows[start + _PID] == pid:
                return start
            if free is None and rows[start + _PID] == 0:
                free = start
        if free is not None:
            rows[free + _PID] = pid
        return free

    def _update(self, pid: int, field: int, value: int) -> int:
        """Set one of `pid`'s fields; returns how many workers are busy afterwards."""
        with self._rows.get_lock():
            rows = self._rows.get_obj()
            start = self._row(rows, pid)
            if start is not None:
                rows[start + field] = value
            return self._busy(rows)

    def requests(self, pid: int, count: int) -> None:
        """`pid` has `count` requests in hand (read, waiting or computing); 0 registers an idle worker."""
        self._update(pid, _REQUESTS, count)

    def add_request(self, pid: int, change: int) -> None:
        """One more (+1) or one fewer (-1) request in `pid`'s hand; any of its threads may call this."""
        with self._rows.get_lock():
            rows = self._rows.get_obj()
            start = self._row(rows, pid)
            if start is not None:
                rows[start + _REQUESTS] = max(0, rows[start + _REQUESTS] + change)

    def computing(self, pid: int, flag: bool) -> int:
        """`pid` starts (True) or ends a forward pass; returns the busy workers, `pid` included."""
        return self._update(pid, _COMPUTING, int(flag))

    def loaded(self, pid: int) -> int:
        """`pid` has loaded its model; returns how many live workers have, `pid` included (the master frees an exited
        worker's row, so a worker that died after loading no longer counts)."""
        with self._rows.get_lock():
            rows = self._rows.get_obj()
            start = self._row(rows, pid)
            if start is not None:
                rows[start + _LOADED] = 1
            return sum(rows[start + _LOADED] for start in range(0, len(rows), _FIELDS) if rows[start + _PID])

    def remove(self, pid: int) -> None:
        """A worker has exited (in the master): its row is free again, whatever it was doing when it died."""
        with self._rows.get_lock():
            rows = self._rows.get_obj()
            for start in range(0, len(rows), _FIELDS):
                if rows[start + _PID] == pid:
                    rows[start:start + _FIELDS] = [0] * _FIELDS

    def should_accept(self, pid: int) -> bool:
        """Whether `pid` is the worker to take the next connection: the one with the fewest requests in hand, the
        first in the table among equals. Idle workers thus serve one client from the same warm process (its
        caches and threads awake), and a busy worker leaves new connections to one that has fewer."""
        with self._rows.get_lock():
            rows = self._rows.get_obj()
            mine = self._row(rows, pid)
            if mine is None:
                return True
            starts = [start for start in range(0, len(rows), _FIELDS) if rows[start + _PID]]
            return min(starts, key=lambda start: rows[start + _REQUESTS]) == mine

    @staticmethod
    def _busy(rows) -> int:
        return sum(1 for start in range(0, len(rows), _FIELDS)
                   if rows[start + _PID] and (rows[start + _REQUESTS] or rows[start + _COMPUTING]))
