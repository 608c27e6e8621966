"""The image corpus (testkit.corpus) against real gunicorn: every file gets an answer, and the service stays whole.

Each file must get no 5xx and no reset; a file Pillow reads gets a 200 with the vector of the reference pipeline
(Pillow and transformers' own CLIPProcessor and CLIPModel), any other a 400 naming the image; afterwards no worker
is lost, and every log line is JSON with nothing at error level. Every whole file is sent, and a seeded sample of
the corrupted ones (the same sample in every run).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
import torch
from PIL import Image, ImageOps
from transformers import CLIPModel, CLIPProcessor

from clipsvc.errors import IMAGE_CODES
from clipsvc.parsing.images import ALLOWED_FORMATS, to_rgb
from testkit import corpus
from testkit.server import gunicorn

WHOLE = corpus.whole_files()
CORRUPTED = corpus.sample(corpus.corrupted(WHOLE), 120)
IMAGE_ERRORS = {code.id for code in IMAGE_CODES}


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """A server of its own, so that its log holds this corpus's lines alone."""
    with gunicorn(model_dir, tmp_path_factory.mktemp("corpus") / "server.log") as server:
        server.first_workers = server.worker_pids()
        yield server


@pytest.fixture(scope="module")
def http():
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def reference(model_dir):
    """The vector a user of Pillow and transformers gets by hand, or None where Pillow cannot read the file."""
    model = CLIPModel.from_pretrained(model_dir).eval()
    processor = CLIPProcessor.from_pretrained(model_dir)

    def vector(data: bytes) -> np.ndarray | None:
        try:
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            image.load()
            picture = to_rgb(ImageOps.exif_transpose(image))  # the documented conversion: alpha on white, 16 bits
        except Exception:  # noqa: BLE001 - whatever Pillow raises, it cannot read this file
            return None
        with torch.no_grad():
            features = model.get_image_features(**processor(images=[picture], return_tensors="pt"))
        features = getattr(features, "pooler_output", features)[0].numpy()
        return features / np.linalg.norm(features)
    return vector


def check_file(server, http, reference, item: corpus.CorpusFile) -> None:
    files = {"image-1": (f"{item.name}.bin", item.data, "application/octet-stream")}
    response = http.post(server.url + "/syte_test/clip", files=files, headers={"request_id": "corpus"}, timeout=60)
    assert response.status_code < 500, response.text[:300]
    assert response.headers["Content-Type"].startswith("application/json")
    expected = reference(item.data)
    if expected is None:
        assert response.status_code == 400, f"Pillow cannot read it, yet: {response.text[:200]}"
        error = response.json()["error"]
        assert error["code"] in IMAGE_ERRORS and error["field"] == "image-1", error
    else:
        assert response.status_code == 200, f"Pillow reads it, yet: {response.text[:300]}"
        cosine = float(np.dot(response.json()["image_1_vector"], expected))
        assert cosine > 0.9999, cosine


@pytest.mark.parametrize("item", WHOLE, ids=[f.name for f in WHOLE])
def test_whole_file(server, http, reference, item):
    check_file(server, http, reference, item)


@pytest.mark.parametrize("item", CORRUPTED, ids=[f.name for f in CORRUPTED])
def test_corrupted_file(server, http, reference, item):
    check_file(server, http, reference, item)


def test_the_corpus_covers_what_it_promises():
    names = {f.name for f in WHOLE}
    assert {f"jpeg-exif-orientation-{n}" for n in range(1, 9)} <= names
    assert {"gif-animated", "png-animated", "webp-animated", "tiff-animated", "mpo-animated"} <= names
    assert {"jpeg-photo-4000x3000", "jpeg-panorama-6000x1500", "jpeg2000-photo-2400x1600"} <= names
    assert {"dds-dxgi-93", "dds-pixel-format-flags-8", "dds-fourcc-0", "tiff-compression-50001",
            "tiff-samples-per-pixel-200", "bmp-rle4", "bmp-16bit-555"} <= names
    for fmt in corpus.FORMATS:
        assert any(name.startswith(f"{fmt.lower()}-") for name in names), fmt
    outcomes = [{"cut", "flipped"} & set(f.name.split("-")) for f in CORRUPTED]
    assert {"cut"} in outcomes and {"flipped"} in outcomes


def test_the_server_is_whole_after_the_corpus(server):
    """Runs last in this module: no worker lost, every log line JSON, nothing at error level."""
    assert server.worker_pids() == server.first_workers
    lines = server.log_lines()
    records = [r for r in server.log_records()]
    assert len(records) == len(lines), [line for line in lines if not line.startswith("{")][:5]
    assert not [r for r in records if r["level"] in ("error", "critical")]
    served = [r for r in server.clip_requests() if r["request_id"] == "corpus"]
    assert len(served) >= len(WHOLE) + len(CORRUPTED)
