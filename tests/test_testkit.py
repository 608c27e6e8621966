"""The test harness's own readers (testkit): the Dockerfile and .dockerignore readers, `kubectl kustomize` run and
parsed, Kubernetes quantities and the tolerant JSON-lines log reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from testkit import jsonlog, kustomize, procs
from testkit.deploy import quantity
from testkit.dockerfile import Instruction, env_of, parse_dockerfile
from testkit.dockerignore import dockerignored


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


DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers: [{name: a, image: i}, {name: b, image: j}]
      tolerations: [{key: a}]
      volumes: [{name: x, persistentVolumeClaim: {claimName: c}}]
"""
PATCH = """apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  template:
    spec:
      containers: [{name: a, image: k}]
      tolerations: [{key: b}]
      volumes: [{name: x, persistentVolumeClaim: null, emptyDir: {}}, {name: y, emptyDir: {}}]
"""


def _kustomization(directory, resources: list[str], patches: list[str] = ()):
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(
        {"resources": resources, "patches": [{"path": p} for p in patches]}))
    return directory


def test_build_is_kubectls_strategic_merge(tmp_path):
    """Containers and volumes merged by name (null deletes a key), other lists replaced: kubectl's rules."""
    base = _kustomization(tmp_path / "base", ["deployment.yaml"])
    (base / "deployment.yaml").write_text(DEPLOYMENT)
    overlay = _kustomization(tmp_path / "overlay", ["../base"], ["patch.yaml"])
    (overlay / "patch.yaml").write_text(PATCH)
    (deployment,) = kustomize.build(overlay)
    assert kustomize.identity(deployment) == ("apps/v1", "Deployment", "app")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["containers"] == [{"name": "a", "image": "k"}, {"name": "b", "image": "j"}]
    assert spec["tolerations"] == [{"key": "b"}]
    assert sorted(spec["volumes"], key=lambda v: v["name"]) == [{"name": "x", "emptyDir": {}},
                                                                {"name": "y", "emptyDir": {}}]


def test_a_failing_build_raises_with_kubectls_stderr(tmp_path):
    broken = _kustomization(tmp_path / "broken", ["missing.yaml"])
    with pytest.raises(kustomize.KustomizeError, match=r"(?s)kubectl kustomize .*broken. exited \d.*missing\.yaml"):
        kustomize.build(broken)


@pytest.mark.parametrize("required, outcome", [(None, pytest.skip.Exception), ("1", pytest.fail.Exception)])
def test_without_kubectl_a_test_skips_with_the_hint_or_fails_where_required(monkeypatch, tmp_path, required,
                                                                            outcome):
    monkeypatch.setenv("PATH", str(tmp_path))
    if required:
        monkeypatch.setenv(kustomize.REQUIRE, required)
    else:
        monkeypatch.delenv(kustomize.REQUIRE, raising=False)
    with pytest.raises(outcome, match="apt-get install kubernetes-client"):
        kustomize.kubectl()


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
