"""Dockerfile.gpu: lint-clean, the pinned torch's CUDA image, and otherwise the CPU image's environment and CMD."""

from __future__ import annotations

import re

import pytest

from clipsvc.settings import ENV_VARS, Settings
from testkit import ROOT
from testkit.deploy import GPU_DOCKERFILE, gpu_stage
from testkit.dockerfile import (
    APP_FILES,
    GUNICORN_CMD,
    NOT_DEFAULTED,
    REQUIREMENTS,
    assert_hadolint_clean,
    base_images,
    env_of,
    exec_form,
    final,
    of,
    parse_dockerfile,
    requirement_lines,
)
from testkit.dockerignore import dockerignored

SETTINGS = Settings()


def torch_pin() -> str:
    (line,) = [line for line in requirement_lines() if line.startswith("torch==")]
    return line.removeprefix("torch==")


def test_gpu_hadolint_finds_nothing():
    assert_hadolint_clean(GPU_DOCKERFILE)


def gpu_base_image(build_args: dict[str, str] | None = None) -> str:
    (base,) = base_images(parse_dockerfile(GPU_DOCKERFILE.read_text()), build_args)
    return base


def test_gpu_base_image_ships_the_pinned_torch_with_cuda_12():
    base = gpu_base_image()
    match = re.fullmatch(r"pytorch/pytorch:(?P<torch>[\d.]+)-cuda12\.\d+-cudnn9-runtime", base)
    assert match, f"{base}: expected pytorch/pytorch:<torch>-cuda12.x-cudnn9-runtime"
    assert match["torch"] == torch_pin(), "the base image's torch must be requirements.txt's"


def test_gpu_base_image_is_a_build_arg():
    newer = f"pytorch/pytorch:{torch_pin()}-cuda12.8-cudnn9-runtime"
    assert gpu_base_image({"BASE_IMAGE": newer}) == newer


def test_gpu_installs_every_requirement_but_torch_without_a_cache():
    (install,) = [i.args for i in of(gpu_stage(), "RUN") if "pip install" in i.args]
    pattern = re.search(r"grep -v '([^']+)' (\S+)", install)
    assert pattern and pattern[2].endswith("requirements.txt")
    removed = [line for line in REQUIREMENTS.read_text().splitlines() if re.search(pattern[1], line)]
    assert removed == [f"torch=={torch_pin()}"]
    assert "--no-cache-dir" in install.split()
    assert "torch.version.cuda is None" in install, "the build must fail if pip replaced the CUDA torch"
    assert "PIP_EXTRA_INDEX_URL" not in env_of(gpu_stage()), "the CPU index would swap torch for the CPU build"


def test_gpu_environment_is_the_cpu_images_but_path():
    cpu = {k: v for k, v in env_of(final()).items() if k != "PATH"}
    assert env_of(gpu_stage()) == cpu
    assert env_of(gpu_stage())["CLIP_DEVICE"] == "auto"


@pytest.mark.parametrize("field, var", sorted((field, var) for field, (var, _) in ENV_VARS.items()
                                                if var not in NOT_DEFAULTED))
def test_gpu_env_line_equals_the_code_default(field, var):
    env = env_of(gpu_stage())
    assert var in env, f"{var} is missing from Dockerfile.gpu's ENV"
    assert getattr(Settings.from_env({var: env[var]}), field) == getattr(SETTINGS, field)


@pytest.mark.parametrize("name, expected", [
    ("EXPOSE", [str(SETTINGS.port)]),
    ("VOLUME", [str(SETTINGS.model_dir)]),
    ("USER", ["10001:10001"]),
    ("WORKDIR", ["/app"]),
    ("ENTRYPOINT", []),
])
def test_gpu_instruction(name, expected):
    assert [i.args for i in of(gpu_stage(), name)] == expected


def test_gpu_healthcheck_and_cmd_are_the_cpu_images():
    assert [i.args for i in of(gpu_stage(), "HEALTHCHECK")] == [i.args for i in of(final(), "HEALTHCHECK")]
    cmds = of(gpu_stage(), "CMD")
    assert exec_form(cmds[-1].args) == GUNICORN_CMD
    assert of(gpu_stage(), "USER")[-1].line < cmds[-1].line


def test_gpu_copies_the_app_and_makes_the_cache_dir_writable():
    copies = [i.flags()[1].split() for i in of(gpu_stage(), "COPY")]
    sources = [s.strip("/").removeprefix("./") for words in copies for s in words[:-1]]
    assert set(APP_FILES) <= set(sources)
    assert [s for s in sources if dockerignored(s) or not (ROOT / s).exists()] == []
    cache_dir = env_of(gpu_stage())["CLIP_MODEL_CACHE_DIR"]
    assert any(cache_dir in i.args and "chown" in i.args for i in of(gpu_stage(), "RUN"))

