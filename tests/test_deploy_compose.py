"""docker-compose.yml: the CPU and GPU services build, publish, mount and check the images as the code expects."""

from __future__ import annotations

import pytest

from clipsvc.settings import ENV_VARS, Settings
from testkit import ROOT
from testkit.deploy import compose, interpolate
from testkit.dockerfile import arg_defaults, exec_form, final, of, parse_dockerfile, seconds

SETTINGS = Settings()
KNOWN_VARS = {var for var, _ in ENV_VARS.values()}

COMPOSE_SERVICES = {
    # service: (Dockerfile, image, host port, profiles)
    "clipsvc": ("Dockerfile", "clipsvc", SETTINGS.port, None),
    "clipsvc-gpu": ("Dockerfile.gpu", "clipsvc-gpu", 8082, ["gpu"]),
}



def test_compose_has_the_cpu_and_gpu_services():
    assert set(compose()["services"]) == set(COMPOSE_SERVICES)


@pytest.mark.parametrize("name, dockerfile, image, host_port, profiles",
                         [(name, *spec) for name, spec in COMPOSE_SERVICES.items()])
def test_compose_service_builds_and_publishes_the_image(name, dockerfile, image, host_port, profiles):
    service = compose()["services"][name]
    assert (service["build"]["context"], service["build"]["dockerfile"]) == (".", dockerfile)
    assert set(service["build"]) == {"context", "dockerfile", "args"}
    assert (ROOT / dockerfile).is_file()
    assert service["image"] == image
    assert service.get("profiles") == profiles
    assert service["ports"] == [f"{host_port}:{SETTINGS.port}"]
    assert service["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", COMPOSE_SERVICES)
def test_compose_mounts_the_host_model_read_only_at_the_model_dir(name):
    (volume,) = compose()["services"][name]["volumes"]
    assert volume.startswith("${CLIP_MODEL_HOST_DIR:-./models/clip-vit-large-patch14}:")
    source, target, mode = interpolate(volume, {}).split(":")
    assert (source, target, mode) == ("./models/clip-vit-large-patch14", str(SETTINGS.model_dir), "ro")
    assert interpolate(volume, {"CLIP_MODEL_HOST_DIR": "/srv/clip"}).split(":")[0] == "/srv/clip"


@pytest.mark.parametrize("name", COMPOSE_SERVICES)
@pytest.mark.parametrize("host, workers, threads", [({}, SETTINGS.workers, None),
                                                    ({"WEB_CONCURRENCY": "4", "CLIP_TORCH_THREADS": "3"}, 4, 3)])
def test_compose_environment_comes_from_the_host_with_the_code_defaults(name, host, workers, threads):
    environment = compose()["services"][name]["environment"]
    assert set(environment) == {"WEB_CONCURRENCY", "CLIP_TORCH_THREADS"} <= KNOWN_VARS
    settings = Settings.from_env({var: interpolate(str(value), host) for var, value in environment.items()})
    assert (settings.workers, settings.torch_threads) == (workers, threads)


@pytest.mark.parametrize("name", COMPOSE_SERVICES)
def test_compose_healthcheck_is_the_images(name):
    check = compose()["services"][name]["healthcheck"]
    (image_check,) = of(final(), "HEALTHCHECK")
    flags, rest = image_check.flags()
    assert check["test"] == ["CMD", *exec_form(rest.removeprefix("CMD ").strip())]
    assert "/readyz" in check["test"][-1]
    for key in ("interval", "timeout", "start_period", "retries"):
        image_value = flags[key.replace("_", "-")]
        assert str(check[key]) == image_value if key == "retries" else seconds(check[key]) == seconds(image_value)


@pytest.mark.parametrize("name", COMPOSE_SERVICES)
def test_compose_stop_grace_outlasts_gunicorns_graceful_timeout(name):
    assert seconds(compose()["services"][name]["stop_grace_period"]) > SETTINGS.graceful_timeout


def test_compose_gpu_service_reserves_one_nvidia_gpu():
    (device,) = compose()["services"]["clipsvc-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert "deploy" not in compose()["services"]["clipsvc"]



MIRROR = {"BASE_IMAGE": "registry.example.com/python:3.11-slim-bookworm", "GPU_BASE_IMAGE": "registry.example.com/pt",
          "PIP_INDEX_URL": "https://pypi.example.com/simple", "TORCH_INDEX_URL": "", "PIP_NO_INDEX": "1"}


@pytest.mark.parametrize("name", COMPOSE_SERVICES)
def test_compose_passes_every_build_argument_with_the_dockerfiles_defaults(name):
    """`docker compose build` behind a mirror needs no edit: each ARG comes from the host's environment, else
    the Dockerfile's own default (TORCH_INDEX_URL set but empty stays empty: no torch index)."""
    dockerfile = COMPOSE_SERVICES[name][0]
    defaults = arg_defaults(parse_dockerfile((ROOT / dockerfile).read_text()))
    args = compose()["services"][name]["build"]["args"]
    assert set(args) == set(defaults)
    assert {arg: interpolate(value, {}) for arg, value in args.items()} == defaults
    mirrored = {arg: interpolate(value, MIRROR) for arg, value in args.items()}
    assert mirrored["PIP_INDEX_URL"] == MIRROR["PIP_INDEX_URL"] and mirrored["BASE_IMAGE"].startswith("registry.")
    if "TORCH_INDEX_URL" in args:
        assert (mirrored["TORCH_INDEX_URL"], mirrored["PIP_NO_INDEX"]) == ("", "1")
