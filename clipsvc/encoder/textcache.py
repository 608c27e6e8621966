"""Text vectors already computed, kept per worker: zero-shot clients send the same labels again and again.

Keyed by the exact token ids the model would read (after truncation), so a hit is the vector the model gave for
those very tokens: identical, not merely close. Bounded by entries (CLIP_TEXT_CACHE_SIZE), least recently used
first out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

import numpy as np

Tokens = tuple[int, ...]


def _ignore(hits: int, misses: int) -> None:
    """The default listener: nobody is counting."""


class TextCache:
    """An LRU of token ids -> unit vector, shared by a worker's request threads."""

    def __init__(self, size: int):
        self.size = size
        self._vectors: OrderedDict[Tokens, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        # Told each lookup's hits and misses; the metrics module listens here.
        self.on_lookup: Callable[[int, int], None] = _ignore

    def __len__(self) -> int:
        return len(self._vectors)

    def lookup(self, rows: Sequence[Sequence[int]]) -> tuple[dict[Tokens, np.ndarray], list[list[int]]]:
        """The vectors known for `rows`, and the distinct rows still to compute (in first-seen order)."""
        keys = [tuple(row) for row in rows]
        if not keys:
            return {}, []
        found: dict[Tokens, np.ndarray] = {}
        with self._lock:
            for key in keys:
                vector = self._vectors.get(key)
                if vector is not None:
                    self._vectors.move_to_end(key)
                    found[key] = vector
        missing = [list(key) for key in dict.fromkeys(k for k in keys if k not in found)]
        hits = sum(key in found for key in keys)
        self.on_lookup(hits, len(keys) - hits)
        return found, missing

    def store(self, rows: Sequence[Sequence[int]], vectors: Sequence[np.ndarray]) -> None:
        if self.size <= 0:
            return
        with self._lock:
            for row, vector in zip(rows, vectors, strict=True):
                frozen = np.array(vector, dtype=np.float32)  # a copy of its own, read-only: shared by requests
                frozen.flags.writeable = False
                self._vectors[tuple(row)] = frozen
                self._vectors.move_to_end(tuple(row))
            self._evict()

    def _evict(self) -> None:
        while len(self._vectors) > max(self.size, 0):
            self._vectors.popitem(last=False)
