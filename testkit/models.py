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


def plant_outliers(model_dir: Path, out: Path) -> Path:
    """A copy of a stand-in whose fp32 function is the same but whose low-precision error is large, as real
    weights with outlier channels can make it: a huge constant in every position embedding (LayerNorm subtracts it
    again: exact in fp32, while bf16 keeps ~3 significant digits of it), and one LayerNorm channel 1000x before
    each MLP with its weights scaled back (int8's per-tensor activation scale then flattens every other channel).
    """
    import shutil

    import torch
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        for tower in (model.vision_model, model.text_model):
            tower.embeddings.position_embedding.weight += 4096.0
            for layer in tower.encoder.layers:
                layer.layer_norm2.weight[0] *= 1000.0
                layer.layer_norm2.bias[0] *= 1000.0
                layer.mlp.fc1.weight[:, 0] /= 1000.0
    model.save_pretrained(out)
    for file in model_dir.iterdir():
        if not (out / file.name).exists():
            shutil.copy(file, out / file.name)
    return out
