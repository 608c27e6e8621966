"""The README is part of the contract: its commands, table and docker line must match the code."""

import re
import subprocess
from pathlib import Path

import pytest

from clipsvc.settings import ENV_VARS, Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def config_table() -> dict[str, str]:
    rows = re.findall(r"^\| `([A-Z_]+)` \| (.+?) \|", README, flags=re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_every_variable_is_documented():
    assert set(config_table()) == {var for var, _ in ENV_VARS.values()}


@pytest.mark.parametrize("field, spec", ENV_VARS.items())
def test_documented_defaults_equal_the_code(field, spec):
    var = spec[0]
    default = config_table()[var]
    if not default.startswith("`"):  # computed or empty defaults are described in words
        assert getattr(Settings(), field) in (None, ())
        return
    assert getattr(Settings.from_env({var: default.strip("`")}), field) == getattr(Settings(), field)


def test_docker_run_line_uses_the_default_port_and_model_path():
    settings = Settings()
    assert f"docker run -v /path/to/host/model:{settings.model_dir} -p {settings.port}:{settings.port}" in README


def test_ci_runs_the_readme_test_command():
    test_command = re.search(r"^python3 -m venv .+pytest$", README, flags=re.MULTILINE).group(0)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet --disable-pip-version-check -r requirements-dev.txt" in ci
    assert test_command.split("&& ", 3)[-1] in ci  # `ruff check . && python -m pytest`


def test_serve_command_names_the_gunicorn_config():
    assert "gunicorn -c gunicorn.conf.py wsgi:app" in README
    assert subprocess.run(["git", "ls-files", "--error-unmatch", "gunicorn.conf.py", "wsgi.py"], cwd=ROOT,
                          capture_output=True).returncode == 0
