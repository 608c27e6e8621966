"""Finding the model: a directory, a directory holding one, or the user's zip; clear errors otherwise."""

import shutil
import zipfile
from pathlib import Path

import pytest

from clipsvc.encoder.modeldir import ModelDirError, resolve_model_dir
from testkit.models import zip_model


def test_a_model_directory_is_used_as_is(model_dir):
    assert resolve_model_dir(model_dir) == model_dir


def test_a_directory_holding_one_model(model_dir, tmp_path):
    shutil.copytree(model_dir, tmp_path / "clip-vit-large-patch14")
    assert resolve_model_dir(tmp_path) == tmp_path / "clip-vit-large-patch14"


def test_the_zip_is_extracted_once(model_dir, tmp_path):
    archive = zip_model(model_dir, tmp_path / "clip-vit-large-patch14.zip")
    cache = tmp_path / "cache"
    first = resolve_model_dir(archive, cache)
    assert (first / "config.json").is_file() and first.name == "clip-vit-large-patch14"
    marker = first / "config.json"
    mtime = marker.stat().st_mtime_ns
    assert resolve_model_dir(archive, cache) == first
    assert marker.stat().st_mtime_ns == mtime  # reused, not unzipped again


def test_a_directory_holding_the_zip(model_dir, tmp_path):
    mounted = tmp_path / "mounted"
    mounted.mkdir()
    zip_model(model_dir, mounted / "clip-vit-large-patch14.zip")
    assert (resolve_model_dir(mounted, tmp_path / "cache") / "config.json").is_file()


def test_zip_slip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../../outside.txt", "x")
    with pytest.raises(ModelDirError, match="unsafe member"):
        resolve_model_dir(archive, tmp_path / "cache")
    assert not (tmp_path / "outside.txt").exists()


def broken(model_dir: Path, tmp_path: Path, change) -> Path:
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    change(target)
    return target


@pytest.mark.parametrize("change, message", [
    (lambda p: (p / "config.json").write_text("{not json"), "not valid JSON"),
    (lambda p: (p / "config.json").write_text('{"model_type": "bert"}'), "not a CLIP model"),
    (lambda p: (p / "model.safetensors").unlink(), "lacks weights"),
    (lambda p: [(p / f).unlink() for f in ("tokenizer.json", "vocab.json")], "lacks tokenizer files"),
    (lambda p: (p / "preprocessor_config.json").unlink(), "lacks preprocessor_config.json"),
])
def test_broken_directories_name_the_problem(model_dir, tmp_path, change, message):
    path = broken(model_dir, tmp_path, change)
    with pytest.raises(ModelDirError, match=message) as caught:
        resolve_model_dir(path)
    assert str(path) in str(caught.value)


def test_missing_path(tmp_path):
    with pytest.raises(ModelDirError, match="does not exist"):
        resolve_model_dir(tmp_path / "absent")


def test_empty_directory(tmp_path):
    with pytest.raises(ModelDirError, match="not a CLIP model directory"):
        resolve_model_dir(tmp_path)


def test_two_candidates_are_ambiguous(model_dir, tmp_path):
    shutil.copytree(model_dir, tmp_path / "a")
    shutil.copytree(model_dir, tmp_path / "b")
    with pytest.raises(ModelDirError, match="several model directories"):
        resolve_model_dir(tmp_path)


def test_a_file_that_is_not_a_zip(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"junk")
    with pytest.raises(ModelDirError, match="not a zip"):
        resolve_model_dir(tmp_path / "model.bin")


def cut(path: Path, keep) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:keep(len(data))])


@pytest.mark.parametrize("weights, keep, message", [
    ("safetensors", lambda n: 1000, "truncated"),
    ("safetensors", lambda n: n - 100, "truncated"),
    ("safetensors", lambda n: 4, "truncated"),
    ("bin", lambda n: n - 100, "not a readable torch checkpoint"),
])
def test_truncated_weights_are_caught_before_any_worker_loads(tmp_path, weights, keep, message):
    from clipsvc.encoder.standin import build_standin

    path = build_standin(tmp_path / "m", arch="tiny", weights=weights)
    cut(path / ("model.safetensors" if weights == "safetensors" else "pytorch_model.bin"), keep)
    with pytest.raises(ModelDirError, match=message) as caught:
        resolve_model_dir(path)
    assert str(path) in str(caught.value)


def test_bin_weights_pass_the_check(tmp_path):
    from clipsvc.encoder.standin import build_standin

    path = build_standin(tmp_path / "m", arch="tiny", weights="bin")
    assert resolve_model_dir(path) == path
