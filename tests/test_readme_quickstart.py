"""The README's quickstart, run as a newcomer runs it: its commands verbatim, one after the other in one shell, in a
folder that holds what a clone's commands use (clipsvc/, gunicorn.conf.py, wsgi.py), with this virtualenv active
(the install step, which needs the network, is only checked). The server listens on the README's port, 8081, so
the test skips when something else has it; on loopback only, through gunicorn's own GUNICORN_CMD_ARGS, which leaves
the commands as written. Each output the README shows is compared with what its command printed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from testkit import ROOT
from testkit.dockerfile import arg_defaults, builder
from testkit.readme import README, check_output, environment, examples, section_blocks

SECTION = "## Quickstart"
PORT = 8081  # the README's, and the service's default
HOST = "127.0.0.1"  # the README's server binds every interface; here loopback is enough
BLOCKS = [block for block in section_blocks(SECTION, README) if block.language == "bash"]
INSTALL, STEPS = BLOCKS[0], BLOCKS[1:]
SHOWN = {example.command: example.shown for example in examples(README) if example.command.heading == SECTION}
# What the quickstart's commands read from the clone.
CLONE_FILES = ("clipsvc", "gunicorn.conf.py", "wsgi.py")
MARK = "--- quickstart step {} ---"
RUN_TIMEOUT_S = 240  # ~25 s on 2 busy cores: writing the stand-in ~10 s, start-up ~10 s


def test_the_install_step_installs_the_requirements_with_the_cpu_torch():
    """The one step not run here (it needs the network): a venv, then requirements.txt with the CPU torch index the
    Dockerfile uses, so pip does not take PyPI's CUDA build."""
    assert INSTALL.code.startswith("python3 -m venv .venv && . .venv/bin/activate\n")
    torch_index = arg_defaults(builder())["TORCH_INDEX_URL"]
    assert f"pip install --extra-index-url {torch_index} -r requirements.txt" in INSTALL.code


def test_the_steps_are_a_stand_in_a_server_a_wait_and_the_request():
    code = "".join(block.code for block in STEPS)
    assert "python -m clipsvc.standin models/vit-b-32 --arch vit-b-32" in code
    assert "CLIP_MODEL_DIR=models/vit-b-32 gunicorn -c gunicorn.conf.py wsgi:app" in code
    assert f"http://127.0.0.1:{PORT}/readyz" in code and f"http://127.0.0.1:{PORT}/syte_test/clip" in code
    assert len(SHOWN) == 2, "the README shows what the wait and the request print"


def port_taken(port: int) -> bool:
    """Whether gunicorn could not bind HOST:`port` now (it sets SO_REUSEADDR too)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def stop_group(pgid: int, timeout: float = 60) -> None:
    """SIGTERM to every process the quickstart's shell left (a server it did not stop), SIGKILL after `timeout`."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)


@pytest.fixture
def clone(tmp_path) -> Path:
    folder = tmp_path / "clipsvc"
    folder.mkdir()
    for name in CLONE_FILES:
        (folder / name).symlink_to(ROOT / name)
    yield folder
    # The stand-in is 580 MB: not left for pytest's kept temporary folders.
    subprocess.run(["rm", "-rf", str(folder / "models")], check=False)


def test_the_quickstart_runs_as_written(clone):
    if port_taken(PORT):
        pytest.skip(f"port {PORT}, the quickstart's, is in use here")
    # The steps verbatim, a marker before each so that each one's output can be told apart; then the README's way
    # to stop the server, and its exit status.
    script = "\n".join(f"echo '{MARK.format(i)}'\n{block.code}" for i, block in enumerate(STEPS))
    # Before the stop, the README's `ready` line (every worker loaded): a request can be answered by the first
    # worker while the second still loads, and stopping then would leave it unloaded.
    script += ("for _ in $(seq 300); do grep -q '\"event\": \"ready\"' server.log && break; sleep 0.1; done\n"
               f"echo '{MARK.format('stop')}'\nkill %1\nwait %1\necho \"server exit status $?\"\n")
    env = {k: v for k, v in environment().items()
           if not k.startswith("CLIP_") and k not in ("PORT", "WEB_CONCURRENCY", "GUNICORN_CMD_ARGS")}
    env["GUNICORN_CMD_ARGS"] = f"--bind {HOST}:{PORT}"
    out, err = clone.parent / "stdout", clone.parent / "stderr"
    started = time.monotonic()
    with out.open("w") as stdout, err.open("w") as stderr:
        shell = subprocess.Popen(["bash", "-c", script], cwd=clone, env=env, stdout=stdout, stderr=stderr,
                                 start_new_session=True)
    try:
        code = shell.wait(RUN_TIMEOUT_S)
    finally:
        stop_group(shell.pid)
    took = time.monotonic() - started
    log = (clone / "server.log").read_text() if (clone / "server.log").exists() else ""
    context = f"stderr:\n{err.read_text()[-3000:]}\nserver.log:\n{log[-3000:]}"
    assert code == 0, context

    printed = out.read_text().split("\n")
    outputs, current = {}, None
    for line in printed:
        if line.startswith("--- quickstart step ") and line.endswith(" ---"):
            current = line.removeprefix("--- quickstart step ").removesuffix(" ---")
            outputs[current] = []
        elif current is not None:
            outputs[current].append(line)
    outputs = {step: "\n".join(lines).strip("\n") for step, lines in outputs.items()}
    for i, block in enumerate(STEPS):
        if block in SHOWN:
            check_output(SHOWN[block], outputs[str(i)])
    assert outputs["stop"] == "server exit status 0", context

    answer = json.loads(outputs[str(len(STEPS) - 1)])
    assert len(answer["image_1_vector"]) == len(answer["text_1_vector"]) == 512  # "each vector's 512 floats"
    assert answer["image_vector_1_similarity_score"] == 0  # "its scores are about 0"
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    events = [record.get("event") for record in records]
    assert events.count("model_loaded") == 2 and events.count("ready") == 1, context
    assert any(record["message"].startswith(f"Listening at: http://{HOST}:{PORT}") for record in records)
    print(f"quickstart: {took:.1f} s from the stand-in to the answer and the stop")
