"""The Python client: items in, float32 unit vectors out, in input order, over the service's fastest transport.

Batches go to `POST /encode?encoding=base64` (float32 bytes, no JSON numbers), several at once, each thread on its
own keep-alive connection. The rules for faults, with their defaults:

- a connection error, a 503 or a 408 is retried up to `retries` (5) times, waiting `backoff` (0.5 s) doubling each
  time, or what the server's `Retry-After` says;
- a 4xx that names an item (`error.field`, e.g. `[3].img_blob`) drops that item, records it with the server's code
  and message (`Failure`), and sends the rest of the batch again: one broken file never fails a run;
- any other error raises `ServiceError`.
"""

from __future__ import annotations

import base64
import io
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests

RETRIED = (408, 503)
ITEM_FIELD = re.compile(r"\[(\d+)\]")  # /encode's error.field for an item: "[3]", "[3].img_blob"
# What a request may carry: the server's limits (GET /meta), and a share of the body for base64's growth.
BASE64_GROWTH = 4 / 3


class ServiceError(RuntimeError):
    """The service refused a request, not one of its items, or could not be reached after every retry."""


@dataclass(frozen=True)
class Failure:
    """An item the service refused, or that could not be sent: its index in the input and why."""

    index: int
    item: str
    code: str
    message: str


@dataclass(frozen=True)
class Batch:
    """One batch's outcome: the input indexes embedded, their vectors (rows in the same order), and the failures."""

    indexes: list[int]
    vectors: np.ndarray
    failures: list[Failure]


def describe(item: Any) -> str:
    """An item as a log or a summary shows it: a path, a URL, or a short text."""
    if isinstance(item, Path):
        return str(item)
    if isinstance(item, bytes | bytearray):
        return f"<{len(item)} bytes>"
    if isinstance(item, str):
        return item if len(item) <= 80 else item[:77] + "..."
    return f"<{type(item).__name__}>"


def as_json_item(item: Any) -> dict[str, str]:
    """A text (str), an image URL (an http(s) str), a file (Path), image bytes, or a PIL image -> /encode's item.

    A str is always a text unless it is an http(s) URL: name files with pathlib.Path, so a caption that happens to
    look like a file name is never read from disk.
    """
    if isinstance(item, str):
        if item.startswith(("http://", "https://")):
            return {"img_uri": item}
        return {"text": item}
    if isinstance(item, Path):
        item = item.read_bytes()
    elif hasattr(item, "save") and hasattr(item, "mode"):  # a PIL image, without importing Pillow here
        buffer = io.BytesIO()
        item.save(buffer, format="PNG")
        item = buffer.getvalue()
    if isinstance(item, bytes | bytearray):
        return {"img_blob": base64.b64encode(bytes(item)).decode("ascii")}
    raise TypeError(f"cannot send a {type(item).__name__}: give a str, a pathlib.Path, bytes or a PIL image")


