"""The inference thread and dynamic batching, tested on the CPU: ordering, kinds, isolation, errors, timeouts."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from conftest import image_bytes
from PIL import Image

from clipsvc.encoder.batching import Batcher, BatchTimeout, WorkerAborted, batch_plan
from clipsvc.settings import Settings
from testkit.encoding import cpu_encoder, encode_images, encode_texts
from testkit.server import gunicorn


def double(rows):
    return [row * 2 for row in rows]


class Doubling:
    """A runner that doubles its rows and remembers the size of every batch it was given."""

    def __init__(self):
        self.sizes = []

    def __call__(self, rows):
        self.sizes.append(len(rows))
        return double(rows)


def submit(batcher, kind, rows, timeout=None):
    """What a request thread does (ClipEncoder._begin): queue the rows, then wait for their results."""
    return batcher.wait(batcher.start(kind, rows), timeout)


def test_each_caller_gets_its_own_rows_in_order():
    runner = Doubling()
    batcher = Batcher({"x": runner}, max_batch=16, max_wait_ms=20)

    def call(i):
        rows = list(range(i * 100, i * 100 + 1 + i % 4))
        return rows, submit(batcher, "x", rows)

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, range(48)))
    for rows, out in results:
        assert out == [r * 2 for r in rows]
    assert max(runner.sizes) > 4  # callers really were batched together (one caller has at most 4 rows)
    assert sum(runner.sizes) == sum(len(rows) for rows, _ in results)


def test_batches_respect_the_limit():
    runner = Doubling()
    b = Batcher({"x": runner}, max_batch=4, max_wait_ms=50)
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(lambda i: submit(b, "x", [i]), range(40)))
    assert max(runner.sizes) <= 4


def test_one_callers_error_does_not_fail_the_others():
    def picky(rows):
        if any(r < 0 for r in rows):
            raise ValueError("negative row")
        return double(rows)

    b = Batcher({"x": picky}, max_batch=64, max_wait_ms=50)
    barrier = threading.Barrier(6)

    def call(i):
        barrier.wait()
        try:
            return submit(b, "x", [-1] if i == 3 else [i])
        except ValueError as exc:
            return exc

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(call, range(6)))
    assert isinstance(results[3], ValueError)
    assert [results[i] for i in (0, 1, 2, 4, 5)] == [[0], [2], [4], [8], [10]]


def test_a_caller_that_waits_too_long_gets_a_timeout_and_its_rows_are_dropped():
    seen = []

    def slow(rows):
        seen.extend(rows)
        time.sleep(0.3)
        return rows

    b = Batcher({"x": slow}, max_batch=1, max_wait_ms=0)
    first = threading.Thread(target=submit, args=(b, "x", ["first"]))
    first.start()
    time.sleep(0.05)
    with pytest.raises(BatchTimeout):
        submit(b, "x", ["late"], timeout=0.05)
    first.join()
    assert submit(b, "x", ["after"], timeout=5) == ["after"]
    assert "late" not in seen


def test_each_batch_is_logged_at_debug_level(caplog):
    """bench/perf.py reads these lines to see how full the batches were and how long they took."""
    batcher = Batcher({"x": double}, max_batch=16, max_wait_ms=20)
    with caplog.at_level("DEBUG", logger="clipsvc.encoder.batching"):
        assert submit(batcher, "x", [1, 2, 3]) == [2, 4, 6]
    (record,) = [r for r in caplog.records if getattr(r, "event", None) == "batch"]
    assert (record.batcher, record.kind, record.rows, record.callers) == ("clip-inference", "x", 3, 1)
    assert record.wait_ms >= 0 and record.run_ms >= 0


def test_merged_batches_give_each_request_its_own_vectors(model_dir, encoder):
    batched = cpu_encoder(model_dir, batching="on", max_batch=8, batch_wait_ms=200, text_cache_size=0)
    passes = []
    batched.on_forward = lambda kind, rows: passes.append(rows)
    images = [Image.new("RGB", (50 + i, 40), (i * 20, 100, 200 - i * 20)) for i in range(6)]
    texts = ["a cat", "a much longer caption about a dog on a sofa", "x"]

    def call(i):
        return encode_images(batched, images[i:i + 2]), encode_texts(batched, texts[i % 3:])

    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(call, range(5)))
    for i, (img, txt) in enumerate(results):
        np.testing.assert_allclose(img, encode_images(encoder, images[i:i + 2]), atol=1e-5)
        np.testing.assert_allclose(txt, encode_texts(encoder, texts[i % 3:]), atol=1e-5)
    assert batched.serving.batching and max(passes) > 3  # one call has at most 3 rows: several were merged


def test_many_texts_go_through_a_cpu_in_passes_of_32(model_dir, encoder):
    """A CPU engine keeps the buffers of its largest pass: 70 texts are 3 passes, each text's own vector."""
    chunked = cpu_encoder(model_dir, text_cache_size=0)
    passes = []
    chunked.on_forward = lambda kind, rows: passes.append((kind, rows))
    texts = [f"caption number {i} " + "word " * (i % 9) for i in range(70)]
    vectors = encode_texts(chunked, texts)
    assert passes == [("text", 32), ("text", 32), ("text", 6)]
    for i in (0, 33, 69):
        np.testing.assert_allclose(vectors[i], encode_texts(encoder, texts[i:i + 1])[0], atol=1e-5)


