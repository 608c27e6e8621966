"""Every request costs bounded time and memory: testkit/hostile.py's table (extreme aspect ratios in every format,
pictures at the pixel limit, frame, page and metadata bombs, giant words and long words on every API, JSON that
expands when parsed, the item count at its limit) sent to real gunicorn with one warmed-up worker and every
default. Each must get a 200 or a 4xx within its budget of wall time and peak-RSS growth (VmHWM, reset per case);
bench/cost.py runs the same table, heavy cases included, on ViT-B/32 for docs/reliability.md."""

from __future__ import annotations

import pytest
import requests

from testkit import hostile
from testkit.server import serve

CASES = [case for case in hostile.cases() if not case.heavy]


@pytest.fixture(scope="module")
def worker(model_dir, tmp_path_factory):
    """One worker, so the one measured is the one that answers; its model's seconds an item once warm."""
    with serve(model_dir, tmp_path_factory.mktemp("cost") / "server.log", {"WEB_CONCURRENCY": "1"}) as server:
        (pid,) = server.worker_pids()
        yield server, pid, hostile.warm_up(server.url)


@pytest.fixture(scope="module")
def session():
    with requests.Session() as session:
        yield session


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_each_case_costs_its_budget(worker, session, case):
    server, pid, per_item = worker
    outcome = hostile.run(case, server.url, pid, session)
    assert outcome.status == 200 or (400 <= outcome.status < 500 and outcome.code and "not JSON" not in outcome.code)
    assert hostile.within_budget(outcome, per_item), (outcome, hostile.budget(outcome, per_item))
    assert server.worker_pids() == {pid}  # the worker lives on


def test_the_table_covers_every_api_and_kind():
    names = {case.name for case in hostile.cases()}
    for api in ("multipart", "urlencoded", "encode", "rank", "openai", "jina", "truss"):
        assert {f"text/giant-word/{api}", f"text/long-words/{api}"} <= names
    for api in ("multipart", "encode", "vectorize"):
        assert f"image/png-10Mx1/{api}" in names
    kinds = {name.split("/")[0] for name in names}
    assert kinds == {"image", "frames", "metadata", "text", "json", "items"}
    assert "image/jpeg-65500x1/multipart" in names and "items/at-limit/multipart" in names
