"""Torch threads that follow the load: the busy table shared across fork, and the rule each forward pass uses."""

from __future__ import annotations

import multiprocessing
import os
import threading

import pytest
import torch

from clipsvc.cputhreads import BusyTable, ThreadBudget


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _hold_a_pass(table: BusyTable, entered, release) -> None:
    table.enter(os.getpid())
    entered.set()
    release.wait(10)
    table.leave(os.getpid())


def test_the_table_is_shared_with_forked_children():
    """The gunicorn master makes it before forking; each worker's entries are seen by every other."""
    fork = multiprocessing.get_context("fork")
    table, entered, release = BusyTable(slots=4), fork.Event(), fork.Event()
    child = fork.Process(target=_hold_a_pass, args=(table, entered, release))
    child.start()
    try:
        assert entered.wait(10), "the child never entered"
        assert table.busy() == 1
        assert table.enter(os.getpid()) == 2  # the child's pass and this one
        table.leave(os.getpid())
        assert table.busy() == 1
    finally:
        release.set()
        child.join(10)
    assert child.exitcode == 0 and table.busy() == 0


def test_entering_twice_counts_once_and_a_dead_workers_entry_can_be_cleared():
    table = BusyTable(slots=3)
    assert table.enter(101) == 1 and table.enter(101) == 1
    assert table.enter(202) == 2
    table.leave(202)  # what the master does in child_exit for a worker that died mid-pass
    assert table.busy() == 1


def test_a_full_table_counts_everyone_as_busy():
    table = BusyTable(slots=2)
    table.enter(1), table.enter(2)
    assert table.enter(3) == 3


@pytest.mark.parametrize("cores, others_busy, expected", [
    (2, 0, 2),  # alone: every core, the fastest single answer
    (2, 1, 1),  # another worker computes: one each, no oversubscription
    (2, 3, 1),  # never below one
    (16, 3, 4),
    (16, 0, 16),
])
def test_each_forward_pass_takes_cores_divided_by_busy_workers(restore_threads, cores, others_busy, expected):
    table = BusyTable(slots=8)
    for pid in range(1, others_busy + 1):
        table.enter(pid)
    budget = ThreadBudget(cores, table)
    with budget.forward() as threads:
        assert threads == expected == torch.get_num_threads()
        assert table.busy() == others_busy + 1
    assert table.busy() == others_busy and budget.last == expected


def test_the_operators_number_is_kept_whatever_the_load(restore_threads):
    """CLIP_TORCH_THREADS fixes the count; the table is not even consulted."""
    table = BusyTable(slots=4)
    table.enter(1), table.enter(2), table.enter(3)
    with ThreadBudget(2, table, fixed=2).forward() as threads:
        assert threads == 2 == torch.get_num_threads()
    assert table.busy() == 3


def test_the_entry_is_left_even_when_the_pass_fails(restore_threads):
    table = BusyTable(slots=2)
    with pytest.raises(RuntimeError), ThreadBudget(2, table).forward():
        raise RuntimeError("out of memory")
    assert table.busy() == 0


def test_threads_are_set_in_the_thread_that_runs_the_pass(restore_threads):
    """torch's intra-op thread count belongs to the calling thread: the inference thread sets its own."""
    seen = []

    def inference_thread():
        with ThreadBudget(2, BusyTable(slots=2)).forward():
            seen.append(torch.get_num_threads())

    worker = threading.Thread(target=inference_thread)
    worker.start()
    worker.join()
    assert seen == [2]
