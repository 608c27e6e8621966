"""glibc's malloc arenas, limited in each worker: its memory at steady state is mostly what they hold, not use.

Each thread that allocates gets an arena of its own (up to 8 per core), and an arena keeps the pages of the
largest request its thread served: with a request thread per connection, a ViT-B/32 worker's RSS grew from
0.73 GB fresh to a 1.04 GB plateau, ~200 MiB of it free but held. Two arenas held the plateau 11 % lower at the
same throughput (bench/soak.py, docs/performance.md#a-workers-memory-at-steady-state).
"""

from __future__ import annotations

import ctypes
import os

ARENA_MAX = 2
_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
ENV = "MALLOC_ARENA_MAX"  # glibc's own variable: an operator's value, read by glibc at start-up, is kept


def limit_arenas(arenas: int = ARENA_MAX) -> bool:
    """In a worker, before its threads start: at most `arenas` arenas, unless MALLOC_ARENA_MAX says otherwise.
    False where this is not glibc, or the operator chose."""
    if os.environ.get(ENV):
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to limit
        return False
