"""Torch threads that follow the load: the rule each forward pass uses, read from the worker table."""

from __future__ import annotations

import threading

import pytest
import torch

from clipsvc.encoder.cputhreads import ThreadBudget
from clipsvc.server.workertable import WorkerTable


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cores, others_busy, expected", [
    (2, 0, 2),  # alone: every core, the fastest single answer
    (2, 1, 1),  # another worker computes: one each, no oversubscription
    (2, 3, 1),  # never below one
    (16, 3, 4),
    (16, 0, 16),
])
def test_each_forward_pass_takes_cores_divided_by_busy_workers(restore_threads, cores, others_busy, expected):
    table = WorkerTable(slots=8)
    for pid in range(1, others_busy + 1):
        table.requests(pid, 1)  # serving: a request in hand
    table.requests(999, 0)  # registered but idle: does not count
    budget = ThreadBudget(cores, table)
    with budget.forward() as threads:
        assert threads == expected == torch.get_num_threads()
        assert table.busy() == others_busy + 1
    assert table.busy() == others_busy and budget.last == expected


def test_the_operators_number_is_kept_whatever_the_load(restore_threads):
    """CLIP_TORCH_THREADS fixes the count; the table is not even consulted."""
    table = WorkerTable(slots=4)
    for pid in (1, 2, 3):
        table.requests(pid, 1)
    with ThreadBudget(2, table, fixed=2).forward() as threads:
        assert threads == 2 == torch.get_num_threads()
    assert table.busy() == 3


def test_the_entry_is_left_even_when_the_pass_fails(restore_threads):
    table = WorkerTable(slots=2)
    with pytest.raises(RuntimeError), ThreadBudget(2, table).forward():
        raise RuntimeError("out of memory")
    assert table.busy() == 0


def test_threads_are_set_in_the_thread_that_runs_the_pass(restore_threads):
    """torch's intra-op thread count belongs to the calling thread: the inference thread sets its own."""
    seen = []

    def inference_thread():
        with ThreadBudget(2, WorkerTable(slots=2)).forward():
            seen.append(torch.get_num_threads())

    worker = threading.Thread(target=inference_thread)
    worker.start()
    worker.join()
    assert seen == [2]
