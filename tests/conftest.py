"""Shared fixtures: one tiny stand-in model per test session, the app and its client, and one real gunicorn
server with the default settings that every test file may share (`served`)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from clipsvc.encoder.model import ClipEncoder
from clipsvc.encoder.standin import build_standin
from clipsvc.settings import Settings
from clipsvc.web.app import create_app
from testkit.encoding import cpu_encoder, cpu_settings
from testkit.images import image_bytes  # noqa: F401  (test modules import it from here)
from testkit.server import Server, gunicorn

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real CLIP architecture and file layout, tiny and with seeded random weights."""
    return build_standin(tmp_path_factory.mktemp("models") / "clip-tiny", arch="tiny")


@pytest.fixture(scope="session")
def encoder(model_dir: Path) -> ClipEncoder:
    """Built as a worker builds its own, inference thread included (a daemon thread: one for the session)."""
    return cpu_encoder(model_dir)


@pytest.fixture
def settings(model_dir: Path) -> Settings:
    return cpu_settings(model_dir)


@pytest.fixture
def app(settings: Settings, encoder: ClipEncoder):
    return create_app(settings, encoder)


@pytest.fixture(scope="session")
def served(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Real gunicorn with the tests' settings (two workers, both loaded), started once for every test that only
    sends it requests. A test that signals, kills or reconfigures a server starts its own (testkit.server)."""
    with gunicorn(model_dir, tmp_path_factory.mktemp("served") / "server.log") as server:
        yield server


def load_bench(name: str):
    """Yield bench/<name>.py loaded by path (bench/ is not a package), as `python bench/<name>.py` runs it."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(f"clipsvc_bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def post_clip(client, fields: dict, headers: dict | None = None):
    """POST a multipart form: bytes values become file parts, str values plain fields."""
    data = {key: (io.BytesIO(value), f"{key}.bin") if isinstance(value, bytes) else value
            for key, value in fields.items()}
    return client.post("/syte_test/clip", data=data, headers=headers or {}, content_type="multipart/form-data")
