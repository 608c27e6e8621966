"""glibc's malloc, tuned in each worker: its memory at steady state is mostly what the arenas hold, not use.

Each thread that allocates gets an arena of its own (up to 8 per core), and an arena keeps the pages of the
largest request its thread served: with a request thread per connection, a ViT-B/32 worker's RSS grew from
0.73 GB fresh to a 1.04 GB plateau, ~200 MiB of it free but held. Two arenas held the plateau 11 % lower at the
same throughput (bench/soak.py, docs/performance.md#a-workers-memory-at-steady-state).

Under OpenVINO, large blocks (decoded pictures, crops, request bodies) are also mapped on their own, so that
freeing one gives its pages back: glibc's default raises that threshold to the largest block freed, and then such
blocks stay in the heap. A ViT-L/14 worker's plateau went from 1 433-1 493 to 1 318-1 336 MiB PSS (6-minute soaks).
"""

from __future__ import annotations

import ctypes
import os

ARENA_MAX = 2
_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
ENV = "MALLOC_ARENA_MAX"  # glibc's own variable: an operator's value, read by glibc at start-up, is kept
LARGE_BLOCK = 1 << 20  # bytes: a 224x224 crop is 147 KiB, a decoded 12-megapixel photograph 36 MiB
_M_MMAP_THRESHOLD = -3
LARGE_ENV = "MALLOC_MMAP_THRESHOLD_"  # glibc's variable for it, kept likewise


def limit_arenas(arenas: int = ARENA_MAX) -> bool:
    """In a worker, before its threads start: at most `arenas` arenas, unless MALLOC_ARENA_MAX says otherwise.
    False where this is not glibc, or the operator chose."""
    if os.environ.get(ENV):
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to limit
        return False


def return_large_blocks(size: int = LARGE_BLOCK) -> bool:
    """In a worker whose engine is OpenVINO, before it loads: blocks of `size` bytes or more mapped on their own
    and unmapped when freed. Not under torch on a CPU, whose activations are such blocks, allocated and freed at
    every layer: each would cost page faults. False where this is not glibc, or the operator chose."""
    if os.environ.get(LARGE_ENV):
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, size))
    except (OSError, AttributeError):
        return False
