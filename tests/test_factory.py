"""The factory and the probes: building the app loads no weights; readiness follows the encoder."""

from pathlib import Path

import pytest
from conftest import post_clip

from clipsvc.web.app import create_app


def test_importing_and_building_the_app_loads_no_model(settings, monkeypatch):
    import clipsvc.encoder.model

    def refuse(*args, **kwargs):
        raise AssertionError("create_app must not load a model")

    monkeypatch.setattr(clipsvc.encoder.model.ClipEncoder, "build", classmethod(refuse))
    monkeypatch.setattr(clipsvc.encoder.model, "load_model", refuse)
    app = create_app(settings)
    assert app.extensions["clipsvc.encoder"] is None


def test_the_app_serves_the_encoder_it_is_given_and_reads_no_global(settings, encoder, monkeypatch, model_dir):
    """wsgi.py hands create_app the encoder this worker built; create_app itself never looks for one."""
    import runpy

    from clipsvc.server import lifecycle

    monkeypatch.setattr(lifecycle, "_state", lifecycle.ServerState(encoder=encoder))
    assert create_app(settings).extensions["clipsvc.encoder"] is None
    monkeypatch.setenv("CLIP_MODEL_DIR", str(model_dir))
    served = runpy.run_path(str(Path(__file__).resolve().parent.parent / "wsgi.py"))["app"]
    assert served.extensions["clipsvc.encoder"] is encoder


def test_settings_come_from_the_environment_when_not_given(monkeypatch, model_dir):
    monkeypatch.setenv("CLIP_MAX_ITEMS", "3")
    monkeypatch.setenv("CLIP_MAX_REQUEST_MB", "2")
    monkeypatch.setenv("CLIP_MAX_IMAGE_MB", "1")
    app = create_app()
    assert app.extensions["clipsvc.settings"].max_items == 3
    assert app.config["MAX_CONTENT_LENGTH"] == 2 * 1024 * 1024


@pytest.fixture
def unloaded(settings):
    return create_app(settings).test_client()


@pytest.mark.parametrize("path", ["/readyz", "/meta"])
def test_not_ready_without_a_model(unloaded, path):
    response = unloaded.get(path)
    assert response.status_code == 503
    assert response.json["error"]["code"] == "model_not_ready"
    assert response.headers["Retry-After"] == "5"  # the client (clipsvc.client) waits that long


def test_encoding_without_a_model_is_503(unloaded):
    response = post_clip(unloaded, {"text-1": "a"})
    assert response.json["error"]["code"] == "model_not_ready" and response.headers["Retry-After"] == "5"


def test_live_without_a_model(unloaded):
    assert unloaded.get("/livez").json == {"status": "alive"}


def test_ready_and_meta_with_a_model(client, encoder):
    assert client.get("/readyz").json == {"status": "ready"}
    meta = client.get("/meta").json
    assert meta["embedding_dim"] == encoder.facts.embedding_dim
    assert {"model", "device", "dtype", "version", "limits"} <= set(meta)
