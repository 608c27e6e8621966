"""`clipsvc-client` / `python -m clipsvc.client`: embed a folder of photos or a file of texts, and search the result.

    python -m clipsvc.client embed PHOTOS --url URL --out OUT [--chunk-size 10000] [--batch-size 16] [--concurrency 4]
    python -m clipsvc.client embed-texts FILE.txt --url URL --out OUT
    python -m clipsvc.client search "a red car" --index OUT --url URL [-k 5]

`embed` walks PHOTOS recursively (sorted, hidden files and an --out inside it left out), or takes the one file it
names, and sends every file to the server, which tells images from everything else by content: what it refuses, or
fails on alone, is listed with its reason, never fatal. The output is clip-retrieval's layout
(clipsvc.client.index). Interrupted (Ctrl-C, a crash, a server that stopped answering), the same command continues
where it stopped; at most the chunk in progress is computed again.

Exit status: 0 done (items skipped or not), 1 the server could not be reached or failed every request (what is
done is saved), 2 a wrong argument (a missing PHOTOS, an --out that is a file or holds something else, a --url
without http://), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from .api import FATAL, Client, ServiceError, Unreachable
from .index import PROGRESS_FILE, ChunkWriter, IndexRefused, check_out, read_index


class UsageError(ValueError):
    """An argument that cannot work: one line and exit status 2, as argparse's own errors."""


def image_files(root: Path, exclude: Path | None = None) -> list[Path]:
    """`root` when it is a file; else every file under it, sorted, without hidden files and folders (.DS_Store,
    .git, our own partial files) and without the folder `exclude`: an --out inside root is not an input."""
    if root.is_file():
        return [root]
    skip = exclude.resolve() if exclude else None
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (Path(folder) / d).resolve() != skip)
        found += [Path(folder) / name for name in sorted(files) if not name.startswith(".")]
    return found


def photos(source: Path, out: Path) -> list[Path]:
    """embed's inputs: the files under PHOTOS, or the one file it names; refused when there are none."""
    if not source.exists():
        raise UsageError(f"{source}: no such folder or file")
    if not (source.is_dir() or source.is_file()):
        raise UsageError(f"{source} is neither a folder nor a file")
    if source.is_dir() and out.resolve() == source.resolve():
        raise UsageError(f"--out {out} is the photo folder itself: name another folder (one inside it is fine)")
    check_out(out)
    files = image_files(source, exclude=out)
    if not files:
        raise UsageError(f"{source} holds no files (hidden ones are left out)")
    return files


def texts(source: Path, out: Path) -> list[str]:
    """embed-texts' inputs: the file's non-empty lines, stripped; refused when there are none."""
    try:
        lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError:
        raise UsageError(f"{source} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    if not lines:
        raise UsageError(f"{source} holds no text")
    check_out(out)
    return lines


def run_embed(client: Client, items: list, names: list[str], kind: str, args: argparse.Namespace) -> int:
    """Embed `items` into args.out in chunks, resuming a run that was interrupted; prints the summary."""
    client.meta()  # a server that cannot be reached stops the run before --out is made
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


def embed(args: argparse.Namespace) -> int:
    client, files = connect(args), photos(args.source, Path(args.out))
    return run_embed(client, files, [str(f) for f in files], "image", args)


def embed_texts(args: argparse.Namespace) -> int:
    client, lines = connect(args), texts(args.source, Path(args.out))
    return run_embed(client, lines, lines, "text", args)


def search(args: argparse.Namespace) -> int:
    """The `-k` nearest images to a text, by cosine (the vectors are unit length: a dot product)."""
    client = connect(args)
    vectors, names = read_index(Path(args.index), "image")
    query = client.encode([args.text])[0]
    cosines = vectors @ query
    for rank, index in enumerate(np.argsort(-cosines)[:args.k], 1):
        print(f"{rank}. {cosines[index]:.4f}  {names[index]}")
    return 0


COMMANDS = {"embed": embed, "embed-texts": embed_texts, "search": search}


def connect(args: argparse.Namespace) -> Client:
    """The client for --url and --api-key; a --url requests cannot use is a usage error, not a traceback."""
    try:
        return Client(args.url, api_key=args.api_key)
    except ValueError as exc:
        raise UsageError(f"--url {exc}") from None


def explain(exc: ServiceError, args: argparse.Namespace) -> str:
    """The error in one line, with what to do about it, and whether a rerun resumes."""
    advice = [str(exc)]
    if isinstance(exc, Unreachable):
        advice.append("check the host name in --url" if "resolve" in exc.reason else
                      "is the server running there? Start it, or give its address with --url or $CLIPSVC_URL")
    elif exc.status in FATAL:
        advice.append("give one of the server's keys with --api-key or $CLIPSVC_API_KEY")
    done = saved_inputs(Path(args.out)) if args.command != "search" else None
    if done is not None:
        advice.append(f"run the same command again to resume ({done} input(s) done are saved in {args.out})")
    return "; ".join(advice)


def saved_inputs(out: Path) -> int | None:
    """How many inputs an --out's progress file says are done, or None when it has none."""
    try:
        return int(json.loads((out / PROGRESS_FILE).read_text())["next_input"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def positive(text: str) -> int:
    """argparse's type for counts and sizes: 0 or less would never finish a chunk or a batch."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m clipsvc.client", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    for name, what in (("embed", "a folder of images, recursively, or one image"),
                       ("embed-texts", "a text file, one a line")):
        command = commands.add_parser(name, help=f"embed {what}")
        command.add_argument("source", type=Path, help="the folder or image" if name == "embed" else "the text file")
        command.add_argument("--out", required=True, help="the folder the layout is written to (and resumed from)")
        command.add_argument("--chunk-size", type=positive, default=10_000, help="rows per .npy / .parquet (10000)")
        command.add_argument("--batch-size", type=positive, default=16, help="items per request (16)")
        command.add_argument("--concurrency", type=positive, default=4, help="requests in flight (4)")
        command.add_argument("--quiet", action="store_true", help="no progress bar")
    find = commands.add_parser("search", help="the nearest images to a text")
    find.add_argument("text")
    find.add_argument("--index", required=True, help="an --out written by embed")
    find.add_argument("-k", type=positive, default=5)
    for command in commands.choices.values():
        command.add_argument("--url", default=os.environ.get("CLIPSVC_URL", "http://localhost:8081"),
                             help="the server (default $CLIPSVC_URL or http://localhost:8081)")
        command.add_argument("--api-key", default=os.environ.get("CLIPSVC_API_KEY"),
                             help="when the server has CLIP_API_KEYS (default $CLIPSVC_API_KEY)")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(format="%(message)s", level=logging.WARNING)  # the client's notices of retries, on stderr
    try:
        return COMMANDS[args.command](args)
    except (UsageError, IndexRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ServiceError as exc:
        print(f"error: {explain(exc, args)}", file=sys.stderr)
        return 1
    except OSError as exc:  # the disk: --out not writable, full
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"interrupted: run the same command again to resume ({getattr(args, 'out', '')})", file=sys.stderr)
        return 130
