"""Start-up as an operator sees it in the log: a bad setting, or two that cannot work together, is one JSON line naming
it, never a traceback, and no worker boots; a misspelled setting is one warning line from the master; gunicorn's
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

from clipsvc.server.start import CONFLICTS, DEFAULTS, check_conflicts, unknown_variables
from clipsvc.settings import ENV_VARS, Settings, SettingsError
from testkit import ROOT
from testkit.dockerfile import GUNICORN_CMD as IMAGE_CMD
from testkit.faults import wait_for
from testkit.server import HOST, TEST_SETTINGS, Server, command, environment, free_port, gunicorn

SECRET = "short"


def image_command(port: int) -> list[str]:
    """The images' command, from this interpreter, bound to loopback like testkit.server.command."""
    assert IMAGE_CMD[:3] == ["python", "-m", "clipsvc.server.start"]
    return [sys.executable, *IMAGE_CMD[1:-1], "--bind", f"{HOST}:{port}", IMAGE_CMD[-1]]


# (environment, the refusal's fields: the variable the operator changed, its value, the problem naming the other
# variable with its value, and what works instead)
CONFLICTING = [
    ({"CLIP_PRECISION": "fp16", "CLIP_DEVICE": "cpu"},
     ("CLIP_PRECISION", "fp16", "with CLIP_DEVICE=cpu, fp16 runs on GPUs only", CONFLICTS[0].accepted)),
    ({"CLIP_PRECISION": " FP16", "CLIP_DEVICE": "CPU"},
     ("CLIP_PRECISION", "fp16", "with CLIP_DEVICE=cpu, fp16 runs on GPUs only", CONFLICTS[0].accepted)),
    ({"CLIP_PRECISION": "int8", "CLIP_DEVICE": "cuda"},
     ("CLIP_PRECISION", "int8", "with CLIP_DEVICE=cuda, int8 runs on CPUs only", CONFLICTS[1].accepted)),
    ({"CLIP_PRECISION": "int8", "CLIP_DEVICE": "cuda:1"},
     ("CLIP_PRECISION", "int8", "with CLIP_DEVICE=cuda:1, int8 runs on CPUs only", CONFLICTS[1].accepted)),
]


@pytest.mark.parametrize("env, refusal", CONFLICTING)
def test_settings_that_cannot_work_together_are_refused_naming_both(env, refusal):
    with pytest.raises(SettingsError) as caught:
        check_conflicts(Settings.from_env(env))
    error = caught.value
    assert (error.variable, error.value, error.problem, error.accepted) == refusal
    assert all(variable in str(error) for variable in env)


@pytest.mark.parametrize("env", [
    {"CLIP_PRECISION": "fp16"},  # CLIP_DEVICE=auto: a worker finds the device, and refuses fp16 on a CPU itself
    {"CLIP_PRECISION": "fp16", "CLIP_DEVICE": "cuda"},
    {"CLIP_PRECISION": "fp16", "CLIP_DEVICE": "cuda:0"},
    {"CLIP_PRECISION": "int8"},
    {"CLIP_PRECISION": "int8", "CLIP_DEVICE": "cpu"},
    {"CLIP_PRECISION": "bf16", "CLIP_DEVICE": "cpu"},
    {"CLIP_PRECISION": "bf16", "CLIP_DEVICE": "cuda"},
    {"CLIP_PRECISION": "fp32", "CLIP_DEVICE": "cuda:1"},
    {"CLIP_PRECISION": "auto", "CLIP_DEVICE": "cpu"},
    {"CLIP_DEVICE": "cuda"},
])
def test_combinations_that_can_work_are_accepted(env):
    check_conflicts(Settings.from_env(env))


def test_the_defaults_conflict_with_nothing():
    """So a refusal always names first a setting the operator changed."""
    for conflict in CONFLICTS:
        assert set(conflict.names) <= set(ENV_VARS) and conflict.reason and conflict.accepted
        assert not conflict.clash(*(getattr(DEFAULTS, name) for name in conflict.names))


