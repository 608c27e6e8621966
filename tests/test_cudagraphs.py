"""CUDA graph sizes (capture itself needs a GPU: bench/perf.py --device cuda checks it on one)."""

import pytest

from clipsvc.encoder.cudagraphs import graph_sizes


@pytest.mark.parametrize("max_batch, sizes", [
    (64, [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]),
    (20, [1, 2, 4, 8, 16, 20]),
    (4, [1, 2, 4]),
    (1, [1]),
])
def test_cuda_graph_sizes_cover_every_batch_up_to_the_limit(max_batch, sizes):
    """Every batch the batcher can run (1..max_batch rows per chunk) has a captured size at least as large."""
    assert graph_sizes(max_batch) == sizes
