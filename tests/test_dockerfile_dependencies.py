"""The Dockerfile's dependency step (`pytest -k dependency_step`): pinned requirements, installed without a
cache from the CPU torch index, that provide every import of the app and resolve in a fresh virtualenv; where
pip looks is a build argument (a mirror, local wheels in wheels/, no index at all), never an edit."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from importlib import metadata

import pytest

from testkit import ROOT
from testkit.dockerfile import arg_defaults, builder, env_of, expand, final, of, requirement_lines
from testkit.dockerignore import dockerignored

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
WHEELS = ROOT / "wheels"


def test_dependency_step_installs_the_pinned_requirements_without_a_cache():
    assert any(i.args.split() == ["requirements.txt", "."] for i in of(builder(), "COPY"))
    installs = [i.args for i in of(builder(), "RUN") if "pip install" in i.args]
    assert len(installs) == 1
    words = installs[0].split()
    assert "-r" in words and words[words.index("-r") + 1] == "requirements.txt"
    assert "--no-cache-dir" in words
    assert "python -m venv /opt/venv" in installs[0]


def pip_env(build_args: dict[str, str] | None = None) -> dict[str, str]:
    """The builder's PIP_* environment, its ARGs expanded as `docker build --build-arg` would."""
    args = arg_defaults(builder())
    return {name: expand(value, args, build_args) for name, value in env_of(builder()).items()
            if name.startswith("PIP_")}


def test_dependency_step_uses_the_cpu_torch_index():
    assert arg_defaults(builder())["TORCH_INDEX_URL"] == CPU_INDEX
    assert pip_env()["PIP_EXTRA_INDEX_URL"] == CPU_INDEX
    assert not [name for name in env_of(final()) if name.startswith("PIP_")], "pip's settings stay in the builder"


def test_dependency_step_by_default_reads_pypi_and_the_cpu_index_and_no_local_wheel():
    assert pip_env() == {"PIP_INDEX_URL": "https://pypi.org/simple", "PIP_EXTRA_INDEX_URL": CPU_INDEX,
                         "PIP_NO_INDEX": "0", "PIP_FIND_LINKS": "/wheels", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    tracked = subprocess.run(["git", "ls-files", "wheels"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert sorted(tracked.stdout.split()) == ["wheels/.gitignore", "wheels/README.md"], "the repo ships no wheel"


@pytest.mark.parametrize("build_args, expected", [
    ({"PIP_INDEX_URL": "https://mirror.example.com/pypi/simple",
      "TORCH_INDEX_URL": "https://mirror.example.com/pytorch/whl/cpu"},
     {"PIP_INDEX_URL": "https://mirror.example.com/pypi/simple",
      "PIP_EXTRA_INDEX_URL": "https://mirror.example.com/pytorch/whl/cpu"}),
    ({"TORCH_INDEX_URL": ""}, {"PIP_EXTRA_INDEX_URL": ""}),
    ({"PIP_NO_INDEX": "1"}, {"PIP_NO_INDEX": "1"}),
], ids=["mirror", "local-torch-wheel", "air-gapped"])
def test_dependency_step_takes_where_pip_looks_as_build_args(build_args, expected):
    env = pip_env(build_args)
    assert {name: env[name] for name in expected} == expected
    assert env["PIP_FIND_LINKS"] == "/wheels"


def test_dependency_step_offers_the_wheels_directory_to_pip():
    copies = [i.flags()[1].split() for i in of(builder(), "COPY")]
    assert ["wheels/", "/wheels/"] in copies
    assert WHEELS.is_dir() and not dockerignored("wheels") and not dockerignored("wheels/torch-2.13.0+cpu.whl")
    assert not [i for i in of(final(), "COPY") if "wheels" in i.args], "wheels never reach the final stage"


def test_pip_accepts_the_default_and_the_air_gapped_settings(tmp_path):
    """pip itself reads PIP_NO_INDEX=0 as off and 1 as on, and an empty PIP_EXTRA_INDEX_URL as none."""
    for no_index, indexes in (("0", ["http://127.0.0.1:9/simple"]), ("1", [])):
        env = {"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": "/dev/null", "PIP_NO_INDEX": no_index,
               "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": str(tmp_path), "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
               "PIP_RETRIES": "0", "PIP_TIMEOUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(tmp_path / "out"),
                                 "clipsvc-no-such-package==1"], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 1 and "No matching distribution" in result.stderr, result.stderr
        looked = re.findall(r"^Looking in indexes: (.*)$", result.stdout, flags=re.MULTILINE)
        assert [url for line in looked for url in line.split(", ")] == indexes, result.stdout
        assert f"Looking in links: {tmp_path}" in result.stdout


def test_dependency_step_pins_torch_exactly():
    torch = [line for line in requirement_lines() if re.match(r"torch\b(?![-_])", line, flags=re.IGNORECASE)]
    assert len(torch) == 1, "torch must appear exactly once"
    assert re.fullmatch(r"torch==\d+(\.\d+)+", torch[0]), f"{torch[0]!r}: pin it as torch==X.Y.Z, no range or bare name"


@pytest.mark.parametrize("line", requirement_lines())
def test_dependency_step_pins_every_requirement(line):
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!-]+", line), line


def _third_party_imports() -> set[str]:
    """What the service imports; the client (clipsvc/client) is not in the image and has requirements-client.txt."""
    names: set[str] = set()
    service = [p for p in (ROOT / "clipsvc").rglob("*.py") if "client" not in p.relative_to(ROOT / "clipsvc").parts]
    for path in [ROOT / "wsgi.py", ROOT / "gunicorn.conf.py", *service]:
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
