"""The client's CLI against raw clients: how close `python -m clipsvc.client embed` drives the server to its capacity.

    python bench/client.py [--arch vit-b-32 | --model-dir DIR] [--images 200] [--rounds 2]

A folder of `--images` photo-like 640x480 JPEGs; the server with every default. Raw: 4 threads, each POSTing one
image per request to /syte_test/clip on its own keep-alive connection, as a hand-written loop would. CLI: the
embed command with its defaults, into a fresh folder each round. Rounds alternate; images per second each, and
the ratio. A benchmark: it exits 0 whatever the numbers.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from perf import chosen_model, cpu_model, photo_jpeg  # noqa: E402

from testkit.server import serve  # noqa: E402


def raw(url: str, files: list[Path], clients: int = 4) -> float:
    """Images per second from `clients` threads sharing the files, one image per request."""
    queue = list(files)
    lock = threading.Lock()

    def client() -> None:
        with requests.Session() as http:
            while True:
                with lock:
                    if not queue:
                        return
                    path = queue.pop()
                http.post(f"{url}/syte_test/clip", files={"image-1": (path.name, path.read_bytes())},
                          timeout=600).raise_for_status()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(files) / (time.perf_counter() - started)


def cli(url: str, folder: Path, out: Path, count: int) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "clipsvc.client", "embed", str(folder), "--url", url, "--out", str(out),
                    "--quiet"], cwd=ROOT, check=True, capture_output=True)
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vit-b-32")
    parser.add_argument("--model-dir", type=Path)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    model_dir = chosen_model(args)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        files = []
        for i in range(args.images):
            path = folder / f"{i // 50:02d}" / f"photo_{i:04d}.jpg"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(photo_jpeg(640, 480, seed=i))
            files.append(path)
        with serve(model_dir, Path(tmp) / "server.log", timeout=600) as server:
            raw(server.url, files[:16])  # both workers warm
            raws, clis = [], []
            for r in range(args.rounds):
                raws.append(raw(server.url, files))
                clis.append(cli(server.url, folder, Path(tmp) / f"out{r}", len(files)))
    raw_rate, cli_rate = statistics.median(raws), statistics.median(clis)
    print(f"{model_dir.name}, {cpu_model()}, every default; {args.images} 640x480 JPEGs, {args.rounds} rounds")
    print(f"raw, 4 clients, one image per request: {raw_rate:.1f} img/s (rounds {', '.join(f'{x:.1f}' for x in raws)})")
    print(f"CLI embed, its defaults: {cli_rate:.1f} img/s (rounds {', '.join(f'{x:.1f}' for x in clis)})")
    print(f"CLI / raw: {cli_rate / raw_rate:.3f}")


if __name__ == "__main__":
    main()
