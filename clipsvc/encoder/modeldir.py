"""Find the CLIP model the operator mounted: a directory, a directory holding one, or the zip."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import zipfile
from pathlib import Path

from ..settings import env_var

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
TOKENIZER_FILES = (("vocab.json", "merges.txt"), ("tokenizer.json",))
MAX_UNZIPPED_BYTES = 16 * 1024**3  # the real model unzips to ~1.7 GB; refuse zip bombs


class ModelDirError(RuntimeError):
    """The model cannot be used; the message names the path and what is wrong."""


class ModelLoadError(RuntimeError):
    """The weights or their companions could not be loaded (in a worker); the message names the path.

    Declared here, beside the other model error, so that gunicorn's master catches it without importing torch.
    """


def resolve_model_dir(path: Path, cache_dir: Path | None = None) -> Path:
    """The directory to load from; unzips `path` (or the one zip inside it) into `cache_dir`."""
    try:
        return _resolve(Path(path), cache_dir)
    except OSError as exc:  # e.g. a root-owned 0600 mount read by the image's non-root user
        raise ModelDirError(f"model path {path} cannot be read ({exc}); check the mount and its permissions") from None


def _resolve(path: Path, cache_dir: Path | None) -> Path:
    if not path.exists():
        raise ModelDirError(
            f"model path {path} does not exist; mount the model there "
            f"(docker run -v /path/to/host/model:/model ...) or set {env_var('model_dir')}"
        )
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise ModelDirError(f"model path {path} is a file but not a zip archive of a CLIP model directory")
        return _resolve(_unzip(path, cache_dir), cache_dir)
    if _looks_like_model(path):
        check_model_dir(path)
        return path
    candidates = sorted(p for p in path.iterdir() if p.is_dir() and _looks_like_model(p))
    zips = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".zip")
    if len(candidates) == 1:
        check_model_dir(candidates[0])
        return candidates[0]
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise ModelDirError(f"model path {path} holds several model directories ({names}); point "
                             f"{env_var('model_dir')} at one")
    if len(zips) == 1:
        return _resolve(zips[0], cache_dir)
    listing = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
    raise ModelDirError(
        f"model path {path} is not a CLIP model directory (it holds {listing}); expected config.json, "
        "preprocessor_config.json, tokenizer files and model.safetensors or pytorch_model.bin"
    )


def _looks_like_model(path: Path) -> bool:
    return (path / "config.json").is_file()


def _read_json(file: Path) -> object:
    try:
        return json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelDirError(f"{file} is not valid JSON ({exc})") from None


def check_model_dir(path: Path) -> None:
    """Cheap checks before any worker forks: every file there and readable, config.json a CLIP config."""
    config = _read_json(path / "config.json")
    if not isinstance(config, dict) or config.get("model_type") != "clip":
        kind = config.get("model_type") if isinstance(config, dict) else type(config).__name__
        raise ModelDirError(f"{path / 'config.json'} describes model_type {kind!r}, not a CLIP model ('clip')")
    missing = []
    if not (path / "preprocessor_config.json").is_file():
        missing.append("preprocessor_config.json")
    if not any(all((path / f).is_file() for f in group) for group in TOKENIZER_FILES):
        missing.append("tokenizer files (vocab.json and merges.txt, or tokenizer.json)")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        missing.append("weights (model.safetensors or pytorch_model.bin)")
    if missing:
        raise ModelDirError(f"model directory {path} lacks {', '.join(missing)}")
    for name in ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json"):
        if (path / name).is_file():
            _read_json(path / name)
    for weights in _weight_files(path):
        problem = _weights_problem(weights)
        if problem:
            raise ModelDirError(f"could not load the CLIP model from {path}: {weights.name} {problem}")


def _weight_files(path: Path) -> list[Path]:
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ModelDirError(f"{index} is not a valid safetensors index") from None
        return [path / shard for shard in shards]
    return [path / name for name in ("model.safetensors", "pytorch_model.bin") if (path / name).is_file()]


def _weights_problem(weights: Path) -> str | None:
    """Catch truncated or corrupt weights in the master, cheaply, before workers fail one by one."""
    if not weights.is_file():
        return "is missing"
    size = weights.stat().st_size
    if weights.suffix == ".bin":
        # torch.save writes a zip: truncation loses its central directory, at the end of the file.
        return None if zipfile.is_zipfile(weights) else "is not a readable torch checkpoint (truncated?)"
    with weights.open("rb") as f:
        head = f.read(8)
        header_len = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < header_len <= min(size - 8, 100 * 1024 * 1024):
            return f"is truncated or not safetensors ({size} bytes)"
        try:
            header = json.loads(f.read(header_len))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "has a corrupt safetensors header"
    if 8 + header_len + end > size:
        return f"is truncated: {size} bytes, its header describes {8 + header_len + end}"
    return None


def model_cache_root(cache_dir: Path | None) -> Path:
    """CLIP_MODEL_CACHE_DIR, by default the system's temp directory's `clipsvc-models`: where a zipped model is
    unzipped and OpenVINO's conversion is kept."""
    return Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "clipsvc-models"


def _unzip(archive: Path, cache_dir: Path | None) -> Path:
    """Extract once per archive version; later starts reuse the finished extraction."""
    stat = archive.stat()
    digest = hashlib.sha256(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    root = model_cache_root(cache_dir)
    target = root / f"{archive.stem}-{digest}"
    if (target / ".complete").is_file():
        return target
    staging = None
    try:
        with zipfile.ZipFile(archive) as zf:
            _check_members(archive, zf.infolist())
            root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".unzip-", dir=root))
            zf.extractall(staging)
        (staging / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    except (OSError, zipfile.BadZipFile) as exc:
        if staging is not None:  # a half-finished extraction (disk full...) must not pile up
            shutil.rmtree(staging, ignore_errors=True)
        raise ModelDirError(
            f"could not unzip {archive} into {root} ({exc}); set {env_var('model_cache_dir')} to a "
            "writable directory"
        ) from None
    return target


def _check_members(archive: Path, members: list[zipfile.ZipInfo]) -> None:
    """Refuse zip bombs and members that would land outside the extraction directory (zip slip)."""
    if sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
        raise ModelDirError(f"{archive} unzips to more than {MAX_UNZIPPED_BYTES} bytes; refusing it")
    for member in members:
        parts = Path(member.filename).parts
        if member.filename.startswith(("/", "\\")) or ".." in parts:
            raise ModelDirError(f"{archive} has an unsafe member path {member.filename!r}")
