"""The examples, run as a user would: examples/image_search.py (the openai SDK feeding Qdrant's local mode from real
gunicorn), and every example in the README and docs/ that shows its output, whose output must be what it prints."""

from __future__ import annotations

import base64
import re
import runpy
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import ROOT, image_bytes

from testkit.readme import API, ARCHITECTURE, GUIDES, README, Block, blocks, check_output, examples, run

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


# --- Every example in the guides that shows its output, run against real gunicorn ---------------------------------

SEED_IMAGE = "Firefly man staring at the moon, moon is made of mechanical parts 74156.jpg"
# The files the guides' examples read from the current folder.
IMAGE_FILES = {"photo.jpg": "JPEG", "dog.jpg": "JPEG", "cat.jpg": "JPEG", "image.jpg": "JPEG", SEED_IMAGE: "JPEG",
               "apple.png": "PNG"}
# The quickstart's run by tests/test_readme_quickstart.py on its own server, as written.
EXAMPLES = [example for guide in GUIDES for example in examples(guide) if example.command.heading != "## Quickstart"]


@pytest.fixture
def image_folder(tmp_path):
    for name, kind in IMAGE_FILES.items():
        (tmp_path / name).write_bytes(image_bytes(kind))
    return tmp_path


def test_the_guides_show_outputs():
    assert {example.document for example in EXAMPLES} == {README, API}
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.name)
def test_each_shown_output_is_what_the_command_prints(served, image_folder, example):
    """The command, as written but for the server's address, prints what the guide shows: the same keys, types and
    headers; the tests' tiny stand-in gives shorter vectors and other numbers, which `...` and the shapes allow."""
    done = run(example, served.url, image_folder)
    assert done.returncode == 0, done.stderr[-2000:]
    check_output(example.shown, done.stdout)


@pytest.mark.parametrize("guide", [*GUIDES, ARCHITECTURE], ids=lambda path: path.name)
def test_no_command_block_shows_its_output_in_comments(guide):
    """Outputs go in their own block after the command, where a test compares them (not `# {...}` in the command's
    block, nor `//` comments in JSON, which no command prints)."""
    for block, _ in blocks(guide):
        if block.language == "bash":
            assert not re.search(r"^\s*# *[\[{]", block.code, flags=re.MULTILINE), f"{guide.name}:{block.line}"
        if block.language == "json":
            assert "//" not in block.code.replace("://", ""), f"{guide.name}:{block.line}"


def test_the_requests_example_posts_the_multipart_form(served, image_folder):
    """The README's `requests` example sends what the quickstart's curl sends, and gets the same keys back."""
    (example,) = [example for example in examples(README) if example.command.language == "python"]
    assert 'files={"image-1": image}' in example.command.code and '"text-1":' in example.command.code
    done = run(example, served.url, image_folder)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0] == str(["image_1_vector", "text_1_vector", "image_vector_1_similarity_score",
                                                "image_vector_1_cosine_similarity"])


def requirement_pins(path: Path) -> dict[str, str]:
    """name -> version of a requirements file's `name==version` lines, and of the files it includes with -r."""
    pins: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(requirement_pins(path.parent / line[3:].strip()))
        elif "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_the_examples_requirements_are_the_tested_versions():
    """requirements-examples.txt pins what the Python examples import, at the versions the tests run them with."""
    examples_pins = requirement_pins(ROOT / "requirements-examples.txt")
    dev_pins = requirement_pins(ROOT / "requirements-dev.txt")
    assert {"requests", "numpy", "openai", "qdrant-client"} <= set(examples_pins)
    assert {name: dev_pins.get(name) for name in examples_pins} == examples_pins
    assert "pip install -r requirements-examples.txt" in README.read_text()
    assert "pip install -r requirements-examples.txt" in (ROOT / "examples" / "image_search.py").read_text()


@pytest.mark.parametrize("shown, printed, fault", [
    ('{"a":[0.5,...],"b":0}', '{"a":[0.1,0.2,0.3],"b":7}', None),
    ('{"a":[...],...}', '{"a":[],"b":1,"c":2}', None),
    ('{"b":0,"a":[0.5,...]}', '{"a":[0.1],"b":0}', "shown keys"),
    ('{"a":[0.5,...]}', '{"a":[0.1],"b":0}', "shown keys"),
    ('{"a":0.5}', '{"a":0}', "shown number"),
    ('{"a":[0.5,0.5]}', '{"a":[0.5,0.5,0.5]}', "shown 2 elements"),
    ('{"a":"x, ..., y"}', '{"a":"z"}', None),
])
def test_the_output_check_tells_shapes_apart(shown, printed, fault):
    """testkit.readme.check_output, which the tests above rely on: `...` allows more, nothing else is loose."""
    block = Block("json", shown + "\n", "", 0)
    if fault is None:
        check_output(block, printed)
    else:
        with pytest.raises(AssertionError, match=fault):
            check_output(block, printed)


def test_the_output_check_compares_curl_i_headers():
    shown = Block("text", "HTTP/1.1 200 OK\nContent-Type: application/json\nrequest_id: 1\n\n[...]\n", "", 0)
    check_output(shown, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nrequest_id: 1\r\n\r\n[1]")
    with pytest.raises(AssertionError, match="headers"):
        check_output(shown, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n[1]")
    with pytest.raises(AssertionError, match="request_id"):
        check_output(shown, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nrequest_id: 2\r\n\r\n[1]")
