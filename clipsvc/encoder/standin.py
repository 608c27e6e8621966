"""Write a stand-in CLIP model directory: the true architecture and file layout, seeded random weights.

Its vectors are meaningless; its shapes, speed and memory are real, and it loads through exactly
the code that loads openai/clip-vit-large-patch14. For tests and benchmarks only.

    python -m clipsvc.standin DIR --arch tiny|vit-b-32|vit-l-14
"""

from __future__ import annotations

import argparse
import itertools
import json
import string
from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPTokenizer

# Text and vision towers as published (openai/clip-vit-*), plus a tiny one for fast tests.
ARCHS: dict[str, dict] = {
    "tiny": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                    patch_size=32),
        projection_dim=32, vocab_size=2048,
    ),
    "vit-b-32": dict(
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    patch_size=32),
        projection_dim=512, vocab_size=49408,
    ),
    "vit-l-14": dict(
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                    patch_size=14),
        projection_dim=768, vocab_size=49408,
    ),
}

# openai/clip-vit-large-patch14's preprocessor_config.json, verbatim.
PREPROCESSOR_CONFIG = {
    "crop_size": 224,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 224,
}
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def byte_alphabet() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 byte values, in CLIP's vocabulary order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    rest = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + i) for i in range(len(rest))]


def vocab_and_merges(vocab_size: int) -> tuple[dict[str, int], list[str]]:
    """A valid byte-level BPE vocabulary of exactly `vocab_size` tokens, in CLIP's file layout.

    The merges build lowercase letter strings (two, then three letters...), word-final and not,
    so English text tokenises into multi-letter pieces much as with the real vocabulary.
    """
    alphabet = byte_alphabet()
    tokens = alphabet + [c + "</w>" for c in alphabet]
    wanted = vocab_size - len(tokens) - 2
    merges: list[str] = []
    known = set(tokens)
    letters = string.ascii_lowercase
    length = 2
    while len(merges) < wanted:
        for combo in itertools.product(letters, repeat=length):
            head, last = "".join(combo[:-1]), combo[-1]
            for left, right, new in ((head, last, head + last), (head, last + "</w>", head + last + "</w>")):
                if len(merges) < wanted and new not in known and left in known and right in known:
                    merges.append(f"{left} {right}")
                    tokens.append(new)
                    known.add(new)
            if len(merges) >= wanted:
                break
        length += 1
    tokens += [BOS, EOS]
    return {token: i for i, token in enumerate(tokens)}, merges


def build_standin(directory: Path, arch: str = "tiny", seed: int = 0, weights: str = "safetensors") -> Path:
    """Write config, weights, tokenizer and preprocessor files; returns the directory."""
    spec = ARCHS[arch]
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab, merges = vocab_and_merges(spec["vocab_size"])
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges], model_max_length=77)
    tokenizer.save_pretrained(directory)
    CLIPImageProcessorPil(**PREPROCESSOR_CONFIG).save_pretrained(directory)
    (directory / "preprocessor_config.json").write_text(json.dumps(PREPROCESSOR_CONFIG, indent=2))

    config = CLIPConfig(
        text_config=dict(spec["text"], vocab_size=spec["vocab_size"], max_position_embeddings=77,
                         hidden_act="quick_gelu", bos_token_id=vocab[BOS], eos_token_id=vocab[EOS],
                         pad_token_id=vocab[EOS]),
        vision_config=dict(spec["vision"], image_size=224, hidden_act="quick_gelu"),
        projection_dim=spec["projection_dim"],
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    if weights == "bin":
        model.config.save_pretrained(directory)
        torch.save(model.state_dict(), directory / "pytorch_model.bin")
    else:
        model.save_pretrained(directory)
    for file in directory.iterdir():  # transformers writes 0600; a server running as another user must read it
        file.chmod(0o644)
    return directory


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--arch", choices=sorted(ARCHS), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weights", choices=("safetensors", "bin"), default="safetensors")
    args = parser.parse_args(argv)
    path = build_standin(args.directory, args.arch, args.seed, args.weights)
    print(f"wrote a {args.arch} stand-in CLIP model (random weights, meaningless vectors) to {path}")


if __name__ == "__main__":
    main()
