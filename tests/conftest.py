"""Shared fixtures: one tiny stand-in model per test session, the app and its client."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from clipsvc.encoder.model import ClipEncoder
from clipsvc.encoder.standin import build_standin
from clipsvc.settings import Settings
from clipsvc.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real CLIP architecture and file layout, tiny and with seeded random weights."""
    return build_standin(tmp_path_factory.mktemp("models") / "clip-tiny", arch="tiny")


@pytest.fixture(scope="session")
def encoder(model_dir: Path) -> ClipEncoder:
    return ClipEncoder.load(model_dir, device="cpu", threads=1)


@pytest.fixture
def settings(model_dir: Path) -> Settings:
    return Settings(model_dir=model_dir, device="cpu", workers=1, torch_threads=1)


@pytest.fixture
def app(settings: Settings, encoder: ClipEncoder):
    return create_app(settings, encoder)


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


def image_bytes(fmt: str = "JPEG", size: tuple[int, int] = (64, 48), mode: str = "RGB",
                color: object = (200, 40, 40), **save: object) -> bytes:
    """An encoded image made with Pillow, for any format and mode the tests need."""
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def post_clip(client, fields: dict, headers: dict | None = None):
    """POST a multipart form: bytes values become file parts, str values plain fields."""
    data = {key: (io.BytesIO(value), f"{key}.bin") if isinstance(value, bytes) else value
            for key, value in fields.items()}
    return client.post("/syte_test/clip", data=data, headers=headers or {}, content_type="multipart/form-data")
