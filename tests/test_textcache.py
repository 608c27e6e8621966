"""The per-worker text cache (clipsvc.encoder.textcache): exact hits, LRU bounds, counters in /metrics."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from clipsvc.encoder.model import ClipEncoder
from clipsvc.encoder.textcache import TextCache
from clipsvc.settings import METRICS_DIR_ENV, Settings
from clipsvc.web.app import create_app
from testkit.encoding import cpu_encoder, cpu_settings, encode_texts
from testkit.metrics import samples, scrape, value

LABELS = [f"a photo of a {thing}" for thing in ("dog", "cat", "car", "tree")]


@pytest.fixture(scope="module")
def cached(model_dir) -> ClipEncoder:
    return cpu_encoder(model_dir, text_cache_size=3)


def test_lookup_returns_known_vectors_and_the_distinct_rows_to_compute():
    cache, seen = TextCache(10), []
    cache.on_lookup = lambda hits, misses: seen.append((hits, misses))
    cache.store([[1, 2]], [np.ones(4, dtype=np.float32)])
    found, missing = cache.lookup([[1, 2], [3], [3], [1, 2]])
    assert list(found) == [(1, 2)] and missing == [[3]]
    assert seen == [(2, 2)]
    assert not found[(1, 2)].flags.writeable  # shared by requests: nobody may change it


def test_the_least_recently_used_entry_goes_first():
    cache = TextCache(2)
    cache.store([[1], [2]], [np.zeros(2), np.ones(2)])
    cache.lookup([[1]])  # 1 is now the most recent
    cache.store([[3]], [np.full(2, 3.0)])
    assert set(cache.lookup([[1], [2], [3]])[0]) == {(1,), (3,)}


def test_size_zero_keeps_nothing():
    cache = TextCache(0)
    cache.store([[1]], [np.zeros(2)])
    assert len(cache) == 0


def test_a_cached_text_gives_the_identical_vector(cached, encoder):
    fresh = encode_texts(encoder, LABELS[:2])
    first = encode_texts(cached, LABELS[:2])
    again = encode_texts(cached, [LABELS[1], LABELS[0], LABELS[1]])
    assert np.array_equal(first, fresh)
    assert np.array_equal(again, fresh[[1, 0, 1]])


def test_the_cache_holds_at_most_its_size(cached):
    encode_texts(cached, LABELS)
    assert len(cached.text_cache) == 3 and cached.serving.text_cache_size == 3


def test_hits_and_misses_are_counted_in_metrics(model_dir, monkeypatch):
    monkeypatch.delenv(METRICS_DIR_ENV, raising=False)  # this app's own counts, not a directory another test left
    client = create_app(cpu_settings(model_dir), cpu_encoder(model_dir, text_cache_size=100)).test_client()
    rank = {"queries": [{"text": "a dog"}], "candidates": [{"text": label} for label in LABELS]}
    assert client.post("/rank", json=rank).status_code == 200  # 5 misses
    assert client.post("/rank", json=rank).status_code == 200  # 5 hits
    assert client.post("/syte_test/clip", data={"text-1": "a dog", "text-2": "new"}).status_code == 200
    scraped = samples(client.get("/metrics").get_data(as_text=True))
    assert value(scraped, "clipsvc_text_cache_hits_total") == 6
    assert value(scraped, "clipsvc_text_cache_misses_total") == 6


def test_the_served_default_caches_across_requests_and_endpoints(served):
    """Real gunicorn with the default CLIP_TEXT_CACHE_SIZE: a text seen by /encode is a hit on /v1/embeddings."""
    meta = requests.get(f"{served.url}/meta", timeout=30).json()
    assert meta["text_cache_size"] == Settings().text_cache_size > 0
    before = scrape(served)
    label = "a text only this test sends, again and again"
    first = requests.post(f"{served.url}/encode", json=[{"text": label}], timeout=30).json()[0]
    for sent in range(2, 12):  # two workers: sooner or later a request lands on one that has seen the text
        again = requests.post(f"{served.url}/v1/embeddings", json={"input": [label]}, timeout=30).json()
        np.testing.assert_allclose(again["data"][0]["embedding"], first, atol=1e-5)
        after = scrape(served)
        hits = value(after, "clipsvc_text_cache_hits_total") - value(before, "clipsvc_text_cache_hits_total")
        misses = value(after, "clipsvc_text_cache_misses_total") - value(before, "clipsvc_text_cache_misses_total")
        assert hits + misses == sent
        if hits:
            break
    assert hits >= 1 and misses <= 2
