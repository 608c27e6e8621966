"""clip-retrieval's output layout, written chunk by chunk so that an interrupted run resumes where it stopped.

`OUT/img_emb/img_emb_K.npy` holds `chunk_size` float32 rows (the last chunk fewer) and
`OUT/metadata/metadata_K.parquet` names each row (`image_path`); texts go to `text_emb/text_emb_K.npy` with a
`caption` column. This is what clip-retrieval's `clip inference` writes and its `clip index` (autofaiss) reads.
`OUT/clipsvc_progress.json` records the inputs (a digest of their list), how many are done and which were skipped
and why; it is replaced only after a chunk's files are whole, so a crash loses at most the chunk in progress, and
the same command run again continues with identical chunks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .api import Batch

# kind -> (folder, file name pattern, metadata column)
LAYOUT = {"image": ("img_emb", "img_emb_{}.npy", "image_path"), "text": ("text_emb", "text_emb_{}.npy", "caption")}
PROGRESS_FILE = "clipsvc_progress.json"
OURS = {folder for folder, _, _ in LAYOUT.values()} | {"metadata", PROGRESS_FILE}  # what an index folder holds


class IndexRefused(ValueError):
    """A folder that cannot be this run's index (a file, someone else's folder, another run) or is no index."""


@dataclass
class Progress:
    """What a run has written: the next input to embed, the chunks done, the inputs skipped with their reasons."""

    kind: str
    inputs: int
    digest: str
    chunk_size: int
    next_input: int = 0
    chunks: int = 0
    skipped: list[dict] = field(default_factory=list)
    finished: bool = False


def digest(names: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(names).encode("utf-8", "surrogateescape")).hexdigest()


class ChunkWriter:
    """Rows in input order -> fixed-size chunks on disk, and the progress file that lets a run resume."""

    def __init__(self, out: Path, kind: str, names: Sequence[str], chunk_size: int):
        self.out, self.kind, self.names, self.chunk_size = out, kind, list(names), chunk_size
        check_out(out)
        out.mkdir(parents=True, exist_ok=True)
        self.progress = self._load_or_start()
        folder, _, _ = LAYOUT[kind]
        (out / folder).mkdir(exist_ok=True)
        (out / "metadata").mkdir(exist_ok=True)
        self._rows: list[tuple[int, np.ndarray]] = []  # (input index, vector), not yet in a chunk
        self._skips: list[dict] = []  # skipped inputs not yet covered by a written chunk

    @property
    def resume_from(self) -> int:
        return self.progress.next_input

    def _load_or_start(self) -> Progress:
        """This run's saved progress, or a fresh one saved at once: a run stopped before its first chunk is ours."""
        path = self.out / PROGRESS_FILE
        fresh = Progress(self.kind, len(self.names), digest(self.names), self.chunk_size)
        if not path.exists():
            _save(path, fresh)
            return fresh
        try:
            saved = Progress(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            raise IndexRefused(f"{path} is damaged: remove {self.out} to start over") from None
        if (saved.kind, saved.digest, saved.chunk_size) != (fresh.kind, fresh.digest, fresh.chunk_size):
            raise IndexRefused(f"{self.out} holds another run (other inputs, kind or chunk size): use a new --out")
        return saved

    def add(self, batch: Batch) -> None:
        """A batch's vectors and failures; whole chunks are written as soon as there are enough rows."""
        self._rows += list(zip(batch.indexes, batch.vectors, strict=True))
        self._skips += [{"path": self.names[f.index], "code": f.code, "message": f.message, "index": f.index}
                        for f in batch.failures]
        self._rows.sort(key=lambda row: row[0])
        while len(self._rows) >= self.chunk_size:
            self._write(self._rows[:self.chunk_size], self._rows[self.chunk_size - 1][0] + 1)
            self._rows = self._rows[self.chunk_size:]

    def finish(self) -> Progress:
        """The last, shorter chunk; the run is complete."""
        if self._rows:
            self._write(self._rows, len(self.names))
            self._rows = []
        self._commit_skips(len(self.names))
        self.progress.next_input, self.progress.finished = len(self.names), True
        self._save()
        return self.progress

    def _write(self, rows: list[tuple[int, np.ndarray]], next_input: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        folder, pattern, column = LAYOUT[self.kind]
        k = self.progress.chunks
        vectors = np.stack([vector for _, vector in rows]).astype(np.float32)
        _replace(self.out / folder / pattern.format(k), lambda path: np.save(path, vectors), ".npy")
        table = pa.table({column: [self.names[index] for index, _ in rows]})
        _replace(self.out / "metadata" / f"metadata_{k}.parquet", lambda path: pq.write_table(table, path), ".parquet")
        self.progress.chunks, self.progress.next_input = k + 1, next_input
        self._commit_skips(next_input)
        self._save()

    def _commit_skips(self, next_input: int) -> None:
        done = [s for s in self._skips if s["index"] < next_input]
        self._skips = [s for s in self._skips if s["index"] >= next_input]
        self.progress.skipped += [{k: v for k, v in s.items() if k != "index"} for s in done]

    def _save(self) -> None:
        _save(self.out / PROGRESS_FILE, self.progress)


def _save(path: Path, progress: Progress) -> None:
    text = json.dumps(asdict(progress), indent=1)
    _replace(path, lambda temporary: Path(temporary).write_text(text), ".json")


def check_out(out: Path) -> None:
    """Refuse an --out that is a file, or a folder holding anything but an index: its files would be mixed in."""
    if out.exists() and not out.is_dir():
        raise IndexRefused(f"--out {out} is a file: name a folder (a new one, or one embed wrote)")
    if out.is_dir() and not (out / PROGRESS_FILE).exists():
        others = sorted(p.name for p in out.iterdir() if p.name not in OURS and not p.name.startswith("."))
        if others:
            raise IndexRefused(f"--out {out} holds other files ({', '.join(others[:3])}"
                               f"{', ...' if len(others) > 3 else ''}): name a new or empty folder")


def _replace(target: Path, write, suffix: str) -> None:
    """Written beside the target, then renamed over it: a reader never sees half a file."""
    temporary = target.with_name(f".{target.stem}.partial{suffix}")
    write(temporary)
    os.replace(temporary, target)


def read_index(out: Path, kind: str = "image") -> tuple[np.ndarray, list[str]]:
    """Every chunk's vectors, stacked, and the names of their rows, in chunk order."""
    import pyarrow.parquet as pq

    folder, pattern, column = LAYOUT[kind]
    if not out.is_dir():
        raise IndexRefused(f"--index {out}: no such folder")
    count = len(list((out / folder).glob(pattern.format("*"))))
    if count == 0:
        if (out / PROGRESS_FILE).exists():
            raise IndexRefused(f"{out} holds no vectors yet: its run embedded nothing so far ({PROGRESS_FILE} lists "
                               "what was skipped and why)")
        raise IndexRefused(f"no {pattern.format('K')} under {out / folder}: is {out} an index written by embed?")
    vectors = [np.load(out / folder / pattern.format(k)) for k in range(count)]
    names = [name for k in range(count) for name in pq.read_table(out / "metadata" / f"metadata_{k}.parquet")
             .column(column).to_pylist()]
    return np.concatenate(vectors), names
