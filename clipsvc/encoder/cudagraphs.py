"""Forward passes captured as CUDA graphs: one replay instead of hundreds of kernel launches from Python."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)


def graph_sizes(max_batch: int) -> list[int]:
    """Batch sizes to capture: 1, 2, 4, 8, then every 8 up to max_batch; a batch is padded to the next one."""
    sizes = {size for size in (1, 2, 4) if size < max_batch} | set(range(8, max_batch, 8)) | {max_batch}
    return sorted(sizes)


class CudaGraphs:
    """One forward pass captured as a CUDA graph per batch size, replayed with a single call.

    Eager ViT-L/14 launches hundreds of kernels from Python per pass: 13-17 ms for any batch up to 32 rows on
    an H100, each launch taking the GIL back from busy request threads; replayed, 2.2 ms at 1 row and 4.9 at 8
    (docs/performance.md). Rows in a batch are independent, so padding rows (stale data) change no other row.
    Not thread-safe: the batcher's one inference thread calls it, and uses each result before the next call.
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor, sizes: list[int]):
        self.sizes = sorted(sizes)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        pool, stream = torch.cuda.graph_pool_handle(), torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(stream):
            for size in reversed(self.sizes):  # largest first: the smaller ones reuse its memory
                static_in = example.new_zeros((size, *example.shape[1:]))
                forward(static_in)  # warm-up outside capture: library handles, kernel choices
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=pool, stream=stream):
                    static_out = forward(static_in)
                self._graphs[size] = (graph, static_in, static_out)
        torch.cuda.current_stream().wait_stream(stream)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """The forward pass of `batch` (at most the largest size); valid until the next call."""
        size = next(size for size in self.sizes if size >= len(batch))
        graph, static_in, static_out = self._graphs[size]
        static_in[:len(batch)].copy_(batch)
        graph.replay()
        return static_out[:len(batch)]


def capture_or_none(forward: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor,
                     sizes: list[int]) -> CudaGraphs | None:
    """Capture, or keep eager forward passes (slower, same results) if this model or driver cannot."""
    try:
        started = time.perf_counter()
        graphs = CudaGraphs(forward, example, sizes)
    except Exception as exc:  # capture raises many types; serving eagerly is always possible
        log.warning("CUDA graph capture failed; forward passes stay eager: %s", exc,
                    extra={"event": "cuda_graphs_failed"})
        return None
    log.info("CUDA graphs captured", extra={"event": "cuda_graphs", "sizes": sizes,
                                            "seconds": round(time.perf_counter() - started, 2)})
    return graphs
