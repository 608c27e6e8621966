"""The test harness's own readers (testkit): the Dockerfile and .dockerignore readers, the small kustomize,
Kubernetes quantities and the tolerant JSON-lines log reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from testkit import jsonlog, procs
from testkit.deploy import quantity
from testkit.dockerfile import Instruction, env_of, parse_dockerfile
from testkit.dockerignore import dockerignored
from testkit.kustomize import strategic_merge


@pytest.mark.parametrize("text, expected", [
    ("FROM a AS b\nRUN x \\\n    && y\n", [("FROM", "a AS b"), ("RUN", "x && y")]),
    ("# c\nENV A=1 \\\n# inside\n\n    B=2\ncmd [\"x\"]\n", [("ENV", "A=1 B=2"), ("CMD", '["x"]')]),
])
def test_reader_joins_continuations_and_drops_comments(text, expected):
    assert [(i.name, i.args) for i in parse_dockerfile(text)] == expected


@pytest.mark.parametrize("args, expected", [
    ('A=1 B="x y" PATH="/v/bin:$PATH"', {"A": "1", "B": "x y", "PATH": "/v/bin:$PATH"}),
    ("LEGACY some value", {"LEGACY": "some value"}),
])
def test_reader_env_forms(args, expected):
    assert env_of([Instruction("ENV", args, 1)]) == expected


@pytest.mark.parametrize("path, patterns, expected", [
    ("models/x/y.bin", ["models"], True),
    ("a/models", ["models"], False),
    ("a/b/c.zip", ["**/*.zip"], True),
    ("c.zip", ["**/*.zip"], True),
    ("a/b.pyc", ["*.pyc"], False),
    ("a/b.pyc", ["**/*.py[cod]"], True),
    ("keep.md", ["*.md", "!keep.md"], False),
    ("/.git/HEAD", ["/.git"], True),
])
def test_dockerignore_matcher(path, patterns, expected):
    assert dockerignored(path, patterns) is expected


@pytest.mark.parametrize("value, expected", [("4", 4), (2, 2), ("500m", 0.5), ("4Gi", 4 * 2**30), ("256Mi", 2**28)])
def test_quantity_reader(value, expected):
    assert quantity(value) == expected


@pytest.mark.parametrize("base, patch, expected", [
    ({"a": 1, "b": {"c": 2}}, {"b": {"d": 3}}, {"a": 1, "b": {"c": 2, "d": 3}}),
    ({"volumes": [{"name": "x", "pvc": 1}]}, {"volumes": [{"name": "x", "pvc": None, "dir": {}}]},
     {"volumes": [{"name": "x", "dir": {}}]}),
    ({"containers": [{"name": "a", "image": "i"}, {"name": "b"}]}, {"containers": [{"name": "a", "image": "j"}]},
     {"containers": [{"name": "a", "image": "j"}, {"name": "b"}]}),
    ({"volumes": [{"name": "a"}]}, {"volumes": [{"name": "b"}]}, {"volumes": [{"name": "a"}, {"name": "b"}]}),
    ({"tolerations": [{"key": "a"}]}, {"tolerations": [{"key": "b"}]}, {"tolerations": [{"key": "b"}]}),
])
def test_strategic_merge(base, patch, expected):
    assert strategic_merge(base, patch) == expected


def test_the_log_reader_leaves_a_half_written_last_line_for_the_next_read(tmp_path):
    log = tmp_path / "server.log"
    done = json.dumps({"message": "request", "logger": "clipsvc.request", "path": "/x"})
    log.write_text(f"{done}\nnot JSON: a plain line\n\n" + done[:20])
    assert jsonlog.read_lines(log) == [done, "not JSON: a plain line"]
    assert jsonlog.read_records(log) == [json.loads(done)]
    with log.open("a") as out:
        out.write(done[20:] + "\n")
    assert jsonlog.read_records(log) == [json.loads(done)] * 2
    assert jsonlog.request_lines(jsonlog.read_records(log), "/x") == [json.loads(done)] * 2
    assert jsonlog.request_lines(jsonlog.read_records(log), "/y") == []


def test_worker_pids_are_live_children_and_not_zombies():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert child.pid in procs.worker_pids(os.getpid())
        assert procs.status_kib(child.pid, "VmRSS") > 0
        child.stdin.close()  # it exits; until waited for it is a zombie, listed but not a live worker
        deadline = time.monotonic() + 10
        while procs.child_states(os.getpid()).get(child.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert procs.child_states(os.getpid())[child.pid] == "Z"
        assert child.pid not in procs.worker_pids(os.getpid())
    finally:
        child.wait()
