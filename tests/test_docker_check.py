"""scripts/docker-check (`make docker-check`): its checks on canned data here, and the whole check against a real
Docker engine when one answers and the base image is at hand (it skips, saying why, otherwise: CI has no engine,
and nothing here pulls from Docker Hub).

Where the PyTorch index is out of reach, give the script its options through the environment, e.g.
`CLIPSVC_DOCKER_CHECK_ARGS="--wheels /opt/wheels --network host" python -m pytest tests/test_docker_check.py`.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
from urllib.parse import urlparse

import pytest
from PIL import Image
from werkzeug.formparser import parse_form_data

from testkit import ROOT
from testkit.dockerfile import arg_defaults, base_images, builder, dockerfile

SCRIPT = ROOT / "scripts" / "docker_check.py"
_spec = importlib.util.spec_from_file_location("docker_check", SCRIPT)
dc = sys.modules.setdefault("docker_check", importlib.util.module_from_spec(_spec))  # dataclasses look it up
_spec.loader.exec_module(dc)

GOOD_LOGS = "\n".join([
    '{"ts": "t", "level": "info", "logger": "gunicorn.error", "message": "Listening at: http://0.0.0.0:8081"}',
    '{"ts": "t", "level": "info", "logger": "clipsvc.request", "message": "request", "request_id": "r1", '
    '"method": "POST", "path": "/syte_test/clip", "status": 200}',
    "",
])
MODEL_ERROR_LOGS = ('{"ts": "t", "level": "error", "logger": "gunicorn.error", "message": "model unusable: model '
                    'path /model is not a CLIP model directory (it holds nothing)", "event": "model_error"}\n')


def seed_body(dim: int = 4, **changes) -> bytes:
    unit = [0.5] * dim  # 4 x 0.25 = 1: unit length
    data = {"image_1_vector": unit, "text_1_vector": unit, "image_vector_1_similarity_score": 85,
            "image_vector_1_cosine_similarity": 0.34, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not None}).encode()


# --- The checks, on canned answers ---------------------------------------------------------------------------------


def test_a_good_seed_response_passes():
    detail = dc.check_seed_response(200, {"Request_Id": "r1", "Content-Type": "application/json"}, seed_body(), "r1")
    assert "request_id r1" in detail and "4-float" in detail


@pytest.mark.parametrize("status, headers, body, why", [
    (500, {"request_id": "r1"}, b'{"error": "x"}', "status 500"),
    (200, {}, seed_body(), "request_id header None"),
    (200, {"request_id": "other"}, seed_body(), "request_id header 'other'"),
    (200, {"request_id": "r1"}, seed_body(extra=1), "keys"),
    (200, {"request_id": "r1"}, seed_body(image_vector_1_similarity_score=None), "keys"),
    (200, {"request_id": "r1"}, seed_body(text_1_vector=[0.5] * 3), "vectors of 4 and 3"),
    (200, {"request_id": "r1"}, seed_body(image_1_vector=[1.0] * 4), "not unit length"),
    (200, {"request_id": "r1"}, seed_body(image_vector_1_similarity_score=85.5), "not an integer"),
], ids=["status", "no-id", "wrong-id", "extra-key", "missing-key", "lengths", "not-unit", "score"])
def test_a_bad_seed_response_fails(status, headers, body, why):
    with pytest.raises(dc.CheckFailed, match=why):
        dc.check_seed_response(status, headers, body, "r1")


def test_json_logs():
    assert dc.check_all_json(GOOD_LOGS) == "2 lines, every one a JSON object"
    assert dc.check_request_logged(GOOD_LOGS, "r1") == "request line: POST /syte_test/clip 200"
    with pytest.raises(dc.CheckFailed, match="no request log line"):
        dc.check_request_logged(GOOD_LOGS, "r2")


@pytest.mark.parametrize("line", ["[2026-11-29 18:00:00 +0000] [1] [INFO] Starting gunicorn 27.0.1", "[1, 2]",
                                  '"text"', '{"unterminated": '])
def test_a_line_that_is_not_a_json_object_fails(line):
    with pytest.raises(dc.CheckFailed, match="1 non-JSON line"):
        dc.check_all_json(GOOD_LOGS + line + "\n")
    with pytest.raises(dc.CheckFailed, match="no log lines"):
        dc.check_all_json("\n\n")


def test_the_missing_model_error_line():
    assert "model unusable" in dc.check_model_error(MODEL_ERROR_LOGS)
    with pytest.raises(dc.CheckFailed, match="naming /model"):
        dc.check_model_error(GOOD_LOGS)
    with pytest.raises(dc.CheckFailed, match="non-JSON"):
        dc.check_model_error(MODEL_ERROR_LOGS + "Traceback (most recent call last):\n")


def test_process_uid_reads_the_real_uid():
    assert dc.process_uid("Name:\tgunicorn\nUid:\t10001\t10001\t10001\t10001\nGid:\t10001\n") == 10001
    with pytest.raises(dc.CheckFailed):
        dc.process_uid("Name:\tgunicorn\n")


def test_the_seed_request_body_is_multipart_with_an_image_and_a_text():
    body, content_type = dc.multipart([("image-1", dc.SEED_IMAGE_NAME, dc.png(), "image/png"),
                                       ("text-1", "", dc.SEED_TEXT.encode(), None)])
    _, form, files = parse_form_data({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
                                      "CONTENT_TYPE": content_type, "REQUEST_METHOD": "POST"})
    assert form.to_dict() == {"text-1": dc.SEED_TEXT}
    assert files["image-1"].filename == dc.SEED_IMAGE_NAME
    image = Image.open(files["image-1"].stream)
    image.load()
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (224, 224))


# --- Arguments and the commands they make ---------------------------------------------------------------------------


def test_build_arguments_pass_through_and_wheels_drop_the_torch_index():
    args = dc.parse_args(["--build-arg", "PIP_INDEX_URL=https://mirror.example.com/simple", "--network", "host",
                          "--wheels", str(ROOT / "wheels")])
    assert dc.build_command(args) == [
        "docker", "build", "-t", "clipsvc", "--network", "host",
        "--build-arg", "PIP_INDEX_URL=https://mirror.example.com/simple", "--build-arg", "TORCH_INDEX_URL=",
        str(ROOT)]
    kept = dc.parse_args(["--wheels", str(ROOT / "wheels"), "--build-arg", "TORCH_INDEX_URL=https://m/cpu"])
    assert dc.build_command(kept)[-3:] == ["--build-arg", "TORCH_INDEX_URL=https://m/cpu", str(ROOT)]
    assert dc.build_command(dc.parse_args([])) == ["docker", "build", "-t", "clipsvc", str(ROOT)]


@pytest.mark.parametrize("argv, message", [
    (["--build-arg", "PIP_NO_INDEX"], "expected NAME=VALUE"),
    (["--wheels", "/no/such/directory"], "not a directory"),
])
def test_bad_arguments_are_refused(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        dc.parse_args(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_the_help_says_what_to_use_behind_a_mirror():
    result = subprocess.run([str(ROOT / "scripts" / "docker-check"), "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0
    for text in ("--build-arg PIP_INDEX_URL=", "--build-arg TORCH_INDEX_URL=", "--build-arg BASE_IMAGE=",
                 "--build-arg PIP_NO_INDEX=1", "--wheels", "--network"):
        assert text in result.stdout


def test_without_an_engine_it_says_so_and_exits_2(monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert dc.main([]) == 2
    assert "no docker client" in capsys.readouterr().err


def test_make_docker_check_runs_the_script_in_the_venv():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    result = subprocess.run([make, "--no-print-directory", "-n", "docker-check",
                             "DOCKER_CHECK_ARGS=--wheels /opt/wheels --network host"],
                            cwd=ROOT, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=30)
    assert result.stdout.strip() == (". .venv/bin/activate && scripts/docker-check --image clipsvc "
                                     "--wheels /opt/wheels --network host")


# --- The real thing ------------------------------------------------------------------------------------------------


def why_not_docker() -> str | None:
    """None when the whole check can run here, else the precise reason it cannot."""
    if why := dc.docker_answers():
        return why
    base = base_images(dockerfile())[0]
    local = subprocess.run(["docker", "image", "inspect", base], capture_output=True, timeout=30)
    if local.returncode != 0 and not os.environ.get("CLIPSVC_DOCKER_CHECK_PULL"):
        return (f"the base image {base} is not in the local engine, and pulling it is not allowed here "
                "(set CLIPSVC_DOCKER_CHECK_PULL=1 to let the build pull it)")
    extra = os.environ.get("CLIPSVC_DOCKER_CHECK_ARGS", "")
    if "--wheels" not in extra and "TORCH_INDEX_URL=" not in extra:
        host = urlparse(arg_defaults(builder())["TORCH_INDEX_URL"]).hostname
        try:
            socket.getaddrinfo(host, 443)
        except OSError:  # pip would fall back to PyPI's CUDA torch: GBs, then the build's CUDA check fails
            return (f"the PyTorch index ({host}) does not resolve here and CLIPSVC_DOCKER_CHECK_ARGS gives no "
                    "--wheels (e.g. CLIPSVC_DOCKER_CHECK_ARGS='--wheels /opt/wheels --network host')")
    return None


def test_the_image_builds_serves_and_stops_as_the_readme_says(tmp_path):
    if why := why_not_docker():
        pytest.skip(why)
    report = tmp_path / "report.json"
    extra = shlex.split(os.environ.get("CLIPSVC_DOCKER_CHECK_ARGS", ""))
    result = subprocess.run([sys.executable, str(SCRIPT), "--image", "clipsvc-docker-check", "--report",
                             str(report), *extra], cwd=ROOT, capture_output=True, text=True, timeout=2700)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    checks = json.loads(report.read_text())["checks"]
    assert [c["name"] for c in checks] == ["build", "healthcheck", "seed request", "non-root", "docker stop",
                                           "JSON logs", "request logged", "missing model fails fast"]
    assert all(c["ok"] for c in checks)
    leftovers = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter", "name=clipsvc-check-"],
                               capture_output=True, text=True, timeout=30)
    assert leftovers.stdout.strip() == "", "the script leaves no container behind"