# (environment, the unknown variables, each with the closest setting's variable or None)
UNKNOWN = [
    ({"CLIP_PRECISON": "int8"}, [("CLIP_PRECISON", "CLIP_PRECISION")]),
    ({"CLIP_DEVICES": "cpu", "CLIP_API_KEY": "k"}, [("CLIP_API_KEY", "CLIP_API_KEYS"),
                                                     ("CLIP_DEVICES", "CLIP_DEVICE")]),
    ({"clip_device": "cpu"}, [("clip_device", "CLIP_DEVICE")]),  # read by nothing: variables are case-sensitive
    ({"CLIP_PORT": "80", "CLIP_WEB_CONCURRENCY": "4"}, [("CLIP_PORT", "PORT"),
                                                         ("CLIP_WEB_CONCURRENCY", "WEB_CONCURRENCY")]),
    ({"CLIP_INFERENCE_API": "http://clip:8080"}, [("CLIP_INFERENCE_API", None)]),  # Weaviate's: nothing close
    ({"CLIP_X": "1"}, [("CLIP_X", None)]),  # the prefix every setting shares makes no name close by itself
    ({"CLIP_DEVICE": "cpu", "PORT": "1", "WEB_CONCURRENCY": "1", "PATH": "/bin", "CLIPSVC_X": "1"}, []),
]


@pytest.mark.parametrize("env, unknown", UNKNOWN)
def test_unknown_clip_variables_are_found_with_the_closest_setting(env, unknown):
    assert unknown_variables(env) == unknown


COMMANDS = {"documented": command, "image": image_command}
# (environment, the variable the refusal names, the value it quotes; None: a secret, never shown)
REFUSALS = [
    ({"WEB_CONCURRENCY": "abc"}, "WEB_CONCURRENCY", "abc"),
    ({"CLIP_MAX_ITEMS": "0"}, "CLIP_MAX_ITEMS", "0"),
    ({"CLIP_DEVICE": "tpu"}, "CLIP_DEVICE", "tpu"),
    ({"PORT": "99999"}, "PORT", "99999"),
    ({"CLIP_API_KEYS": SECRET}, "CLIP_API_KEYS", None),
    ({"CLIP_TRUSTED_PROXIES": "proxy.internal"}, "CLIP_TRUSTED_PROXIES", "proxy.internal"),
    # Two settings that cannot work together (clipsvc.settings.CONFLICTS): refused before a worker fails to boot.
    ({"CLIP_PRECISION": "fp16", "CLIP_DEVICE": "cpu"}, "CLIP_PRECISION", "fp16"),
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
    assert refusal["problem"] and refusal["accepted"] and all(name in refusal["message"] for name in env)
    assert not [record for record in records if record["message"].startswith("Booting worker")]
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


TYPO = {"CLIP_PRECISON": "int8"}  # a misspelled CLIP_PRECISION: warned about, and the default stays in force


def assert_one_typo_warning(server: Server) -> None:
    """The master says it once, before any worker boots: not once per worker."""
    records = server.log_records()
    (warning,) = [record for record in records if record.get("event") == "unknown_setting"]
    assert (warning["level"], warning["variable"], warning["did_you_mean"]) == ("warning", "CLIP_PRECISON",
                                                                                "CLIP_PRECISION")
    assert warning["pid"] == server.process.pid and "did you mean CLIP_PRECISION?" in warning["message"]
    assert "int8" not in json.dumps(warning)  # the value is never shown: a misspelled CLIP_API_KEYS holds keys
    booting = next(i for i, record in enumerate(records) if record["message"].startswith("Booting worker"))
    assert records.index(warning) < booting


def test_a_misspelled_setting_is_one_warning_and_the_server_starts(model_dir, tmp_path):
    """The documented command; test_the_images_command_starts_gunicorn_in_its_own_process tries the images' one."""
    with gunicorn(model_dir, tmp_path / "log", WEB_CONCURRENCY="1", **TYPO) as server:
        assert_one_typo_warning(server)
        (loaded,) = server.wait_loaded().values()
        assert loaded["precision"] != "int8"


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
    itself), its workers load, it serves, logs one ready line (and one warning for a misspelled setting) and stops
    cleanly."""
    port, log_path = free_port(), tmp_path / "log"
    env = environment(model_dir, port, {**TEST_SETTINGS, "WEB_CONCURRENCY": "1", **TYPO})
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
        assert_one_typo_warning(server)  # from gunicorn's master, not also from the check before it
        assert server.stop() == 0
    finally:
        server.close()
    records = [json.loads(line) for line in server.log_lines()]  # every line JSON
    assert not [record for record in records if record["level"] in ("error", "critical")]
