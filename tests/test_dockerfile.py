"""The Dockerfile is part of the contract: lint-clean, and its ENV, port, volume and CMD match the code.

No Docker engine is needed: testkit.dockerfile and testkit.dockerignore read the Dockerfile and .dockerignore,
and hadolint lints the file. The dependency step's tests are in test_dockerfile_dependencies.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from clipsvc.settings import ENV_VARS, Settings
from testkit import ROOT
from testkit.dockerfile import (
    APP_FILES,
    DOCKERFILE,
    GUNICORN_CMD,
    NOT_DEFAULTED,
    assert_hadolint_clean,
    base_images,
    dockerfile,
    env_of,
    exec_form,
    final,
    final_copy_sources,
    of,
    seconds,
    stages,
)
from testkit.dockerignore import dockerignored

BASE_IMAGE = "python:3.11-slim-bookworm"
VAR_TO_FIELD = {var: field for field, (var, _) in ENV_VARS.items()}


# --- Lint -----------------------------------------------------------------------------------------------------------


def test_hadolint_finds_nothing():
    assert_hadolint_clean(DOCKERFILE)


# --- Shape of the image --------------------------------------------------------------------------------------------


def test_the_build_has_a_builder_stage_and_a_slim_final_stage():
    froms = [stage[0].args.split() for stage in stages(dockerfile())]
    assert len(froms) >= 2, "expected a multi-stage build"
    assert base_images(dockerfile()) == [BASE_IMAGE] * len(froms), "by default, both stages on the slim image"
    assert froms[0][1:] == ["AS", "builder"] or froms[0][1:] == ["as", "builder"], froms[0]


def test_a_mirrors_base_image_is_one_build_arg_for_every_stage():
    mirrored = "mirror.example.com/library/python:3.11-slim-bookworm"
    assert set(base_images(dockerfile(), {"BASE_IMAGE": mirrored})) == {mirrored}


@pytest.mark.parametrize("forbidden", ["pip install", "apt-get", "apk add", "gcc", "build-essential"])
def test_final_stage_installs_no_build_tools(forbidden):
    runs = " ".join(i.args for i in of(final(), "RUN"))
    assert forbidden not in runs


def test_final_stage_takes_the_venv_from_the_builder_and_puts_it_on_path():
    copies = [i.flags() for i in of(final(), "COPY")]
    assert any(flags.get("from") == "builder" and rest.split() == ["/opt/venv", "/opt/venv"]
               for flags, rest in copies)
    assert env_of(final())["PATH"].startswith("/opt/venv/bin:")


@pytest.mark.parametrize("name", APP_FILES)
def test_final_stage_copies_what_gunicorn_needs(name):
    assert name in final_copy_sources()
    assert (ROOT / name).exists()
    assert not dockerignored(name)


def test_every_copied_file_exists_and_is_not_dockerignored():
    sources = [*final_copy_sources(), "requirements.txt"]
    assert [s for s in sources if not (ROOT / s).exists()] == []
    assert [s for s in sources if dockerignored(s)] == []


def test_the_package_is_complete_in_the_build_context():
    modules = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "clipsvc").rglob("*.py"))
    assert "clipsvc/__init__.py" in modules
    assert [m for m in modules if dockerignored(m)] == []


@pytest.mark.parametrize("path", [".git", ".git/HEAD", ".venv/bin/python", "models/vit-l-14/model.safetensors",
                                  "clip-vit-large-patch14.zip", "models/clip.zip", "clipsvc/__pycache__/app.pyc",
                                  "tests/test_api.py", "testkit/server.py", ".pytest_cache", ".ruff_cache"])
def test_dockerignore_keeps_out(path):
    assert dockerignored(path)


def test_workdir_is_app_and_the_app_is_copied_into_it():
    workdirs = of(final(), "WORKDIR")
    assert [w.args for w in workdirs] == ["/app"]
    app_copies = [i for i in of(final(), "COPY") if "from" not in i.flags()[0]]
    assert app_copies and all(c.line > workdirs[0].line for c in app_copies)
    assert all(c.flags()[1].split()[-1].startswith("./") for c in app_copies), "copy relative to WORKDIR"


def test_runs_as_a_non_root_user():
    users = [i for i in final() if i.name == "USER"]
    assert users, "the final stage has no USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0")
    cmd_line = of(final(), "CMD")[-1].line
    assert users[-1].line < cmd_line


def test_cmd_is_exec_form_gunicorn_so_sigterm_reaches_it():
    cmds = of(final(), "CMD")
    assert exec_form(cmds[-1].args) == GUNICORN_CMD
    assert of(final(), "ENTRYPOINT") == [], "an ENTRYPOINT would wrap gunicorn"


def test_exposes_the_default_port():
    assert [i.args for i in of(final(), "EXPOSE")] == [str(Settings().port)]


def test_volume_is_the_default_model_dir():
    volumes = [i.args for i in of(final(), "VOLUME")]
    assert volumes == ["/model"]
    assert volumes[0] == str(Settings().model_dir)


def test_healthcheck_asks_readyz_on_the_configured_port_with_a_long_start_period():
    checks = of(final(), "HEALTHCHECK")
    assert len(checks) == 1
    flags, rest = checks[0].flags()
    assert "/readyz" in rest and "127.0.0.1" in rest and "PORT" in rest
    assert "urllib" in rest, "slim images have no curl or wget"
    assert seconds(flags.get("start-period", "0s")) >= 60, "loading ViT-L/14 on CPU takes time"
    assert rest.startswith("CMD ")
    argv = exec_form(rest.removeprefix("CMD ").strip())
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")


# --- ENV against clipsvc/settings.py -------------------------------------------------------------------------------


@pytest.mark.parametrize("field, var", sorted((field, var) for field, (var, _) in ENV_VARS.items()
                                                if var not in NOT_DEFAULTED))
def test_every_setting_is_an_env_line_equal_to_the_code_default(field, var):
    env = env_of(final())
    assert var in env, f"{var} is missing from the final stage's ENV"
    assert getattr(Settings.from_env({var: env[var]}), field) == getattr(Settings(), field), \
        f"ENV {var}={env[var]} differs from the default in clipsvc/settings.py"


def test_no_unknown_clip_variables():
    unknown = {var for var in env_of(final()) if var.startswith("CLIP_") and var not in VAR_TO_FIELD}
    assert unknown == set(), "typo, or a setting clipsvc/settings.py does not read"


def test_torch_threads_is_left_to_the_code():
    assert "CLIP_TORCH_THREADS" not in env_of(final()), "by default the threads follow the load"


def test_the_image_environment_is_a_valid_configuration():
    env = env_of(final())
    settings = Settings.from_env(env)
    assert settings == Settings(model_cache_dir=Path(env["CLIP_MODEL_CACHE_DIR"]))


def test_model_cache_dir_is_created_for_the_user():
    cache_dir = env_of(final())["CLIP_MODEL_CACHE_DIR"]
    runs = [i.args for i in of(final(), "RUN")]
    assert any(cache_dir in run and "chown" in run for run in runs), f"{cache_dir} must be writable by the USER"


@pytest.mark.parametrize("var, value", [("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1"),
                                        ("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")])
def test_runtime_environment(var, value):
    assert env_of(final()).get(var) == value
