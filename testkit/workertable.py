"""The worker table as the tests read it: how many workers it counts busy right now.

The server only learns that number from `WorkerTable.computing`, as a forward pass starts; tests look at it
between calls, so the reading lives here rather than as a member of the table the server would never call."""

from __future__ import annotations

from clipsvc.server.workertable import WorkerTable


def busy(table: WorkerTable) -> int:
    """The workers with requests in hand or in a forward pass, as `computing` would count them."""
    with table._rows.get_lock():
        return WorkerTable._busy(table._rows.get_obj())
