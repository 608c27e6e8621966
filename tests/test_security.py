"""What the service refuses to do on a client's (or a model file's) behalf."""

import io

import pytest
import torch
from conftest import image_bytes

from clipsvc.encoder.model import ModelLoadError
from clipsvc.encoder.standin import build_standin
from testkit.encoding import cpu_encoder


class Payload:
    """An object whose unpickling would run a command: what a hostile pytorch_model.bin carries."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_runs_code_is_not_loaded(tmp_path):
    model = build_standin(tmp_path / "m", arch="tiny", weights="bin")
    marker = tmp_path / "pwned"
    state = torch.load(model / "pytorch_model.bin", weights_only=True)
    state["evil"] = Payload(marker)
    torch.save(state, model / "pytorch_model.bin")
    with pytest.raises(ModelLoadError):
        cpu_encoder(model)
    assert not marker.exists()


@pytest.mark.parametrize("filename", ["../../../../tmp/clipsvc-owned.jpg", "/etc/passwd", "C:\\x.jpg", "a\x00b.jpg"])
def test_upload_file_names_are_never_used_as_paths(client, filename, tmp_path):
    response = client.post("/syte_test/clip", content_type="multipart/form-data",
                           data={"image-1": (io.BytesIO(image_bytes()), filename)})
    assert response.status_code == 200
    assert filename not in response.get_data(as_text=True)


def test_debug_is_off_and_errors_carry_no_traceback(app, client):
    assert app.debug is False
    response = client.get("/nope")
    assert "Traceback" not in response.get_data(as_text=True)


def test_no_url_is_fetched(client):
    response = client.post("/syte_test/clip", content_type="multipart/form-data",
                           data={"image-1": "http://169.254.169.254/latest/meta-data/"})
    assert response.status_code == 400 and response.json["error"]["code"] == "image_not_a_file"
