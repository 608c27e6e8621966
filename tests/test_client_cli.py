"""`python -m clipsvc.client` against real gunicorn: a nested folder of a few hundred mixed files (broken images
and non-images among them) becomes clip-retrieval's layout; a run interrupted with SIGINT resumes to the same
output; faiss and pyarrow read it back; search finds images by text. A file the server fails on is skipped; a
server that breaks mid-run stops it with the resume hint and the rerun resumes; wrong arguments and an address
with no server get one line and exit 2 or 1, never a traceback."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
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
from test_client import Faulty, closed_port, faulty_proxy

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
    shutil.copy(ROOT / "requirements-client.txt", tmp_path)  # the block runs in a clone: pip finds it there
    done = run_bash(block.code, served.url, cwd=tmp_path, env={"PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "embedded 4 of 5" in done.stdout and "unsupported_image: 1" in done.stdout, done.stdout
    ranked = [line for line in done.stdout.splitlines() if line[:3] in ("1. ", "2. ", "3. ")]
    assert len(ranked) == 3 and all("photos/2024/p" in line for line in ranked)


@pytest.fixture
def faulty(served):
    with faulty_proxy(served.url) as url:
        yield url


def pictures(folder: Path, count: int) -> list[Path]:
    """`count` small JPEGs of different colours in `folder`, sorted as embed walks them."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"p{i:02d}.jpg" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_bytes(image_bytes("JPEG", (40, 30), color=(i * 9 % 256, 255 - i * 9 % 256, 90)))
    return paths


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """cli.main in this process: the exit status (argparse's own included), stdout and stderr."""
    try:
        status = cli.main([str(arg) for arg in argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def test_a_file_the_server_fails_on_is_skipped_and_the_run_goes_on(faulty, tmp_path, capsys):
    """Issue 28: one file that got a 500 stopped the whole folder, and every rerun the same way."""
    paths = pictures(tmp_path / "photos", 6)
    Faulty.poison = {base64.b64encode(paths[2].read_bytes()).decode()}
    status, out, err = run_cli(capsys, "embed", tmp_path / "photos", "--url", faulty, "--out", tmp_path / "index",
                               "--quiet", "--batch-size", "4")
    assert status == 0 and "embedded 5 of 6" in out and "internal_server_error: 1" in out, out + err
    assert f"skipped {paths[2]}: internal_server_error: 500 for this item alone" in err
    _, names = read_index(tmp_path / "index")
    assert names == [str(p) for i, p in enumerate(paths) if i != 2]
    assert run_cli(capsys, "embed", tmp_path / "photos", "--url", faulty, "--out", tmp_path / "index",
                   "--quiet")[0] == 0  # the rerun is no longer refused


def test_a_server_that_breaks_stops_the_run_and_the_rerun_resumes(faulty, tmp_path, capsys):
    paths = pictures(tmp_path / "photos", 20)
    args = ("embed", tmp_path / "photos", "--url", faulty, "--out", tmp_path / "index", "--quiet",
            "--batch-size", "4", "--chunk-size", "4", "--concurrency", "1")
    Faulty.works_for = 3  # then every POST, the probe's too, gets a 500
    status, _, err = run_cli(capsys, *args)
    assert status == 1 and len(err.splitlines()) == 1, err
    assert "fails every request" in err and "run the same command again to resume (12 input(s) done" in err
    assert json.loads((tmp_path / "index" / PROGRESS_FILE).read_text())["chunks"] == 3

    Faulty.works_for = None
    status, out, err = run_cli(capsys, *args)
    assert status == 0 and "resuming at 12 of 20" in err and "embedded 20 of 20" in out, out + err
    assert read_index(tmp_path / "index")[1] == [str(p) for p in paths]


@pytest.fixture
def places(tmp_path) -> dict[str, Path]:
    """What the usage cases name: a folder of one photo, a plain file, an empty folder, someone else's folder."""
    pictures(tmp_path / "photos", 1)
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "others").mkdir()
    (tmp_path / "others" / "taxes.pdf").write_bytes(b"%PDF")
    (tmp_path / "latin1").write_bytes("caf\xe9 au lait".encode("latin-1"))
    return {name: tmp_path / name for name in ("photos", "afile", "empty", "others", "latin1", "new", "gone")}


# (argv with {place} names; the exit status; what stderr says). URL is refused: no case may need the server.
USAGE = [
    ("embed {gone} --out {new}", 2, "gone: no such folder or file"),
    ("embed {photos} --out {afile}", 2, "afile is a file: name a folder"),
    ("embed {photos} --out {photos}", 2, "the photo folder itself"),
    ("embed {photos} --out {others}", 2, "holds other files (taxes.pdf): name a new or empty folder"),
    ("embed {empty} --out {new}", 2, "holds no files"),
    ("embed {photos} --out {new} --url 127.0.0.1:8081", 2, "write e.g. http://127.0.0.1:8081"),
    ("embed {photos} --out {new} --url http://127.0.0.1:99999", 2, "the port is not a number"),
    ("embed {photos} --out {new} --chunk-size 0", 2, "'0' is not a whole number of 1 or more"),
    ("embed-texts {photos} --out {new}", 2, "cannot read"),
    ("embed-texts {latin1} --out {new}", 2, "is not UTF-8 text"),
    ("search cat --index {gone}", 2, "--index {gone}: no such folder"),
    ("search cat --index {others}", 2, "is {others} an index written by embed?"),
    ("embed {photos} --out {new}", 1, "connection refused; is the server running there? Start it, or give its "
                                      "address with --url or $CLIPSVC_URL"),
    ("search cat --index {photos}/../new", 2, "no such folder"),
]


@pytest.mark.parametrize("argv, status, says", USAGE, ids=[argv for argv, _, _ in USAGE])
def test_mistakes_get_one_line_that_says_what_to_do(places, capsys, argv, status, says):
    url = f"http://127.0.0.1:{closed_port()}"
    words = [word.format(**places) for word in argv.split()]
    started = time.monotonic()
    code, out, err = run_cli(capsys, *words, *([] if "--url" in words else ["--url", url]))
    assert code == status and says.format(**places) in err and not out, err
    assert len(err.splitlines()) == 1 or err.startswith("usage:"), err  # argparse's own: usage, then the error
    assert not places["new"].exists()  # nothing is written before the arguments and the server are checked
    assert time.monotonic() - started < 3  # a refused connection: about 1.5 s, not 16 s of silence


def test_a_host_name_that_does_not_resolve_fails_at_once(places, capsys, monkeypatch):
    def unknown(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)  # no DNS query leaves the machine
    status, _, err = run_cli(capsys, "embed", places["photos"], "--out", places["new"], "--url",
                             "http://clipsvc.invalid:8081")
    assert status == 1 and "'clipsvc.invalid' does not resolve; check the host name in --url" in err


def test_one_image_is_indexed_alone_and_found(served, tmp_path, capsys):
    [photo] = pictures(tmp_path / "photos", 1)
    status, out, _ = run_cli(capsys, "embed", photo, "--url", served.url, "--out", tmp_path / "one", "--quiet")
    assert status == 0 and "embedded 1 of 1" in out
    status, out, _ = run_cli(capsys, "search", "a photo", "--index", tmp_path / "one", "--url", served.url)
    assert status == 0 and out.startswith("1. ") and out.rstrip().endswith(str(photo))


def test_an_out_inside_the_folder_is_not_an_input(served, tmp_path, capsys):
    """Issue 28: its own files became inputs, and the next run was refused as another run."""
    paths = pictures(tmp_path / "photos", 3)
    args = ("embed", tmp_path / "photos", "--url", served.url, "--out", tmp_path / "photos" / "index", "--quiet")
    for _ in range(2):
        status, out, err = run_cli(capsys, *args)
        assert status == 0 and "embedded 3 of 3" in out, out + err
    assert read_index(tmp_path / "photos" / "index")[1] == [str(p) for p in paths]


def test_an_index_of_no_vectors_says_so(served, tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "list.txt").write_text("milk, eggs")
    status, out, _ = run_cli(capsys, "embed", tmp_path / "notes", "--url", served.url, "--out", tmp_path / "i",
                             "--quiet")
    assert status == 0 and "embedded 0 of 1" in out
    status, _, err = run_cli(capsys, "search", "milk", "--index", tmp_path / "i", "--url", served.url)
    assert status == 2 and "holds no vectors yet" in err
