"""examples/image_search.py, run as a user would: the openai SDK feeding Qdrant's local mode from real gunicorn."""

from __future__ import annotations

import base64
import runpy
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import ROOT, image_bytes

COLOURS = ["red", "green", "blue", "yellow", "white"]


@pytest.fixture
def photos(tmp_path):
    paths = []
    for colour in COLOURS:
        path = tmp_path / f"{colour}.png"
        path.write_bytes(image_bytes("PNG", color=colour))
        paths.append(path)
    return paths


def test_image_search_indexes_images_and_finds_them_by_text(served, photos, capsys):
    example = runpy.run_path(str(ROOT / "examples" / "image_search.py"))
    example["main"]([*map(str, photos), "--url", f"{served.url}/v1", "--query", "a red square", "--limit", "5"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "a red square" and len(lines) == 1 + len(photos)
    found = [(line.split()[1], float(line.split()[0])) for line in lines[1:]]
    assert sorted(path for path, _ in found) == sorted(map(str, photos))
    assert [score for _, score in found] == sorted((score for _, score in found), reverse=True)
    # The stand-in's vectors mean nothing, so check the arithmetic: each score is the cosine /rank computes.
    ranked = requests.post(f"{served.url}/rank", timeout=60, json={
        "queries": [{"text": "a red square"}],
        "candidates": [{"img_blob": base64.b64encode(Path(path).read_bytes()).decode()} for path, _ in found]})
    np.testing.assert_allclose([score for _, score in found], ranked.json()["cosine_similarities"][0], atol=1e-3)
