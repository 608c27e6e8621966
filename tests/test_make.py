"""The Makefile: every target defined and phony, each prints the commands the README and the guides name."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from clipsvc.encoder.standin import ARCHS
from testkit import ROOT
from testkit.deploy import MAKE_TARGETS, MAKEFILE, app_container, compose

README = ROOT / "README.md"


def make_dry_run(target: str) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    # A clean environment: the Makefile's `?=` defaults, not this shell's CLIP_MODEL_DIR or MAKEFLAGS.
    result = subprocess.run([make, "--no-print-directory", "-n", target], cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"}, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def readme_test_command() -> str:
    """`ruff check . && python -m pytest`: the README's test command after the venv and install steps."""
    command = re.search(r"^python3 -m venv .+pytest$", README.read_text(), flags=re.MULTILINE).group(0)
    return command.split("&& ", 3)[-1]


def test_every_target_is_defined_and_phony():
    text = MAKEFILE.read_text()
    defined = set(re.findall(r"^([A-Za-z0-9_-]+):(?!=)", text, flags=re.MULTILINE))
    phony = {name for line in re.findall(r"^\.PHONY:(.*)$", text, flags=re.MULTILINE) for name in line.split()}
    assert set(MAKE_TARGETS) <= defined
    assert set(MAKE_TARGETS) <= phony


@pytest.mark.parametrize("target, expected", MAKE_TARGETS.items())
def test_make_prints(target, expected):
    output = make_dry_run(target)
    for text in expected:
        assert text in output


def test_make_test_runs_the_readme_test_command_in_the_venv():
    output = make_dry_run("test").strip()
    assert output == f". .venv/bin/activate && {readme_test_command()}"


def test_make_standin_and_bench_name_real_architectures():
    assert "vit-l-14" in ARCHS and "vit-b-32" in ARCHS
    bench = (ROOT / "bench" / "perf.py").read_text()
    for flag in re.findall(r"--[a-z-]+", make_dry_run("bench")):
        assert f'"{flag}"' in bench, f"bench/perf.py has no {flag}"


def test_image_names_agree_across_makefile_compose_and_kubernetes():
    assert compose()["services"]["clipsvc"]["image"] in make_dry_run("docker").split()
    assert compose()["services"]["clipsvc-gpu"]["image"] in make_dry_run("docker-gpu").split()
    assert app_container("cpu")["image"].split(":")[0] == compose()["services"]["clipsvc"]["image"]
    assert app_container("gpu")["image"].split(":")[0] == compose()["services"]["clipsvc-gpu"]["image"]



def test_make_test_all_installs_the_optional_tools_and_requires_their_tests_as_ci_does():
    """`make test-all`, which the README offers for the tests that skip: newman from the lock file, clip-as-service's
    client in its own environment, then the README's test command with every CLIPSVC_REQUIRE_* that .ci/run sets."""
    lines = make_dry_run("test-all").strip().splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    assert lines[0] in ci  # npm ci, exactly as CI runs it
    assert "-m venv .venv-clip-client" in lines[1]
    assert lines[2] == (".venv-clip-client/bin/python -m pip install --quiet --disable-pip-version-check "
                        "-r requirements-clip-client.txt") and lines[2] in ci
    required = sorted(re.findall(r"^export (CLIPSVC_REQUIRE_\w+=1)$", ci, flags=re.MULTILINE))
    exported = re.findall(r"CLIPSVC_REQUIRE_\w+=1", lines[3])
    assert len(required) == 4 and sorted(exported) == required
    assert lines[3] == f". .venv/bin/activate && export {' '.join(exported)} && {readme_test_command()}"
    assert "make test-all" in README.read_text()