def test_batching_on_the_cpu_captures_no_cuda_graphs(encoder):
    """The shared encoder batches (CLIP_BATCHING=auto) on the CPU: eager passes, IMAGE_BATCH images each."""
    assert encoder.serving.batching and encoder._image_graphs is None and encoder.chunk == 8
    image = Image.new("RGB", (60, 40), (10, 200, 30))
    assert encode_images(encoder, [image]).shape == (1, encoder.facts.embedding_dim)


@pytest.mark.parametrize("changes, merge, wait_ms", [
    ({}, True, 0.0),  # CLIP_BATCHING=auto on a CPU: merges what waits, holds nothing back
    ({"batching": "on", "batch_wait_ms": 7}, True, 7.0),
    ({"batching": "off"}, False, 0.0),
])
def test_the_inference_thread_follows_the_batch_plan(model_dir, changes, merge, wait_ms):
    built = cpu_encoder(model_dir, **changes)
    assert (built.batcher.merge, built.batcher.max_wait, built.serving.batching) == (merge, wait_ms / 1000, merge)
    assert encode_texts(built, ["a cat"]).shape == (1, built.facts.embedding_dim)


@pytest.mark.parametrize("env, device, expected", [
    ({}, "cpu", (True, 0.0)),  # the default: merge what is already waiting, never hold a request back
    ({}, "cuda", (True, 5.0)),  # a GPU also waits a little for a fuller batch
    ({"CLIP_BATCHING": "on", "CLIP_BATCH_WAIT_MS": "2"}, "cpu", (True, 2.0)),
    ({"CLIP_BATCHING": "off"}, "cuda", (False, 0.0)),
    ({"CLIP_BATCHING": "auto", "CLIP_BATCH_WAIT_MS": "9"}, "cuda", (True, 9.0)),
])
def test_batch_plan(env, device, expected):
    settings = Settings.from_env(env)
    assert batch_plan(settings, device) == expected
    assert settings.request_threads == 8  # every worker is threaded, batching or not


def test_kinds_never_share_a_batch_and_each_caller_gets_its_kind():
    seen = []

    def run(kind):
        def rows_of(rows):
            seen.append((kind, list(rows)))
            return [f"{kind}:{r}" for r in rows]
        return rows_of

    b = Batcher({"image": run("image"), "text": run("text")}, max_batch=64, max_wait_ms=30)
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda i: submit(b, "image" if i % 2 else "text", [i]), range(24)))
    assert out == [[f"{'image' if i % 2 else 'text'}:{i}"] for i in range(24)]
    for kind, rows in seen:
        assert all((r % 2 == 1) == (kind == "image") for r in rows)
    assert max(len(rows) for _, rows in seen) > 1


def test_without_merging_each_callers_rows_run_alone_one_pass_at_a_time():
    """The CPU default: one inference thread, but a request's rows are never held back for another's."""
    running, overlaps, sizes = [0], [], []

    def run(rows):
        sizes.append(len(rows))
        running[0] += 1
        overlaps.append(running[0])
        time.sleep(0.005)
        running[0] -= 1
        return double(rows)

    b = Batcher({"x": run}, max_batch=64, max_wait_ms=50, merge=False)
    with ThreadPoolExecutor(8) as pool:
        out = list(pool.map(lambda i: submit(b, "x", [i, i]), range(16)))
    assert out == [[2 * i, 2 * i] for i in range(16)]
    assert sizes == [2] * 16 and max(overlaps) == 1


def test_busy_for_and_abort_answer_waiting_callers():
    """The worker's watchdog reads busy_for; gunicorn's abort hook fails every waiting caller at once."""
    release = threading.Event()
    b = Batcher({"x": lambda rows: release.wait(10) and double(rows)}, max_batch=1, max_wait_ms=0)
    assert b.busy_for() == 0
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(submit, b, "x", [i], 10) for i in range(3)]
        time.sleep(0.2)
        assert b.busy_for() >= 0.1
        b.abort()
        for future in futures:
            with pytest.raises(WorkerAborted):
                future.result(timeout=2)
    release.set()


def test_gunicorn_gthread_workers_batch_concurrent_requests(model_dir, tmp_path):
    with gunicorn(model_dir, tmp_path / "log", CLIP_BATCHING="on", CLIP_THREADS="4", WEB_CONCURRENCY="1",
                  CLIP_BATCH_WAIT_MS="20") as server:
        def call(i):
            files = {f"image-{i}": ("x.png", image_bytes("PNG", color=(i * 10, 0, 0)), "image/png"),
                     f"text-{i}": (None, f"caption {i}")}
            return i, requests.post(server.url + "/syte_test/clip", files=files, headers={"request_id": str(i)},
                                    timeout=30)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(call, range(16)))
        records = server.log_records()
    for i, response in results:
        assert response.status_code == 200 and response.headers["request_id"] == str(i)
        assert f"image_vector_{i}_similarity_score" in response.json()
    loaded = [r for r in records if r.get("event") == "model_loaded"]
    assert loaded and loaded[0]["batching"] is True
    assert any("ClipWorker" in r["message"] for r in records)
