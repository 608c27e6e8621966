"""`clipsvc-client` / `python -m clipsvc.client`: embed a folder of photos or a file of texts, and search the result.

    python -m clipsvc.client embed DIR --url URL --out OUT [--chunk-size 10000] [--batch-size 16] [--concurrency 4]
    python -m clipsvc.client embed-texts FILE.txt --url URL --out OUT
    python -m clipsvc.client search "a red car" --index OUT --url URL [-k 5]

`embed` walks DIR recursively (sorted, hidden files left out) and sends every file to the server, which tells
images from everything else by content: what it refuses is listed with its reason, never fatal. The output is
clip-retrieval's layout (clipsvc.client.index). Interrupted (Ctrl-C, a crash), the same command continues where
it stopped; at most the chunk in progress is computed again.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .api import Client, ServiceError
from .index import ChunkWriter, read_index


def image_files(root: Path) -> list[Path]:
    """Every file under `root`, sorted, without hidden files and folders (.DS_Store, .git, our own partial files)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / name for name in sorted(files) if not name.startswith(".")]
    return found


def run_embed(client: Client, items: list, names: list[str], kind: str, args: argparse.Namespace) -> int:
    """Embed `items` into args.out in chunks, resuming a run that was interrupted; prints the summary."""
    writer = ChunkWriter(Path(args.out), kind, names, args.chunk_size)
    start, started = writer.resume_from, time.monotonic()
    if start:
        print(f"resuming at {start} of {len(items)} ({writer.progress.chunks} chunks already written)",
              file=sys.stderr)
    for batch in client.batches(items, args.batch_size, args.concurrency, show_progress=not args.quiet,
                                start=start, unit="img" if kind == "image" else "text"):
        writer.add(batch)
    progress = writer.finish()
    seconds = time.monotonic() - started
    reasons = Counter(skip["code"] for skip in progress.skipped)
    embedded = len(items) - len(progress.skipped)
    print(f"embedded {embedded} of {len(items)} in {progress.chunks} chunk(s) under {args.out}; "
          f"skipped {len(progress.skipped)}" + (f" ({', '.join(f'{c}: {n}' for c, n in reasons.items())})"
                                                if reasons else "") + f"; {seconds:.1f} s this run")
    for skip in progress.skipped[:20]:
        print(f"  skipped {skip['path']}: {skip['code']}: {skip['message']}", file=sys.stderr)
    if len(progress.skipped) > 20:
        print(f"  ... and {len(progress.skipped) - 20} more (all in {args.out}/clipsvc_progress.json)",
              file=sys.stderr)
    return 0


def search(client: Client, args: argparse.Namespace) -> int:
    """The `-k` nearest images to a text, by cosine (the vectors are unit length: a dot product)."""
    vectors, names = read_index(Path(args.index), "image")
    query = client.encode([args.text])[0]
    cosines = vectors @ query
    for rank, index in enumerate(np.argsort(-cosines)[:args.k], 1):
        print(f"{rank}. {cosines[index]:.4f}  {names[index]}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m clipsvc.client", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    for name, what in (("embed", "a folder of images, recursively"), ("embed-texts", "a text file, one a line")):
        command = commands.add_parser(name, help=f"embed {what}")
        command.add_argument("source", type=Path, help="the folder" if name == "embed" else "the text file")
        command.add_argument("--out", required=True, help="where the layout is written (and resumed)")
        command.add_argument("--chunk-size", type=int, default=10_000, help="rows per .npy / .parquet (10000)")
        command.add_argument("--batch-size", type=int, default=16, help="items per request (16)")
        command.add_argument("--concurrency", type=int, default=4, help="requests in flight (4)")
        command.add_argument("--quiet", action="store_true", help="no progress bar")
    find = commands.add_parser("search", help="the nearest images to a text")
    find.add_argument("text")
    find.add_argument("--index", required=True, help="an --out written by embed")
    find.add_argument("-k", type=int, default=5)
    for command in commands.choices.values():
        command.add_argument("--url", default=os.environ.get("CLIPSVC_URL", "http://localhost:8081"),
                             help="the server (default $CLIPSVC_URL or http://localhost:8081)")
        command.add_argument("--api-key", default=os.environ.get("CLIPSVC_API_KEY"),
                             help="when the server has CLIP_API_KEYS (default $CLIPSVC_API_KEY)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    client = Client(args.url, api_key=args.api_key)
    try:
        if args.command == "search":
            return search(client, args)
        if args.command == "embed":
            files = image_files(args.source)
            return run_embed(client, files, [str(f) for f in files], "image", args)
        texts = [line.strip() for line in args.source.read_text(encoding="utf-8").splitlines() if line.strip()]
        return run_embed(client, texts, texts, "text", args)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: run the same command again to resume ({getattr(args, 'out', '')})", file=sys.stderr)
        return 130
