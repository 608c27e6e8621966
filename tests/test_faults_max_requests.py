"""max_requests with jitter, against real gunicorn: workers are recycled and no request is dropped."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import requests

from testkit.faults import clip_files, report, wait_for
from testkit.server import TEST_WORKERS as WORKERS
from testkit.server import gunicorn


def test_max_requests_recycles_workers_without_dropping_a_request(model_dir, tmp_path, record_property):
    """Recycling bounds leaks in native code; it must never cost a client a request."""
    max_requests, jitter, total = 15, 5, 80
    with gunicorn(model_dir, tmp_path / "server.log", CLIP_MAX_REQUESTS=str(max_requests),
                  CLIP_MAX_REQUESTS_JITTER=str(jitter)) as server:
        started = time.monotonic()
        with ThreadPoolExecutor(3) as pool:
            statuses = list(pool.map(lambda i: requests.post(server.url + "/syte_test/clip", files=clip_files(i),
                                                             timeout=30).status_code, range(total)))
        elapsed = time.monotonic() - started
        # A set: two request threads of one worker can both reach the limit and both log the line.
        recycled = {r["pid"] for r in server.log_records()
                    if r["message"] == "Autorestarting worker after current request."}
        # Each recycled worker is replaced by one that loads the model again.
        wait_for(lambda: len(server.loaded_pids()) >= WORKERS + len(recycled), 20, "the replacements' model_loaded")
        server.wait_loaded()

    served = {}
    for r in server.clip_requests():
        served[r["worker_pid"]] = max(served.get(r["worker_pid"], 0), r["counters"]["requests"])
    report(record_property, "max_requests", requests=total, statuses=sorted(set(statuses)), seconds=round(elapsed, 2),
           recycled=len(recycled), model_loaded_lines=len(server.loaded_pids()), serving_workers=len(served),
           requests_per_worker=sorted(served.values()))
    assert statuses == [200] * total
    # 81 requests (with wait_ready's probe) at most 20 per worker life means at least 5 lives: 3 recycles at least.
    assert len(recycled) >= 3
    assert len(served) >= 3
    # A threaded worker finishes the requests it already holds after its last one: with 3 clients, 2 more at most.
    held = 2
    assert max(served.values()) <= max_requests + jitter + held
    assert all(max_requests <= served.get(pid, max_requests) <= max_requests + jitter + held for pid in recycled)
