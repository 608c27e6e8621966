"""bench/perf.py's baseline: the same work done by transformers alone, in-process, none of clipsvc's code.

Two ways, matching how the service runs on each device:

- `sequential` (CPU): one request at a time, decode, processor, both towers, the cosines;
- `batched` (GPU): a pool of threads decodes and preprocesses requests while the calling thread runs
  forward passes over the rows of several requests together (up to `batch_rows`, as the service's
  batcher does), brings the vectors back to the CPU and splits them per request.
"""

from __future__ import annotations

import io
import itertools
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import CLIPModel, CLIPProcessor


@dataclass(frozen=True)
class Work:
    """One request's inputs: encoded images and captions."""

    jpegs: list[bytes]
    captions: list[str]

    @property
    def rows(self) -> int:
        """The larger of its image and text rows: what bounds how many requests share a forward pass."""
        return max(len(self.jpegs), len(self.captions))


@dataclass
class Timing:
    latencies_s: list[float]
    wall_s: float
    vector: np.ndarray  # the first request's first image (or text) vector, to compare with the service's


def load(model_dir: Any, device: str) -> tuple[CLIPModel, CLIPProcessor]:
    """fp32 on the CPU, fp16 on the GPU: the service's choice on each."""
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = CLIPModel.from_pretrained(model_dir, dtype=dtype, local_files_only=True).to(device).eval()
    return model, CLIPProcessor.from_pretrained(model_dir, local_files_only=True)


def unit(features: torch.Tensor | Any) -> np.ndarray:
    """transformers 5's get_*_features return an output object whose pooler_output is the projection."""
    tensor = features if isinstance(features, torch.Tensor) else features.pooler_output
    return torch.nn.functional.normalize(tensor.float(), dim=-1).cpu().numpy()


def first_vector(images: np.ndarray | None, texts: np.ndarray | None) -> np.ndarray:
    return images[0] if images is not None and len(images) else texts[0]


# --- sequential (CPU) -------------------------------------------------------------------------------


def one_request(model: CLIPModel, processor: CLIPProcessor, work: Work) -> np.ndarray:
    """What one service request costs the library alone: decode, preprocess, both towers, the cosines."""
    images = [Image.open(io.BytesIO(data)).convert("RGB") for data in work.jpegs] or None
    inputs = processor(text=work.captions or None, images=images, return_tensors="pt", padding=True,
                       truncation=True)
    image = text = None
    with torch.inference_mode():
        if images:
            image = unit(model.get_image_features(pixel_values=inputs["pixel_values"]))
        if work.captions:
            text = unit(model.get_text_features(input_ids=inputs["input_ids"],
                                                attention_mask=inputs["attention_mask"]))
    if image is not None and text is not None:
        (image @ text.T).tolist()  # the cosines, as the service computes them
    return first_vector(image, text)


def run_sequential(model: CLIPModel, processor: CLIPProcessor, work: Work, requests: int, warmup: int) -> Timing:
    for _ in range(warmup):
        one_request(model, processor, work)
    latencies = []
    wall_start = time.perf_counter()
    for _ in range(requests):
        start = time.perf_counter()
        vector = one_request(model, processor, work)
        latencies.append(time.perf_counter() - start)
    return Timing(latencies, time.perf_counter() - wall_start, vector)


# --- batched (GPU) ----------------------------------------------------------------------------------


def prepare(processor: CLIPProcessor, work: Work) -> tuple[float, torch.Tensor | None, list[list[int]]]:
    """In a pool thread: decode and preprocess one request; token ids unpadded (padded per batch)."""
    start = time.perf_counter()
    images = [Image.open(io.BytesIO(data)).convert("RGB") for data in work.jpegs]
    pixels = processor.image_processor(images=images, return_tensors="pt")["pixel_values"] if images else None
    tokens = processor.tokenizer(work.captions, truncation=True)["input_ids"] if work.captions else []
    return start, pixels, tokens


def forward_group(model: CLIPModel, processor: CLIPProcessor,
                  group: list[tuple[float, torch.Tensor | None, list[list[int]]]]) -> np.ndarray:
    """One image and one text forward pass for a group of requests; each request's cosines on the CPU."""
    device, dtype = model.device, model.dtype
    image = text = None
    with torch.inference_mode():
        pixels = [p for _, p, _ in group if p is not None]
        if pixels:
            image = unit(model.get_image_features(pixel_values=torch.cat(pixels).to(device, dtype)))
        tokens = [ids for _, _, request in group for ids in request]
        if tokens:
            padded = processor.tokenizer.pad({"input_ids": tokens}, return_tensors="pt").to(device)
            text = unit(model.get_text_features(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]))
    if image is not None and text is not None:
        n_images, n_texts = len(image) // len(group), len(text) // len(group)
        for i in range(len(group)):  # per request, as the service scores each request's own pairs
            (image[i * n_images:(i + 1) * n_images] @ text[i * n_texts:(i + 1) * n_texts].T).tolist()
    return first_vector(image, text)


def run_batched(model: CLIPModel, processor: CLIPProcessor, work: Work, requests: int, warmup: int,
                batch_rows: int, threads: int) -> Timing:
    """Latency per request: from the start of its preprocessing to its group's vectors on the CPU."""
    per_group = max(1, batch_rows // work.rows)
    with ThreadPoolExecutor(threads, thread_name_prefix="prepare") as pool:

        def measure(n: int) -> Timing:
            futures = (pool.submit(prepare, processor, work) for _ in range(n))
            window = deque(itertools.islice(futures, 3 * per_group))  # preprocessing runs ahead of the GPU
            latencies, vector = [], None
            wall_start = time.perf_counter()
            while window:
                group = [window.popleft().result() for _ in range(min(per_group, len(window)))]
                window.extend(itertools.islice(futures, len(group)))
                found = forward_group(model, processor, group)
                vector = found if vector is None else vector
                done = time.perf_counter()
                latencies += [done - start for start, _, _ in group]
            return Timing(latencies, time.perf_counter() - wall_start, vector)

        if warmup:
            measure(warmup * per_group)
        return measure(requests)


def forward_only(model: CLIPModel, processor: CLIPProcessor, work: Work, batch_rows: int,
                 repeats: int = 20) -> dict[str, float]:
    """The GPU's ceiling: forward passes of `batch_rows` rows already on the device, per second."""
    _, pixels, tokens = prepare(processor, work)
    rates = {}
    with torch.inference_mode():
        if pixels is not None:
            batch = pixels[torch.arange(batch_rows) % len(pixels)].to(model.device, model.dtype)
            rates["images_per_s"] = batch_rows / _timed(lambda: model.get_image_features(pixel_values=batch), repeats)
        if tokens:
            padded = processor.tokenizer.pad({"input_ids": [tokens[i % len(tokens)] for i in range(batch_rows)]},
                                             return_tensors="pt").to(model.device)
            rates["texts_per_s"] = batch_rows / _timed(lambda: model.get_text_features(**padded), repeats)
    return {key: round(value, 1) for key, value in rates.items()}


def _timed(run: Any, repeats: int) -> float:
    """Median seconds per call, synchronising the GPU around each."""
    run()
    seconds = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        run()
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    return float(np.median(seconds))
