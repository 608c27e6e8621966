"""The cost of reading a JSON body into validated items, per body (the parser only: no HTTP, no model), so a change
to how bodies are validated can show it does not slow a request: /encode's 64 items, /v1/embeddings' 64 texts, and
a Truss predict with a 224 x 224 x 3 list of pixels. Medians of repeated runs (the machine may be shared).

    python bench/validate.py [--repeat 7] [--number 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import timeit
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # clipsvc from the repo root
from clipsvc.parsing.items import ItemRules  # noqa: E402
from clipsvc.parsing.json_items import parse_items  # noqa: E402
from clipsvc.parsing.openai_input import parse_embeddings_request  # noqa: E402
from clipsvc.parsing.truss import parse_predict  # noqa: E402
from clipsvc.settings import Settings  # noqa: E402

TEXTS = [f"a photo of thing number {i} on a table" for i in range(64)]


def bodies() -> dict[str, tuple[object, object]]:
    """name -> (parse function of one body, the body as json.loads gives it)."""
    rules = ItemRules(Settings())
    pixels = np.random.default_rng(0).integers(0, 256, (224, 224, 3)).tolist()
    return {
        "/encode, 64 texts": (lambda body: parse_items(body, "", rules), [{"text": t} for t in TEXTS]),
        "/v1/embeddings, 64 texts": (lambda body: parse_embeddings_request(body, rules, "clip", 512),
                                     {"model": "clip", "input": TEXTS}),
        "Truss, 224x224x3 pixels": (lambda body: parse_predict(body, rules),
                                    {"labels": ["a cat", "a dog"], "image": pixels}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--number", type=int, default=50)
    args = parser.parse_args()
    for name, (parse, body) in bodies().items():
        runs = timeit.repeat(lambda: parse(body), repeat=args.repeat, number=args.number)  # noqa: B023
        print(f"{name:28} median {statistics.median(runs) / args.number * 1e6:9.1f} us per body")


if __name__ == "__main__":
    main()