class Client:
    """A clipsvc server at `url` (e.g. http://localhost:8081); `api_key` when the server has CLIP_API_KEYS."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 120, retries: int = 5,
                 backoff: float = 0.5):
        self.url = url.rstrip("/")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._local = threading.local()
        self._meta: dict | None = None

    def _session(self) -> requests.Session:
        """One keep-alive connection per thread: batches are pipelined on it, never a new connect each."""
        if getattr(self._local, "session", None) is None:
            self._local.session = requests.Session()
            self._local.session.headers.update(self.headers)
        return self._local.session

    def meta(self) -> dict:
        """GET /meta, once: the model's size and the limits a batch must respect."""
        if self._meta is None:
            self._meta = self._request("GET", "/meta").json()
        return self._meta

    def encode(self, items: Sequence[Any], batch_size: int = 16, concurrency: int = 4,
               show_progress: bool = False) -> np.ndarray:
        """(n, d) float32 unit vectors in input order. Items the service refuses raise ItemsRefused, which carries
        every failure and the array with those rows NaN."""
        dim = self.meta()["embedding_dim"]
        out = np.full((len(items), dim), np.nan, dtype=np.float32)
        failures: list[Failure] = []
        for batch in self.batches(items, batch_size, concurrency, show_progress):
            out[batch.indexes] = batch.vectors
            failures += batch.failures
        if failures:
            raise ItemsRefused(failures, out)
        return out

    def batches(self, items: Sequence[Any], batch_size: int = 16, concurrency: int = 4, show_progress: bool = False,
                start: int = 0, unit: str = "item") -> Iterator[Batch]:
        """Each batch's outcome in input order, `concurrency` batches in flight; the CLI writes them as they come."""
        limits = self.meta()["limits"]
        size = max(1, min(batch_size, limits["max_items"]))
        plan = self._plan(items, start, size, limits)
        progress = _progress(len(items) - start, show_progress, unit)

        def finished(future: Future[Batch]) -> Batch:
            batch = future.result()
            progress(len(batch.indexes) + len(batch.failures))
            return batch

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            pending: deque[Future[Batch]] = deque()
            for chunk in plan:
                pending.append(pool.submit(self._embed, items, chunk))
                while len(pending) > concurrency:
                    yield finished(pending.popleft())
            while pending:
                yield finished(pending.popleft())
        progress(0, close=True)

    def _plan(self, items: Sequence[Any], start: int, size: int, limits: dict) -> Iterator[list[int]]:
        """Consecutive indexes, `size` at most and within the request size limit (file sizes read from disk)."""
        budget = limits["max_request_mb"] * 1024 * 1024 / BASE64_GROWTH * 0.9
        chunk: list[int] = []
        used = 0.0
        for index in range(start, len(items)):
            cost = _size(items[index])
            if chunk and (len(chunk) >= size or used + cost > budget):
                yield chunk
                chunk, used = [], 0.0
            chunk.append(index)
            used += cost
        if chunk:
            yield chunk

    def _embed(self, items: Sequence[Any], indexes: list[int]) -> Batch:
        """One batch, resent without each item the service names, until the rest is embedded."""
        failures: list[Failure] = []
        body: list[tuple[int, dict]] = []
        max_image = self.meta()["limits"]["max_image_mb"] * 1024 * 1024
        for index in indexes:
            item = items[index]
            try:
                if isinstance(item, Path) and item.stat().st_size > max_image:
                    raise ValueError(f"larger than the server's image limit ({max_image / 2**20:g} MB)")
                body.append((index, as_json_item(item)))
            except (OSError, ValueError, TypeError) as exc:
                failures.append(Failure(index, describe(item), "unreadable" if isinstance(exc, OSError)
                                        else "too_large" if isinstance(exc, ValueError) else "unsupported_item",
                                        str(exc)))
        while body:
            response = self._request("POST", "/encode?encoding=base64", json=[entry for _, entry in body],
                                     allowed=lambda r: r.ok or 400 <= r.status_code < 500)
            if response.ok:
                rows = [np.frombuffer(base64.b64decode(v), dtype="<f4") for v in response.json()]
                return Batch([i for i, _ in body], np.stack(rows).astype(np.float32), failures)
            error = response.json().get("error", {})
            position = _item_position(error.get("field"), len(body))
            if position is None:
                raise ServiceError(f"POST /encode: {response.status_code} {error.get('code')}: {error.get('message')}")
            index, _ = body.pop(position)
            # "[12].img_blob is not ...": the position is this batch's, meaningless to the caller
            message = error.get("message", "").removeprefix(error["field"]).strip()
            failures.append(Failure(index, describe(items[index]), error.get("code", "?"), message))
        return Batch([], np.empty((0, self.meta()["embedding_dim"]), dtype=np.float32), failures)

    def _request(self, method: str, path: str, allowed: Callable[[requests.Response], bool] | None = None,
                 **kwargs: Any) -> requests.Response:
        """One call with the retry rules: connection errors, 503 and 408 wait and try again."""
        allowed = allowed or (lambda r: r.ok)
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                response = self._session().request(method, self.url + path, timeout=self.timeout, **kwargs)
            except requests.ConnectionError as exc:
                if attempt == self.retries:
                    raise ServiceError(f"{method} {path}: {exc}") from exc
                self._local.session = None  # a fresh connection next time
                time.sleep(delay)
            else:
                if response.status_code not in RETRIED or attempt == self.retries:
                    if allowed(response):
                        return response
                    raise ServiceError(f"{method} {path}: {response.status_code} {response.text[:300]}")
                time.sleep(_retry_after(response, delay))
            delay *= 2
        raise AssertionError("unreachable")


class ItemsRefused(ServiceError):
    """Some items were refused; `failures` says which and why, `vectors` holds the others (refused rows NaN)."""

    def __init__(self, failures: list[Failure], vectors: np.ndarray):
        super().__init__(f"{len(failures)} item(s) refused, e.g. #{failures[0].index} {failures[0].item}: "
                         f"{failures[0].code}")
        self.failures, self.vectors = failures, vectors


def _item_position(field: str | None, count: int) -> int | None:
    match = ITEM_FIELD.match(field or "")
    position = int(match.group(1)) if match else None
    return position if position is not None and position < count else None


def _retry_after(response: requests.Response, default: float) -> float:
    try:
        return max(0.0, min(float(response.headers.get("Retry-After", default)), 60.0))
    except ValueError:
        return default


def _size(item: Any) -> float:
    if isinstance(item, Path):
        try:
            return float(item.stat().st_size)
        except OSError:
            return 0.0
    if isinstance(item, bytes | bytearray | str):
        return float(len(item))
    return 1_000_000.0  # a PIL image: about a megabyte as PNG


def _progress(total: int, show: bool, unit: str) -> Callable[..., None]:
    """A tqdm bar (images/s and ETA) when asked for; tqdm is imported only then."""
    if not show:
        return lambda n, close=False: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, smoothing=0.1)  # shows unit/s and the time left

    def update(n: int, close: bool = False) -> None:
        bar.update(n)
        if close:
            bar.close()
    return update
