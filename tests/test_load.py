"""Load and soak the real gunicorn server (bench/load.py): every request gets its own answer, no 5xx, no leak."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from conftest import load_bench

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def load():
    yield from load_bench("load")


def fake_response(status: int, request_id: str, body: object, content_type: str = "application/json"):
    """A response as the server could send it, to show the checker catches what it claims to."""
    response = requests.Response()
    response.status_code = status
    response.headers.update({"request_id": request_id, "Content-Type": content_type})
    response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return response


def problems(load, plan, response) -> set[str]:
    """The problem categories the checker finds in `response`, after a good answer set the reference vectors."""
    checker = load.Checker(embedding_dim=2)
    reference = load.plan_request(plan.seq, "t", 50)
    good = {key: [0.6, 0.8] for key in reference.contents}
    good.update({key: 1 for key in reference.keys if key.endswith("score")})
    good.update({key: 1.0 for key in reference.keys if key.endswith("cosine_similarity")})
    checker.check(reference, fake_response(200, reference.request_id, {k: good[k] for k in reference.keys}),
                  load.Result(reference.kind, reference.request_id, 200))
    result = load.Result(plan.kind, plan.request_id, plan.status)
    checker.check(plan, response, result)
    return set(result.problems)


def test_checker_catches_crossed_and_broken_responses(load) -> None:
    """The load test passing means something only if its checker fails on what it is meant to catch."""
    plan = load.plan_request(0, "t", 50)  # pair_jpeg: image-r0 + text-r0
    assert plan.kind == "pair_jpeg" and plan.status == 200
    body = {"image_r0_vector": [0.6, 0.8], "text_r0_vector": [0.6, 0.8],
            "image_vector_r0_similarity_score": 100, "image_vector_r0_cosine_similarity": 1.0}
    assert problems(load, plan, fake_response(200, plan.request_id, body)) == set()
    assert problems(load, plan, fake_response(200, "load-t-7", body)) == {"crossed"}  # another request's id
    other = {key.replace("r0", "r7"): value for key, value in body.items()}
    assert "crossed" in problems(load, plan, fake_response(200, plan.request_id, other))  # another request's keys
    swapped = dict(body, image_r0_vector=[0.8, 0.6])  # another picture's vector under the right key
    assert "crossed" in problems(load, plan, fake_response(200, plan.request_id, swapped))
    assert problems(load, plan, fake_response(200, plan.request_id, b"<html>", "text/html")) == {"non_json"}
    assert problems(load, plan, fake_response(502, plan.request_id, b"Bad Gateway", "text/plain")) == {
        "5xx", "unexpected_status", "non_json"}
    short = dict(body, text_r0_vector=[1.0])
    assert problems(load, plan, fake_response(200, plan.request_id, short)) == {"bad_body"}


def test_load_and_soak_over_real_gunicorn(load, model_dir: Path, tmp_path: Path) -> None:
    """2 workers, 4 clients, 12 s of the valid/invalid mix; RSS measured after the warm-up (WARMUP_PER_WORKER)."""
    report = load.run_load(model_dir, workers=2, clients=4, duration=12, max_requests=20_000,
                           log_path=tmp_path / "server.log")
    print(load.render(report))

    assert report["requests"] > 100 and report["warmup"]["requests"] == 2 * load.WARMUP_PER_WORKER
    # Every request got exactly one response, carrying its own request_id and its own keys and vectors,
    # and the server logged it exactly once with the same status.
    for phase in (report, report["warmup"]):
        assert {name: phase[name] for name in load.CHECKS} == dict.fromkeys(load.CHECKS, 0), report["examples"]
    assert sum(report["status_counts"].values()) == report["requests"]
    assert "None" not in report["status_counts"]
    assert not any(status.startswith("5") for status in report["status_counts"])
    # Each kind of request got exactly the status it should, and every kind of the mix was sent.
    assert set(report["kinds"]) == set(load.KINDS)
    for kind, entry in report["kinds"].items():
        assert entry["statuses"] == {str(entry["expected"]): entry["count"]}, kind
    assert {entry["expected"] for entry in report["kinds"].values()} == {200, 400, 405, 415}
    for group in ("valid", "invalid"):
        latency = report["latency_ms"][group]
        assert 0 < latency["p50"] <= latency["p99"], group
    assert report["throughput_rps"] > 0
    # Memory: the same two workers from start to end, neither grew by 10% or more after the warm-up.
    assert len(report["worker_pids_start"]) == 2 and report["worker_pids_end"] == report["worker_pids_start"]
    assert all(w["growth_pct"] is not None and w["growth_pct"] < 10 for w in report["rss"].values()), report["rss"]
    assert report["server_exit_code"] == 0
    assert report["ok"] and report["failures"] == []
