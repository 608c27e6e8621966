"""The CLIP model behind a small interface: built once per worker, ready to serve, it turns images and texts into
unit vectors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPTokenizer

from ..settings import Settings, cpu_count
from .batching import Batcher, batch_plan
from .cputhreads import ThreadBudget
from .cudagraphs import CudaGraphs, capture_or_none, graph_sizes
from .features import unit_rows
from .loading import IMAGE_BATCH, ModelFacts, ServingFacts, load_model
from .modeldir import ModelLoadError
from .pixels import PixelRecipe, crop_rows, pixel_batch
from .precision import DTYPES
from .textcache import TextCache
from .towers import Towers

__all__ = ["ClipEncoder", "Encoded", "ModelFacts", "ModelLoadError", "ServingFacts"]

# Texts per forward pass, by device: bounds the activation memory many texts take, and on a CPU what they leave
# behind. OpenVINO keeps the buffers of the largest pass it ran: after 256 texts of 77 tokens in one pass a ViT-L/14
# worker held 585 MiB more for good, in passes of 32 it held 80 MiB more, at the same 33-34 ms a text.
TEXT_BATCH = {"cuda": 256, "cpu": 32}


class Encoded(NamedTuple):
    """One request's unit vectors, and how many CLIP tokens the model read of each text (start and end tokens
    included, truncation applied): counted from the ids it was given, never by tokenizing again."""

    images: np.ndarray
    texts: np.ndarray
    text_tokens: list[int]


class ClipEncoder:
    """Preprocessing and forward passes as transformers does them; no Flask in here. Every forward pass runs in the
    encoder's one inference thread (clipsvc.encoder.batching); `facts` and `serving` never change once it is built."""

    def __init__(self, towers: Towers, tokenizer: CLIPTokenizer, processor: CLIPImageProcessorPil,
                 facts: ModelFacts, serving: ServingFacts, *, gather: int = 64, wait_ms: float = 0.0,
                 budget: ThreadBudget | None = None, wait: float | None = None, graphs: CudaGraphs | None = None):
        """Serve a loaded model: `build` does it from the settings. The inference thread starts here and gathers up to
        `gather` rows, waiting `wait_ms` for more when `serving.batching`; `budget` sets torch's threads before
        each forward pass (CPU); `wait` bounds a request's wait for its rows; `graphs`: the image pass, captured."""
        self.towers = towers
        self.tokenizer = tokenizer
        self.processor = processor
        self.facts = facts
        self.serving = serving
        self.device, self.dtype = towers.device, towers.dtype
        self.chunk = serving.max_batch
        self.text_chunk = TEXT_BATCH.get(self.device.type, TEXT_BATCH["cpu"])
        self.pixels = PixelRecipe.from_processor(processor)  # None: the processor does all of it
        self._image_graphs = graphs
        self.wait_timeout = wait
        # Told the size of every forward pass ("image" or "text", rows); the metrics module listens here.
        self.on_forward: Callable[[str, int], None] = _ignore
        self.text_cache = TextCache(serving.text_cache_size)
        runners = {"image": self._budgeted(self.forward_images, budget),
                   "text": self._budgeted(self.forward_texts, budget)}
        self.batcher = Batcher(runners, gather, wait_ms, merge=serving.batching)

    @classmethod
    def build(cls, settings: Settings, model_dir: Path | None = None, *, budget: ThreadBudget | None = None,
              wait: float | None = None) -> ClipEncoder:
        """The worker's encoder, ready to serve: loaded as `settings` say (device, precision, packed weights), with
        its text cache, its image pass captured as CUDA graphs when it batches on a GPU, and its inference thread.

        `model_dir`: the directory the master resolved (unzipped, found under a parent), by default the settings'
        own, which must then be a model directory itself. `budget`: torch's threads per forward pass, by default
        CLIP_TORCH_THREADS, else every core. `wait`: how long a request waits for its rows before BatchTimeout (by
        default, as long as it takes).
        """
        loaded = load_model(model_dir or settings.model_dir, settings)
        towers = loaded.towers
        device, dtype = towers.device, towers.dtype
        budget = budget or ThreadBudget(cpu_count(), fixed=settings.torch_threads)
        threads = budget.fixed or budget.cores
        dynamic = budget.fixed is None and budget.table is not None and loaded.engine == "torch"
        merge, wait_ms = batch_plan(settings, device.type)
        chunk, graphs = IMAGE_BATCH, None
        if device.type == "cuda" and merge:
            # On a CPU the chunk stays IMAGE_BATCH: a bigger pass only costs memory there. Graphs are captured
            # before the inference thread starts: capture needs the GPU to itself.
            chunk = settings.max_batch
            side = loaded.facts.image_size
            graphs = capture_or_none(towers.images,
                                     torch.zeros(1, 3, side, side, device=device, dtype=dtype), graph_sizes(chunk))
        serving = ServingFacts(
            device=str(device), engine=loaded.engine, dtype=str(DTYPES[loaded.precision]).removeprefix("torch."),
            threads=threads, load_seconds=loaded.seconds, batching=merge, max_batch=chunk,
            dynamic_threads=dynamic, packed_weights=loaded.packed_weights,
            precision=loaded.precision, precision_cosine=loaded.precision_cosine,
            precision_fallback=loaded.precision_fallback, text_cache_size=settings.text_cache_size)
        return cls(towers, loaded.tokenizer, loaded.processor, loaded.facts, serving, gather=settings.max_batch,
                   wait_ms=wait_ms, budget=budget, wait=wait, graphs=graphs)

    def describe(self) -> dict:
        """The `model_loaded` line's fields: what the model is, then how this worker serves it."""
        return {**asdict(self.facts), **asdict(self.serving)}

    def image_rows(self, images: Sequence[Image.Image]) -> list[torch.Tensor]:
        """What a request thread hands to the forward pass, from RGB pictures (clipsvc.encoder.pixels)."""
        return crop_rows(images, self.pixels, self.processor)

    def _budgeted(self, forward: Callable[[list], list], budget: ThreadBudget | None) -> Callable[[list], list]:
        """`forward` with torch's threads set by the budget first (none on a GPU: the model does not use them)."""
        if budget is None or self.device.type != "cpu":
            return forward

        def run(rows: list) -> list:
            with budget.forward():
                return forward(rows)
        return run

    def encode(self, images: Sequence[Image.Image], texts: Sequence[str]) -> Encoded:
        """One request's images and texts as (n, embedding_dim) float32 rows of unit length, and each text's tokens.

        The texts go to the model first: it computes them while this thread resizes the images. Texts whose
        tokens the worker has seen before come from its cache (clipsvc.encoder.textcache), identical.
        """
        tokens = self._tokens(texts)
        known, missing = self.text_cache.lookup(tokens)
        texts_done = self._begin("text", missing)
        images_done = self._begin("image", self.image_rows(images))
        image_vectors = self._rows(images_done())
        computed = texts_done()
        self.text_cache.store(missing, computed)
        known.update(zip(map(tuple, missing), computed, strict=True))
        return Encoded(image_vectors, self._rows([known[tuple(row)] for row in tokens]), [len(row) for row in tokens])

    def _tokens(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(list(texts), truncation=True, max_length=self.facts.max_text_tokens)["input_ids"]

    def _begin(self, kind: str, rows: list) -> Callable[[], list[np.ndarray]]:
        """Hand rows to the model; returns the call that waits for their vectors."""
        if not rows:
            return list
        return partial(self.batcher.wait, self.batcher.start(kind, rows), self.wait_timeout)

    def _rows(self, vectors: list[np.ndarray]) -> np.ndarray:
        return np.stack(vectors) if vectors else np.empty((0, self.facts.embedding_dim), dtype=np.float32)

    def forward_images(self, rows: list[torch.Tensor]) -> list[np.ndarray]:
        """Rows from image_rows -> unit vectors, `chunk` at a time to bound memory."""
        vectors: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(rows), self.chunk):
                batch = pixel_batch(rows[start:start + self.chunk], self.pixels, self.device, self.dtype)
                self.on_forward("image", len(batch))
                forward = self._image_graphs or self.towers.images
                vectors.extend(_unit_rows(forward(batch)))
        return vectors

    def forward_texts(self, rows: list[list[int]]) -> list[np.ndarray]:
        """Token ids (unpadded, one list per text) -> unit vectors; padded per chunk."""
        vectors: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(rows), self.text_chunk):
                tokens = self.tokenizer.pad({"input_ids": rows[start:start + self.text_chunk]}, return_tensors="pt")
                self.on_forward("text", len(tokens["input_ids"]))
                vectors.extend(_unit_rows(self.towers.texts(tokens["input_ids"], tokens["attention_mask"])))
        return vectors


def _ignore(kind: str, rows: int) -> None:
    """The default forward-pass listener: nobody is counting."""


def _unit_rows(output: torch.Tensor) -> np.ndarray:
    return unit_rows(output).numpy()
