"""`python -m clipsvc.client` against real gunicorn: a nested folder of a few hundred mixed files (broken images
and non-images among them) becomes clip-retrieval's layout; a run interrupted with SIGINT resumes to the same
output; faiss and pyarrow read it back; search finds images by text."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest
import requests
from conftest import image_bytes

from clipsvc.client import cli
from clipsvc.client.index import PROGRESS_FILE, read_index

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("JPEG", "PNG", "GIF", "WEBP")
BROKEN = 10
NOT_IMAGES = 6


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """240 pictures in nested folders, 10 truncated JPEGs, notes, an empty file and hidden files."""
    root = tmp_path_factory.mktemp("photos")
    for i in range(240):
        folder = root / f"{2020 + i % 4}" / f"{i % 12:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        fmt = FORMATS[i % len(FORMATS)]
        (folder / f"img_{i:03d}.{fmt.lower()}").write_bytes(
            image_bytes(fmt, (32 + i % 17, 24 + i % 11), color=(i % 256, (i * 7) % 256, (i * 13) % 256)))
    for i in range(BROKEN):
        (root / "2021" / f"broken_{i}.jpg").write_bytes(image_bytes("JPEG", (64, 48))[:120 + i])
    for i in range(NOT_IMAGES - 1):
        (root / "2022" / f"notes_{i}.txt").write_text("a shopping list, not a picture\n" * (i + 1))
    (root / "2023" / "empty.jpg").write_bytes(b"")
    (root / ".DS_Store").write_bytes(b"\0\1")
    (root / "2020" / ".hidden.jpg").write_bytes(image_bytes())
    return root


def embed(url: str, library: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "clipsvc.client", "embed", str(library), "--url", url, "--out",
                             str(out), "--chunk-size", "40", "--quiet", *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def whole(served, library, tmp_path_factory) -> Path:
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("whole") / "index"
    run = embed(served.url, library, out)
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr
    assert "embedded 240 of 256" in stdout and "unsupported_image: 5" in stdout, stdout
    return out


def test_the_layout_is_clip_retrievals(whole, library):
    assert sorted(p.name for p in (whole / "img_emb").iterdir()) == [f"img_emb_{k}.npy" for k in range(6)]
    chunks = [np.load(whole / "img_emb" / f"img_emb_{k}.npy") for k in range(6)]
    assert [len(c) for c in chunks] == [40] * 6 and chunks[0].dtype == np.float32
    paths = [p for k in range(6) for p in pq.read_table(whole / "metadata" / f"metadata_{k}.parquet")
             .column("image_path").to_pylist()]
    assert len(set(paths)) == 240 and paths == [str(p) for p in cli.image_files(library) if p.name.startswith("img_")]
    assert all(Path(p).is_file() and Path(p).name.startswith("img_") for p in paths)
    progress = json.loads((whole / PROGRESS_FILE).read_text())
    reasons = sorted(s["code"] for s in progress["skipped"])
    assert reasons == ["empty_file"] + ["invalid_image"] * BROKEN + ["unsupported_image"] * (NOT_IMAGES - 1)
    assert progress["finished"]


def test_vectors_equal_encodes(whole, served):
    vectors, paths = read_index(whole)
    for index in (0, 77, 239):
        blob = base64.b64encode(Path(paths[index]).read_bytes()).decode()
        row = requests.post(f"{served.url}/encode?encoding=base64", json=[{"img_blob": blob}], timeout=30).json()[0]
        expected = np.frombuffer(base64.b64decode(row), dtype="<f4")
        assert float(vectors[index] @ expected) > 0.9999


def test_faiss_reads_the_index(whole):
    vectors, _ = read_index(whole)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    _, nearest = index.search(vectors[[5, 100]], 1)
    assert nearest[:, 0].tolist() == [5, 100]


def test_an_interrupted_run_resumes_to_the_same_output(served, library, whole, tmp_path):
    out = tmp_path / "index"
    run = embed(served.url, library, out, "--batch-size", "4", "--concurrency", "1")
    deadline = time.monotonic() + 120
    while not (out / "metadata" / "metadata_1.parquet").exists():
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read() if run.poll() else "too slow"
        time.sleep(0.01)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    progress = json.loads((out / PROGRESS_FILE).read_text())
    assert run.returncode == 130 and "resume" in stderr, stderr
    assert 2 <= progress["chunks"] < 6 and not progress["finished"]

    again = embed(served.url, library, out, "--batch-size", "4", "--concurrency", "1")
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0 and "resuming at" in stderr, stderr
    ours, our_paths = read_index(out)
    theirs, their_paths = read_index(whole)
    assert our_paths == their_paths
    assert ((ours * theirs).sum(axis=1) > 0.9999).all()  # bf16 batches of other sizes may round apart by ~1e-5
    assert json.loads((out / PROGRESS_FILE).read_text())["skipped"] == json.loads((whole / PROGRESS_FILE)
                                                                                   .read_text())["skipped"]


def test_another_folder_is_refused_in_the_same_out(served, whole, tmp_path):
    (tmp_path / "one.png").write_bytes(image_bytes("PNG"))
    run = embed(served.url, tmp_path, whole)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode != 0 and "another run" in stderr


def test_search_prints_the_nearest_images(whole, served, capsys):
    assert cli.main(["search", "a red picture", "--index", str(whole), "--url", served.url, "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(". ")[0] for line in lines] == ["1", "2", "3"]
    cosines = [float(line.split()[1]) for line in lines]
    assert cosines == sorted(cosines, reverse=True) and all(Path(line.split(maxsplit=2)[2]).is_file() for line in lines)


def test_texts_are_embedded_with_their_captions(served, tmp_path):
    captions = tmp_path / "captions.txt"
    captions.write_text("a dog\n\na cat on a sofa\na red car\n")
    assert cli.main(["embed-texts", str(captions), "--url", served.url, "--out", str(tmp_path / "t"),
                     "--quiet"]) == 0
    vectors, names = read_index(tmp_path / "t", "text")
    assert names == ["a dog", "a cat on a sofa", "a red car"] and vectors.shape == (3, 32)


def test_the_console_script_name_is_declared():
    assert 'clipsvc-client = "clipsvc.client.cli:main"' in (ROOT / "pyproject.toml").read_text()
    assert os.access(ROOT / "clipsvc" / "client" / "__main__.py", os.R_OK)


def test_the_readmes_commands_run_as_written(served, tmp_path):
    """README's "Index a folder of photos": its two commands verbatim, against the test server."""
    from testkit.readme import README, run_bash, section_blocks

    [block] = [b for b in section_blocks("## Index a folder of photos", README) if b.language == "bash"]
    photos = tmp_path / "photos" / "2024"
    photos.mkdir(parents=True)
    for i, color in enumerate([(220, 20, 20), (20, 220, 20), (20, 20, 220), (200, 200, 0)]):
        (photos / f"p{i}.jpg").write_bytes(image_bytes("JPEG", (48, 32), color=color))
    (photos / "notes.txt").write_text("not a photo")
    done = run_bash(block.code, served.url, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "embedded 4 of 5" in done.stdout and "unsupported_image: 1" in done.stdout, done.stdout
    ranked = [line for line in done.stdout.splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
    assert len(ranked) == 3 and all("photos/2024/p" in line for line in ranked)
