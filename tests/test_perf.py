"""Smoke test of bench/perf.py: one tiny run end to end, checking the report's shape, never its timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_bench

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def perf():
    yield from load_bench("perf")


def positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def test_tiny_run_reports_every_field(perf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Builds the stand-in (in a temp models/), measures both sides, prints and writes the full report."""
    monkeypatch.setattr(perf, "MODELS_ROOT", tmp_path / "models")  # never write into the repo's models/
    out = tmp_path / "perf.json"
    report = perf.main(["--arch", "tiny", "--workers", "1", "--clients", "1,2", "--requests", "4", "--rounds", "2",
                        "--warmup", "1", "--json", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert (tmp_path / "models" / "tiny" / "config.json").exists()
    assert report["arch"] == "tiny" and report["workers"] == 1 and report["clients"] == [1, 2]
    assert report["torch_threads_per_worker"] >= 1 and report["rounds"] == 2
    assert "all" in report["baseline"] and "cores" in report["baseline"]
    runs = report["served"]
    assert [run["clients"] for run in runs] == [1, 2]
    for stats in [report["direct"], *runs]:
        assert stats["requests"] == 4
        for key in ("p50_ms", "p99_ms", "mean_ms", "wall_s", "throughput_rps", "images_per_s"):
            assert positive_number(stats[key]), (key, stats[key])
        assert stats["p99_ms"] >= stats["p50_ms"]
    assert report["direct"]["torch_threads"] >= 1
    for run in runs:
        assert positive_number(run["in_worker_p50_ms"])
        assert sum(run["requests_per_worker"].values()) == 4
        for key in ("p50_latency_served_over_direct", "throughput_served_over_direct"):
            assert positive_number(run["ratios"][key])
    assert report["served_vs_direct_cosine"] > 0.999  # both sides computed the same vectors

    memory = report["memory"]
    assert len(memory["workers"]) == 1
    for worker in memory["workers"]:
        assert positive_number(worker["pid"]) and positive_number(worker["rss_mib"])
        assert positive_number(worker["pss_mib"]) and worker["pss_mib"] <= worker["rss_mib"]
    assert memory["total_worker_pss_mib"] == pytest.approx(sum(w["pss_mib"] for w in memory["workers"]), abs=0.1)
    assert positive_number(memory["master"]["pss_mib"])

    machine = report["machine"]
    assert machine["cpu_model"] and machine["cores"] >= 1 and len(machine["load_avg_before"]) == 3
    assert len(machine["load_avg_after"]) == 3

    printed = capsys.readouterr().out
    for text in ("direct", "served 1 cl.", "served 2 cl.", "p50/direct", "req/s/direct", "PSS", f"wrote {out}"):
        assert text in printed


def test_refuses_more_images_than_the_service_accepts(perf) -> None:
    """64 images plus the caption would be a 400 from the service, not a measurement."""
    with pytest.raises(SystemExit) as exited:
        perf.main(["--arch", "tiny", "--images", "64"])
    assert exited.value.code == 2
