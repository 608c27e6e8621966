"""The CLIP model behind a small interface: load once per worker, turn images and texts into unit vectors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from transformers import CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

from .batching import Batcher
from .cputhreads import ThreadBudget
from .cudagraphs import CudaGraphs, capture_or_none, graph_sizes
from .features import pooled, unit_rows
from .loading import IMAGE_BATCH, EncoderInfo, load_model
from .modeldir import ModelLoadError
from .pixels import PixelRecipe, crop_rows, pixel_batch
from .textcache import TextCache

__all__ = ["ClipEncoder", "EncoderInfo", "ModelLoadError"]

# Texts per forward pass: bounds activation memory for a request with many texts.
TEXT_BATCH = 256


class Encoded(NamedTuple):
    """One request's unit vectors, and how many CLIP tokens the model read of each text (start and end tokens
    included, truncation applied): counted from the ids it was given, never by tokenizing again."""

    images: np.ndarray
    texts: np.ndarray
    text_tokens: list[int]


class ClipEncoder:
    """Preprocessing and forward passes as transformers does them; no Flask in here."""

    def __init__(self, model: CLIPModel, tokenizer: CLIPTokenizer, processor: CLIPImageProcessorPil,
                 info: EncoderInfo):
        self.model = model
        self.tokenizer = tokenizer
        self.processor = processor
        self.info = info
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.chunk = IMAGE_BATCH
        self.pixels = PixelRecipe.from_processor(processor)  # None: the processor does all of it
        self._image_graphs: CudaGraphs | None = None  # with batching on a GPU
        # Without an inference thread (tests, benchmarks), forward passes run in the calling thread.
        self.batcher: Batcher | None = None
        self.wait_timeout: float | None = None
        self._forwards: dict[str, Callable[[list], list[np.ndarray]]] = {
            "image": self.forward_images, "text": self.forward_texts}
        # Told the size of every forward pass ("image" or "text", rows); the metrics module listens here.
        self.on_forward: Callable[[str, int], None] = _ignore
        self.text_cache = TextCache(0)  # off until the worker's settings size it (cache_texts)

    @classmethod
    def load(cls, model_dir: Path, device: str = "auto", threads: int | None = None,
             packed_weights: bool = False, precision: str = "fp32", min_cosine: float | None = None) -> ClipEncoder:
        """Load weights, tokenizer and image processor from a resolved model directory.

        `packed_weights` (CPU, fp32 or bf16): linear layers get oneDNN's packed copy of their weights
        (clipsvc.encoder.packing); image passes are 15-30% faster with 2 threads, but in fp32 the copy is this
        process's own, not the weights file's pages that every worker shares. `precision` (CLIP_PRECISION)
        and the accuracy guard's `min_cosine`: clipsvc.encoder.precision.
        """
        return cls(*load_model(model_dir, device, threads, packed_weights, precision, min_cosine))

    def cache_texts(self, entries: int) -> None:
        """Keep up to `entries` text vectors (CLIP_TEXT_CACHE_SIZE); 0 turns the cache off."""
        self.text_cache.resize(entries)
        self.info = replace(self.info, text_cache_size=entries)

    def preprocess_images(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """N×3×H×W float32 on the CPU, as the model's processor gives them (preprocessor_config.json).

        Not on the served path (image_rows, then pixel_batch per forward pass): bench/preprocess.py times it.
        """
        return pixel_batch(self.image_rows(images), self.pixels, torch.device("cpu"), torch.float32)

    def image_rows(self, images: Sequence[Image.Image]) -> list[torch.Tensor]:
        """What a request thread hands to the forward pass, from RGB pictures (clipsvc.encoder.pixels)."""
        return crop_rows(images, self.pixels, self.processor)

    def start_inference_thread(self, max_batch: int = 64, max_wait_ms: float = 5, merge: bool = True,
                               timeout: float | None = None, budget: ThreadBudget | None = None) -> None:
        """Run every forward pass in one inference thread; with `merge`, rows of concurrent requests batch together.

        `budget` sets torch's threads before each forward pass (CPU); `timeout` bounds a request's wait.
        """
        if self.device.type == "cuda" and merge:
            # On a CPU the chunk stays IMAGE_BATCH: a bigger pass only costs memory there. Graphs are captured
            # before the inference thread starts: capture needs the GPU to itself.
            self.chunk = max_batch
            self._image_graphs = capture_or_none(
                lambda x: pooled(self.model.get_image_features(pixel_values=x)),
                torch.zeros(1, 3, self.info.image_size, self.info.image_size, device=self.device, dtype=self.dtype),
                graph_sizes(max_batch))
        runners = {kind: self._budgeted(forward, budget) for kind, forward in self._forwards.items()}
        self.batcher = Batcher(runners, max_batch, max_wait_ms, merge=merge)
        self.wait_timeout = timeout
        self.info = replace(self.info, batching=merge, max_batch=self.chunk,
                            threads=budget.cores if budget and budget.fixed is None else self.info.threads,
                            dynamic_threads=bool(budget and budget.fixed is None and budget.table is not None))

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

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(n, embedding_dim) float32 rows of unit length (POST /vectorize); preprocessing runs in this thread."""
        return self.encode(images, []).images

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, embedding_dim) float32 rows of unit length; texts past 77 tokens are truncated (bench/precision.py)."""
        return self.encode([], texts).texts

    def _tokens(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(list(texts), truncation=True, max_length=self.info.max_text_tokens)["input_ids"]

    def _begin(self, kind: str, rows: list) -> Callable[[], list[np.ndarray]]:
        """Hand rows to the model; returns the call that waits for their vectors."""
        if not rows:
            return list
        if self.batcher is None:
            vectors = self._forwards[kind](rows)
            return lambda: vectors
        return partial(self.batcher.wait, self.batcher.start(kind, rows), self.wait_timeout)

    def _rows(self, vectors: list[np.ndarray]) -> np.ndarray:
        return np.stack(vectors) if vectors else np.empty((0, self.info.embedding_dim), dtype=np.float32)

    def forward_images(self, rows: list[torch.Tensor]) -> list[np.ndarray]:
        """Rows from image_rows -> unit vectors, `chunk` at a time to bound memory."""
        vectors: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(rows), self.chunk):
                batch = pixel_batch(rows[start:start + self.chunk], self.pixels, self.device, self.dtype)
                self.on_forward("image", len(batch))
                if self._image_graphs is not None:
                    vectors.extend(_unit_rows(self._image_graphs(batch)))
                else:
                    vectors.extend(_unit_rows(self.model.get_image_features(pixel_values=batch)))
        return vectors

    def forward_texts(self, rows: list[list[int]]) -> list[np.ndarray]:
        """Token ids (unpadded, one list per text) -> unit vectors; padded per chunk."""
        vectors: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(rows), TEXT_BATCH):
                tokens = self.tokenizer.pad({"input_ids": rows[start:start + TEXT_BATCH]}, return_tensors="pt")
                self.on_forward("text", len(tokens["input_ids"]))
                output = self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                      attention_mask=tokens["attention_mask"].to(self.device))
                vectors.extend(_unit_rows(output))
        return vectors


def _ignore(kind: str, rows: int) -> None:
    """The default forward-pass listener: nobody is counting."""


def _unit_rows(output: torch.Tensor | object) -> np.ndarray:
    return unit_rows(output).numpy()
