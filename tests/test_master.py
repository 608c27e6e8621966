"""The gunicorn master stays light: it never imports torch or transformers; only the workers load the model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from clipsvc.encoder.loading import pick_device
from testkit import ROOT
from testkit.server import gunicorn

HEAVY = ("torch", "transformers")

# What the master runs, in the master's order: gunicorn reads the config file and imports the worker class, then
# calls on_starting (the model directory found and checked, the metrics directory made) before forking.
MASTER = f"""
import json, sys
from gunicorn.app.wsgiapp import WSGIApplication

sys.argv = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
app = WSGIApplication()
assert app.cfg.worker_class.__name__ == "ClipWorker"

class Log:
    def info(self, *args, **kwargs): pass
    error = info

class Server:
    log = Log()

app.cfg.on_starting(Server())
app.cfg.on_exit(Server())
print(json.dumps(sorted(name for name in {HEAVY!r} if name in sys.modules)))
"""


@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_the_master_imports_neither_torch_nor_transformers(model_dir, tmp_path, device):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIP_") and k != "GUNICORN_CMD_ARGS"}
    env.update(CLIP_MODEL_DIR=str(model_dir), CLIP_DEVICE=device, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    done = subprocess.run([sys.executable, "-c", MASTER], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def mapped_libraries(pid: int) -> set[str]:
    return {line.split()[-1].rsplit("/", 1)[-1] for line in Path(f"/proc/{pid}/maps").read_text().splitlines()
            if ".so" in line}


def test_only_the_workers_map_torch(model_dir, tmp_path):
    """The real server: the master holds none of torch's libraries (hundreds of MB), every worker does."""
    with gunicorn(model_dir, tmp_path / "log", CLIP_DEVICE="auto") as server:
        master, workers = server.process.pid, server.worker_pids()
        assert not [lib for lib in mapped_libraries(master) if "torch" in lib]
        assert workers and all(any("libtorch" in lib for lib in mapped_libraries(pid)) for pid in workers)
        loaded = [record for record in server.log_records() if record.get("event") == "model_loaded"]
        assert {record["device"] for record in loaded} == {"cuda" if torch.cuda.is_available() else "cpu"}


def test_auto_takes_the_cpu_without_a_gpu():
    """CLIP_DEVICE=auto is resolved in each worker, by torch; without CUDA it is the CPU."""
    if torch.cuda.is_available():
        assert pick_device("auto").type == "cuda"
    else:
        assert pick_device("auto") == torch.device("cpu")


# A worker configures logging (gunicorn applies logconfig_dict) before post_fork imports the encoder.
WORKER_IMPORT = """
import logging, logging.config, json
from clipsvc.server import lifecycle
from clipsvc.server.logs import logging_config

logging.config.dictConfig(logging_config("info"))
library = logging.getLogger("transformers")
before = [repr(h) for h in library.handlers], library.level, library.propagate
lifecycle._import_encoder()
print(json.dumps([before, ([repr(h) for h in library.handlers], library.level, library.propagate)]))
"""


@pytest.mark.parametrize("ci", ["", "1"])
def test_importing_the_encoder_in_the_worker_keeps_the_json_logging(ci):
    """transformers adds a plain-text handler to its logger when imported (and propagation where CI is set)."""
    env = {**os.environ, "CI": ci}
    done = subprocess.run([sys.executable, "-c", WORKER_IMPORT], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    before, after = json.loads(done.stdout.splitlines()[-1])
    assert after == before and before[2] is False
