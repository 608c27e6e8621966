"""Smoke tests of the precision, labels, serialisation, validation, soak and roofline benchmarks: each runs end to
end (on the tiny stand-in where it needs a model) and prints its table; their timings are never checked (the
machines are noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_precision_reports_every_format(model_dir):
    out = run("precision.py", "--model-dir", str(model_dir), "--images", "1", "--texts", "1", "--threads", "1")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == [
        "fp32", "fp32-packed", "bf16", "bf16-packed", "int8", "openvino-fp32", "openvino-bf16", "openvino-int8"]
    assert "1.000000 / 1.000000" in rows[0]


def test_labels_reports_the_ratio_and_text_throughput(model_dir):
    out = run("labels.py", "--model-dir", str(model_dir), "--labels", "4", "--requests", "2", "--clients", "2")
    assert "seen/new" in out and "texts/s" in out


def test_serialize_reports_both_writers():
    out = run("serialize.py", "--rows", "4", "--dim", "8", "--repeat", "3")
    assert "json.dumps(tolist())" in out and "orjson" in out


def test_validate_reports_each_body():
    out = run("validate.py", "--repeat", "1", "--number", "1")
    assert [line.split(" median")[0].strip() for line in out.splitlines()] == [
        "/encode, 64 texts", "/v1/embeddings, 64 texts", "Truss, 224x224x3 pixels"]


def test_text_shapes_reports_each_format(model_dir):
    out = run("text_shapes.py", "--model-dir", str(model_dir), "--passes", "3", "--threads", "1")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0].strip("| ") for row in rows] == ["bf16", "bf16-packed", "fp32-packed", "int8"]


def test_soak_samples_every_worker_over_time(model_dir, tmp_path):
    out = run("soak.py", "--model-dir", str(model_dir), "--minutes", "0.1", "--interval", "2", "--pool", "4",
              "--image-size", "320x240", "--json", str(tmp_path / "soak.json"))
    report = json.loads((tmp_path / "soak.json").read_text())
    assert report["settings"]["CLIP_MAX_REQUESTS"] == "0" and not report["failures"]
    assert set(report["answered"]) == {"clip", "encode", "rank", "vectorize", "embeddings", "post", "truss"}
    assert len(report["samples"]) >= 3 and len(report["summary"]) == 2
    assert "plateau" in out and "requests/s" in out


# Issue 31's rows, and the service's own in both engines.
ROOFLINE_ENGINES = ["transformers fp32", "transformers bf16", "clipsvc openvino bf16", "clipsvc openvino int8",
                    "clipsvc openvino fp32", "clipsvc torch bf16", "clipsvc torch int8", "clipsvc torch fp32",
                    "ONNX Runtime fp32", "ONNX Runtime int8 dynamic", "OpenVINO f32", "OpenVINO bf16",
                    "OpenVINO bf16 + int8 weights"]


def test_roofline_reports_every_engine_beside_the_floor(model_dir, tmp_path):
    out = run("roofline.py", "--model-dir", str(model_dir), "--rounds", "1", "--batches", "1", "--json",
              str(tmp_path / "roofline.json"))
    report = json.loads((tmp_path / "roofline.json").read_text())
    labels = ROOFLINE_ENGINES
    assert set(report["towers"]) == {"image", "text"}
    assert "reference matmul 2056x1024 by 1024x4096" in out
    for tower in ("image", "text"):
        table = out.split(f"## {tower} tower")[1].split("## ")[0]
        rows = {line.split(" | ")[0].strip("| ").split(" (")[0]: [cell.strip(" |") for cell in line.split(" | ")]
                for line in table.splitlines() if line.startswith("| ") and "---" not in line}
        for fmt in ("fp32", "bf16", "int8"):  # the roofline: GFLOP/s and floor ms per item
            assert float(rows[fmt][1]) > 0 and float(rows[fmt][2]) > 0
        assert "transformers fp32" in rows
        for label in labels:
            assert label in rows or f"skipped: {label}:" in out, label
            if label in rows:
                assert rows[label][3].endswith("%") and float(rows[label][3].rstrip("%")) >= 0  # efficiency
                assert 0.9 < float(rows[label][4]) <= 1.000001  # worst cosine against transformers fp32


def test_int8_groups_times_each_group_size_against_fp32(model_dir):
    out = run("int8_groups.py", "--model-dir", str(model_dir), "--threads", "1", "--groups", "0,1024,16",
              "--batches", "1,2", "--rounds", "1", "--settle", "0")
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith(("| image |", "| text |"))]
    assert [(row[0], row[1]) for row in rows] == [("| image", "1"), ("| text", "1"), ("| image", "2"), ("| text", "2")]
    for row in rows:  # the tiny stand-in's layers are 32 and 64 wide: 1024 gives 32, 16 stays 16
        assert row[3].endswith("[32]") and row[4].rstrip(" |").endswith("[16]"), row
        assert all(0.99 < float(cell.split("(")[1].split(")")[0]) <= 1.000001 for cell in row[2:]), row


def test_image_padding_times_each_padding_and_keeps_the_vectors(model_dir):
    out = run("image_padding.py", "--model-dir", str(model_dir), "--threads", "1", "--batches", "1,2",
              "--paddings", "0,6", "--formats", "fp32", "--rounds", "1", "--settle", "0")
    rows = [line for line in out.splitlines() if line.startswith("| fp32 |")]
    assert [row.split(" | ")[1] for row in rows] == ["1", "2"]
    assert all(row.count("(1.000000)") + row.count("(0.99999") == 2 for row in rows), rows
