"""Embed a parsed request and score its image-text pairs: the encoder's output, before any JSON."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..encoder.model import ClipEncoder
from ..parsing.items import ImageItem, ParsedRequest, TextItem

# CLIPScore (Hessel et al., 2021, arXiv:2104.08718): w * max(cos, 0) with w = 2.5, here on 0-100.
CLIPSCORE_WEIGHT = 2.5


@dataclass(frozen=True)
class PairScore:
    id: str
    cosine: float
    score: int


@dataclass(frozen=True)
class Embeddings:
    """Unit vectors by item id, and a score for every id sent both as image and text."""

    images: dict[str, np.ndarray]
    texts: dict[str, np.ndarray]
    pairs: list[PairScore]
    order: list[str]


def clip_score(cosine: float) -> int:
    """0-100: a cosine of 0.4 or more (a strong match for CLIP) scores 100, 0 or less scores 0."""
    return int(round(100 * min(max(CLIPSCORE_WEIGHT * cosine, 0.0), 1.0)))


@dataclass(frozen=True)
class ItemVectors:
    """Unit vectors in item order, and the CLIP tokens the model read of the texts among them, in all."""

    rows: np.ndarray
    text_tokens: int


def embed_items(encoder: ClipEncoder, items: list[ImageItem | TextItem]) -> ItemVectors:
    """One forward call for all images and one for all texts (the texts first)."""
    images = [i for i, item in enumerate(items) if isinstance(item, ImageItem)]
    texts = [i for i, item in enumerate(items) if isinstance(item, TextItem)]
    rows = np.empty((len(items), encoder.facts.embedding_dim), dtype=np.float32)
    encoded = encoder.encode([items[i].image for i in images], [items[i].text for i in texts])
    rows[images], rows[texts] = encoded.images, encoded.texts
    return ItemVectors(rows, sum(encoded.text_tokens))


def rank(queries: np.ndarray, candidates: np.ndarray, logit_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Per query: softmax over candidates of the model's scaled logits (CLIP's own zero-shot rule), and cosines."""
    cosines = queries @ candidates.T
    logits = logit_scale * cosines
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True), cosines


def embed(encoder: ClipEncoder, parsed: ParsedRequest) -> Embeddings:
    rows = embed_items(encoder, parsed.images + parsed.texts).rows
    images = {item.id: row for item, row in zip(parsed.images, rows[:len(parsed.images)], strict=True)}
    texts = {item.id: row for item, row in zip(parsed.texts, rows[len(parsed.images):], strict=True)}
    pairs = []
    for item_id in parsed.pair_ids:
        cosine = float(np.dot(images[item_id], texts[item_id]))
        pairs.append(PairScore(item_id, cosine, clip_score(cosine)))
    return Embeddings(images, texts, pairs, parsed.ids)
