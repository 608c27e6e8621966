"""The server's log: one JSON object a line, read while gunicorn may still be writing the last one."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path

REQUEST_LOGGER = "clipsvc.request"


def read_lines(path: Path) -> list[str]:
    """The log's complete, non-blank lines; a last line without its newline yet is left for the next read."""
    text = path.read_text()
    if not text.endswith("\n"):
        text = text.rpartition("\n")[0]
    return [line for line in text.splitlines() if line.strip()]


def parse(lines: Iterable[str]) -> list[dict]:
    """The JSON objects among `lines`; anything else (a plain line gunicorn or Python printed) is passed over."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_records(path: Path) -> list[dict]:
    """Every complete JSON line of the log so far, as dicts."""
    return parse(read_lines(path))


def request_lines(records: Iterable[dict], path: str | None = None) -> list[dict]:
    """The per-request lines (clipsvc.request), for one URL path or all."""
    return [r for r in records if r.get("logger") == REQUEST_LOGGER and (path is None or r.get("path") == path)]


def loaded_pids(records: Iterable[dict]) -> dict[int, dict]:
    """Worker pid -> its model_loaded line (device, threads, load_seconds)."""
    return {r["pid"]: r for r in records if r.get("event") == "model_loaded"}


def epoch(record: dict) -> float:
    """A line's time as epoch seconds, comparable with time.time()."""
    return dt.datetime.fromisoformat(record["ts"]).timestamp()
