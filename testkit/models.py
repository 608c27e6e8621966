"""Model directories in the shapes operators mount them."""

from __future__ import annotations

import zipfile
from pathlib import Path


def zip_model(model_dir: Path, archive: Path, inner: str = "clip-vit-large-patch14") -> Path:
    """`model_dir` zipped with its files under `inner/`, as the Hugging Face download unpacks."""
    with zipfile.ZipFile(archive, "w") as zf:
        for file in model_dir.iterdir():
            zf.write(file, f"{inner}/{file.name}")
    return archive
