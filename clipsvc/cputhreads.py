"""Torch threads that follow the load: all the cores for a worker computing alone, a share when others compute too.

One forward pass with 2 threads on 2 cores answers one client fastest; two workers with 1 thread each serve
several clients best; two workers with 2 threads each (4 threads on 2 cores) are slower than either. So before
every forward pass a worker counts the workers computing at that moment, itself included, in a table shared by
every worker of the server (made by the gunicorn master before it forks), and takes cores ÷ that many threads.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from contextlib import contextmanager


class BusyTable:
    """Which processes are in a forward pass now: one slot per pid, in memory shared across fork."""

    def __init__(self, slots: int):
        self._pids = multiprocessing.Array("q", slots)  # 0: free; carries its own lock

    def enter(self, pid: int) -> int:
        """Mark `pid` busy; how many are busy now, `pid` included."""
        with self._pids.get_lock():
            pids = self._pids.get_obj()
            if pid not in pids[:]:
                try:
                    pids[pids[:].index(0)] = pid
                except ValueError:  # more busy processes than slots: count them all as busy
                    return len(pids) + 1
            return sum(1 for p in pids if p)

    def leave(self, pid: int) -> None:
        """`pid`'s forward pass is over (also called by the master for a worker that died inside one)."""
        with self._pids.get_lock():
            pids = self._pids.get_obj()
            for i, p in enumerate(pids):
                if p == pid:
                    pids[i] = 0

    def busy(self) -> int:
        with self._pids.get_lock():
            return sum(1 for p in self._pids.get_obj() if p)


class ThreadBudget:
    """Sets torch's threads before each forward pass: `fixed` when the operator chose a number, else cores ÷ busy."""

    def __init__(self, cores: int, table: BusyTable | None = None, fixed: int | None = None):
        self.cores = max(1, cores)
        self.table = table
        self.fixed = fixed
        self.last = fixed or self.cores  # threads the latest forward pass used, for logs and tests

    @contextmanager
    def forward(self) -> Iterator[int]:
        """Around one forward pass, in the thread that runs it (torch's thread count is per calling thread)."""
        if self.fixed is not None or self.table is None:
            self.last = _use_threads(self.fixed or self.cores)
            yield self.last
            return
        pid = os.getpid()
        try:
            self.last = _use_threads(max(1, self.cores // self.table.enter(pid)))
            yield self.last
        finally:
            self.table.leave(pid)


def _use_threads(threads: int) -> int:
    """Imported here: the gunicorn master makes the BusyTable and never needs torch for it."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
