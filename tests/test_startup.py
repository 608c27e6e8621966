"""Start-up as an operator sees it in the log: a bad setting is one JSON line naming it, never a traceback; gunicorn's
"Listening at" is followed by a line saying that is not readiness; one `ready` line comes once every worker has loaded.

Each refusal is tried with both commands that start the service: the documented `gunicorn -c gunicorn.conf.py
wsgi:app` and the images' `python -m clipsvc.server.start -c gunicorn.conf.py wsgi:app` (testkit.dockerfile), which
checks the settings before gunicorn can die on WEB_CONCURRENCY."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import requests

from testkit import ROOT
from testkit.dockerfile import GUNICORN_CMD as IMAGE_CMD
from testkit.faults import wait_for
from testkit.server import HOST, TEST_SETTINGS, Server, command, environment, free_port

SECRET = "short"


def image_command(port: int) -> list[str]:
    """The images' command, from this interpreter, bound to loopback like testkit.server.command."""
    assert IMAGE_CMD[:3] == ["python", "-m", "clipsvc.server.start"]
    return [sys.executable, *IMAGE_CMD[1:-1], "--bind", f"{HOST}:{port}", IMAGE_CMD[-1]]


COMMANDS = {"documented": command, "image": image_command}
# (environment, the variable the refusal names, the value it quotes; None: a secret, never shown)
REFUSALS = [
    ({"WEB_CONCURRENCY": "abc"}, "WEB_CONCURRENCY", "abc"),
    ({"CLIP_MAX_ITEMS": "0"}, "CLIP_MAX_ITEMS", "0"),
    ({"CLIP_DEVICE": "tpu"}, "CLIP_DEVICE", "tpu"),
    ({"PORT": "99999"}, "PORT", "99999"),
    ({"CLIP_API_KEYS": SECRET}, "CLIP_API_KEYS", None),
    ({"CLIP_TRUSTED_PROXIES": "proxy.internal"}, "CLIP_TRUSTED_PROXIES", "proxy.internal"),
]
# gunicorn reads WEB_CONCURRENCY as it is imported, before gunicorn.conf.py: see the test after this one.
CASES = [pytest.param(how, *case, id=f"{how}-{case[1]}") for how in COMMANDS for case in REFUSALS
         if not (how == "documented" and case[1] == "WEB_CONCURRENCY")]


def start(model_dir, how: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    port = free_port()
    return subprocess.run(COMMANDS[how](port), cwd=ROOT, env=environment(model_dir, port, env), capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("how, env, variable, value", CASES)
def test_a_bad_setting_stops_start_up_with_one_json_line_naming_it(model_dir, how, env, variable, value):
    done = start(model_dir, how, env)
    assert done.returncode == 78, done.stderr  # EX_CONFIG
    lines = (done.stdout + done.stderr).splitlines()
    records = [json.loads(line) for line in lines]  # every line JSON
    (refusal,) = [record for record in records if record["level"] in ("error", "critical")]
    assert (refusal["event"], refusal["variable"], refusal.get("value")) == ("bad_configuration", variable, value)
    assert refusal["problem"] and refusal["accepted"] and variable in refusal["message"]
    if value is None:
        assert SECRET not in done.stdout + done.stderr


def test_gunicorn_itself_reads_web_concurrency_before_its_config(model_dir):
    """Why the images run clipsvc.server.start: with the documented command, gunicorn 27's own import dies on it, before
    gunicorn.conf.py runs. When this fails, gunicorn reads it later, and the documented command refuses it as JSON."""
    done = start(model_dir, "documented", {"WEB_CONCURRENCY": "abc"})
    assert done.returncode != 0
    assert "Traceback" in done.stderr and 'int(os.environ.get("WEB_CONCURRENCY", 1))' in done.stderr


def ready_lines(server: Server) -> list[dict]:
    return [record for record in server.log_records() if record.get("event") == "ready"]


def test_one_ready_line_after_every_worker_has_loaded(served, model_dir):
    wait_for(lambda: ready_lines(served), 10, "the ready line")
    records = served.log_records()
    events = [record.get("event") for record in records]
    (ready,) = ready_lines(served)
    assert events.index("ready") > max(i for i, event in enumerate(events) if event == "model_loaded")
    loaded = [record for record in records if record.get("event") == "model_loaded"]
    assert len(loaded) == served.workers == ready["workers"]
    assert (ready["model"], ready["device"]) == (model_dir.name, "cpu")
    assert ready["precision"] in {record["precision"] for record in loaded}
    assert 0 < ready["seconds_since_start"] < 60 and ready["message"].startswith("ready")


def test_listening_is_not_called_ready(served):
    """gunicorn's own "Listening at" line comes before any worker has forked; the next line of ours says so."""
    records = served.log_records()
    messages = [record["message"] for record in records]
    listening = next(i for i, message in enumerate(messages) if message.startswith("Listening at"))
    ours = next(i for i, record in enumerate(records) if record.get("event") == "listening")
    first_loaded = next(i for i, record in enumerate(records) if record.get("event") == "model_loaded")
    assert listening < ours < first_loaded and "not ready" in messages[ours]


def test_the_images_command_starts_gunicorn_in_its_own_process(model_dir, tmp_path):
    """clipsvc.server.start execs gunicorn: the process started is the master (PID 1 in a container, getting SIGTERM
    itself), its workers load, it serves, logs one ready line and stops cleanly."""
    port, log_path = free_port(), tmp_path / "log"
    env = environment(model_dir, port, {**TEST_SETTINGS, "WEB_CONCURRENCY": "1"})
    with open(log_path, "w") as log:
        process = subprocess.Popen(image_command(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(process, port, log_path, workers=1)
    try:
        server.wait_loaded()
        server.wait_ready()
        response = requests.post(server.url + "/syte_test/clip", files={"text-1": (None, "a dog")}, timeout=30)
        assert response.status_code == 200 and "text_1_vector" in response.json()
        (ready,) = wait_for(lambda: ready_lines(server), 10, "the ready line")
        assert ready["workers"] == 1
        assert server.stop() == 0
    finally:
        server.close()
    records = [json.loads(line) for line in server.log_lines()]  # every line JSON
    assert not [record for record in records if record["level"] in ("error", "critical")]
