"""The Dockerfile's dependency step (`pytest -k dependency_step`): pinned requirements, installed without a
cache from the CPU torch index, that provide every import of the app and resolve in a fresh virtualenv."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib import metadata

import pytest

from testkit import ROOT
from testkit.dockerfile import builder, env_of, final, of, requirement_lines


def test_dependency_step_installs_the_pinned_requirements_without_a_cache():
    assert any(i.args.split() == ["requirements.txt", "."] for i in of(builder(), "COPY"))
    installs = [i.args for i in of(builder(), "RUN") if "pip install" in i.args]
    assert len(installs) == 1
    words = installs[0].split()
    assert "-r" in words and words[words.index("-r") + 1] == "requirements.txt"
    assert "--no-cache-dir" in words
    assert "python -m venv /opt/venv" in installs[0]


def test_dependency_step_uses_the_cpu_torch_index():
    assert env_of(builder()).get("PIP_EXTRA_INDEX_URL") == "https://download.pytorch.org/whl/cpu"
    assert "PIP_EXTRA_INDEX_URL" not in env_of(final())


def test_dependency_step_pins_torch_exactly():
    torch = [line for line in requirement_lines() if re.match(r"torch\b(?![-_])", line, flags=re.IGNORECASE)]
    assert len(torch) == 1, "torch must appear exactly once"
    assert re.fullmatch(r"torch==\d+(\.\d+)+", torch[0]), f"{torch[0]!r}: pin it as torch==X.Y.Z, no range or bare name"


@pytest.mark.parametrize("line", requirement_lines())
def test_dependency_step_pins_every_requirement(line):
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!-]+", line), line


def _third_party_imports() -> set[str]:
    names: set[str] = set()
    for path in [ROOT / "wsgi.py", ROOT / "gunicorn.conf.py", *(ROOT / "clipsvc").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("__future__", "clipsvc")}


def canonical(name: str) -> str:
    """A distribution's name as PEP 503 compares them: prometheus_client is prometheus-client."""
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("module", sorted(_third_party_imports()))
def test_dependency_step_provides_every_import_of_the_app(module):
    pinned = {canonical(re.split(r"[=<>!~\[]", line, maxsplit=1)[0]) for line in requirement_lines()}
    distributions = {canonical(d) for d in metadata.packages_distributions().get(module, [])}
    assert distributions & pinned, f"`import {module}` comes from {distributions or 'nothing installed'}, " \
                                   f"which requirements.txt does not pin"


def test_dependency_step_resolves_in_a_fresh_virtualenv(tmp_path):
    """The image's `pip install -r requirements.txt`, resolved (not installed) in a new venv from the same file."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    report = tmp_path / "report.json"
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--dry-run",
         "--ignore-installed", "--report", str(report), "-r", str(ROOT / "requirements.txt")],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    chosen = {canonical(item["metadata"]["name"]): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    for line in requirement_lines():
        name, version = line.split("==")
        assert chosen[canonical(name)].split("+")[0] == version, (name, chosen.get(canonical(name)))
    assert not [name for name in chosen if name.startswith("nvidia-")], "a CUDA build of torch was chosen"
