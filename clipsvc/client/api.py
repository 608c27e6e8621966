"""The Python client: items in, float32 unit vectors out, in input order, over the service's fastest transport.

Batches go to `POST /encode?encoding=base64` (float32 bytes, no JSON numbers), several at once, each thread on its
own keep-alive connection. Faults (docs/client.md has the rules): busy answers are retried; an item the server names,
or that fails alone when its batch is halved, is dropped with the reason; a server that cannot be reached
(`Unreachable`) or fails every request, a probe's too (`ServiceError`), stops the run.
"""

from __future__ import annotations

import base64
import errno
import io
import itertools
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests

log = logging.getLogger(__name__)

RETRIED = (408, 429, 503)  # busy or slow: wait as the server says and try again, `retries` times
ERROR_RETRIES = 1  # another 5xx, or a connection lost mid-request: once more, then the batch is halved
FIRST_CONTACT_RETRIES = 2  # a refused connection before the server ever answered: 0.5 + 1 s, then Unreachable
CONNECT_TIMEOUT = 5.0  # seconds to make a connection; `timeout` is for the answer
FATAL = (401, 403)  # a missing or wrong key: every request would fail the same way
NOT_CONNECTED = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL)  # not lost
BASE64_GROWTH = 4 / 3  # a request carries the server's max_request_mb (GET /meta) less base64's growth
# Sent when a batch fails for no item's reason: if the server embeds these (an 8x8 grey PNG, a text), it works.
GREY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAFUlEQVR42mNsaGhgwAaYGHCAwSkBADAXAZDUexXGAAAAAElFTkSuQmCC"
PROBES = {"image": {"img_blob": GREY_PNG}, "text": {"text": "a photo"}}


class ServiceError(RuntimeError):
    """The service refused a request, not one of its items, or could not be reached after every retry."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


class Unreachable(ServiceError):
    """No connection to the server could be made: nothing listens there, its name does not resolve, or TLS failed."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"no connection to {url}: {reason}")
        self.url, self.reason = url, reason


class NoAnswer(ServiceError):
    """A connection was made, but it closed or timed out before the answer (a worker that died, a slow batch)."""


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


@dataclass(frozen=True)
class Refusal:
    """A request that failed: the HTTP status (0: no answer), the error's code, message and field, and the position
    of the item that failed in the batch's list (the server's `error.index`; None: no one item)."""
    status: int
    code: str
    message: str
    field: str | None = None
    index: int | None = None

    def __str__(self) -> str:
        return f"{self.status or 'no answer'} {self.code}: {self.message}"


def check_url(url: str) -> str:
    """`url` if it can address a server; a ValueError that says what to write instead (requests' own is a traceback)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{url!r} is not an http:// or https:// address: write e.g. "
                         f"http://{url.split('://', 1)[-1] or '127.0.0.1:8081'}")
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number from 0 to 65535
    except ValueError:
        raise ValueError(f"{url!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host: write e.g. http://127.0.0.1:8081")
    return url


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
    A str is a text unless an http(s) URL: files are pathlib.Paths, so a caption like a file name is never read."""
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
        self.url = check_url(url).rstrip("/")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self._timeouts = (min(CONNECT_TIMEOUT, timeout), timeout)  # to connect, to answer
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._local = threading.local()
        self._meta: dict | None = None
        self._answered = False  # whether the server has ever answered: then a refused connection is a restart

    def _session(self) -> requests.Session:
        """One keep-alive connection per thread: its batches reuse it one after another, never a new connect each."""
        if getattr(self._local, "session", None) is None:
            self._local.session = requests.Session()
            self._local.session.headers.update(self.headers)
        return self._local.session

    def meta(self) -> dict:
        """GET /meta, once: the model's size and the limits a batch must respect."""
        if self._meta is None:
            response = self._request("GET", "/meta")
            if not response.ok:
                raise ServiceError(f"GET /meta: {_refusal(response)}", response.status_code)
            try:
                meta = response.json()
                meta["embedding_dim"], meta["limits"]["max_items"], meta["limits"]["max_request_mb"]  # noqa: B018
            except (ValueError, KeyError, TypeError):
                raise ServiceError(f"{self.url} answers GET /meta, but not as a clipsvc server does") from None
            self._meta = meta
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

        pool = ThreadPoolExecutor(max_workers=max(1, concurrency))
        try:
            pending: deque[Future[Batch]] = deque()
            for chunk in plan:
                pending.append(pool.submit(self._embed, items, chunk))
                while len(pending) > concurrency:
                    yield finished(pending.popleft())
            while pending:
                yield finished(pending.popleft())
        finally:  # a batch that stopped the run: the batches not started are not sent
            pool.shutdown(wait=True, cancel_futures=True)
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
        """One batch: what cannot be sent is recorded without a request, the rest goes to _send."""
        rows: list[tuple[int, np.ndarray]] = []  # (input index, vector)
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
                code = "unreadable" if isinstance(exc, OSError) else "too_large" if isinstance(exc, ValueError) else ""
                failures.append(Failure(index, describe(item), code or "unsupported_item", str(exc)))
        self._send(items, body, rows, failures)
        rows.sort(key=lambda row: row[0])
        vectors = np.stack([vector for _, vector in rows]) if rows else np.empty((0, self.meta()["embedding_dim"]))
        return Batch([index for index, _ in rows], vectors.astype(np.float32), sorted(failures, key=lambda f: f.index))

    def _send(self, items: Sequence[Any], body: list[tuple[int, dict]], rows: list[tuple[int, np.ndarray]],
              failures: list[Failure]) -> None:
        """Embed `body`'s items. One the server names is dropped and the rest sent again; a batch that fails for no
        named item is halved down to the item that fails alone, dropped too, while the server embeds the probe."""
        while body:
            answer = self._post(body)
            if isinstance(answer, requests.Response):
                vectors = [np.frombuffer(base64.b64decode(v), dtype="<f4") for v in answer.json()]
                rows += zip([index for index, _ in body], vectors, strict=True)
                return
            if 400 <= answer.status < 500 and answer.index is not None and answer.index < len(body):
                index, _ = body.pop(answer.index)
                # "[12].img_blob is not ...": the message starts with the field, whose position is this batch's,
                # meaningless to the caller (and a resumed run must record the same words)
                message = answer.message.removeprefix(answer.field or "").strip()
                failures.append(Failure(index, describe(items[index]), answer.code, message))
                continue
            if answer.status in FATAL or not self._probe(body):
                raise ServiceError(f"the server fails every request: POST /encode: {answer}", answer.status or None)
            if len(body) == 1:
                [(index, _)] = body
                why = f"{answer.status or 'no answer'} for this item alone, after retries; the server embeds others"
                failures.append(Failure(index, describe(items[index]), answer.code, f"{why}: {answer.message}"))
                return
            half = len(body) // 2
            self._send(items, body[:half], rows, failures)
            self._send(items, body[half:], rows, failures)
            return

    def _post(self, body: list[tuple[int, dict]]) -> requests.Response | Refusal:
        """POST /encode with the retry rules: the answer when it is 2xx, otherwise why not."""
        try:
            response = self._request("POST", "/encode?encoding=base64", json=[entry for _, entry in body])
        except NoAnswer as exc:
            return Refusal(0, exc.code or "no_answer", str(exc))
        return response if response.ok else _refusal(response)

    def _probe(self, body: list[tuple[int, dict]]) -> bool:
        """Whether the server embeds a tiny item of each kind in `body`: if so, the batch, not the server, fails."""
        kinds = sorted({"text" if "text" in entry else "image" for _, entry in body})
        return isinstance(self._post([(0, PROBES[kind]) for kind in kinds]), requests.Response)

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One call with the retry rules: the last answer, whatever its status; Unreachable, NoAnswer without one."""
        delay = self.backoff
        for attempt in itertools.count():
            try:
                response = self._session().request(method, self.url + path, timeout=self._timeouts, **kwargs)
            except requests.RequestException as exc:
                error, retries = self._failure(exc)
                if attempt >= retries:
                    raise error from None
                self._local.session = None  # a fresh connection next time
                wait, why = delay, str(error)
            else:
                self._answered = True
                if attempt >= self._retries_for(response.status_code):
                    return response
                wait, why = _retry_after(response, delay), f"{response.status_code} {response.reason}"
            log.log(logging.WARNING if self._answered else logging.DEBUG, "%s %s: %s; trying again in %.1f s",
                    method, path, why, wait)
            time.sleep(wait)
            delay *= 2
        raise AssertionError("unreachable")

    def _retries_for(self, status: int) -> int:
        """Busy answers are worth every retry, another 5xx one more try (it may be the batch), the rest none."""
        return self.retries if status in RETRIED else min(self.retries, ERROR_RETRIES) if status >= 500 else 0

    def _failure(self, exc: requests.RequestException) -> tuple[ServiceError, int]:
        """An exception's meaning, and the retries it is worth: all if the server answered before, else few."""
        patient = self.retries if self._answered else 0
        causes = list(_causes(exc))
        refused = next((c for c in causes if isinstance(c, OSError) and c.errno in NOT_CONNECTED), None)
        if isinstance(exc, requests.exceptions.SSLError):
            return Unreachable(self.url, f"TLS failed ({str(causes[-1])[:160]})"), 0
        if isinstance(exc, requests.ConnectTimeout):
            return Unreachable(self.url, f"no connection within {self._timeouts[0]:g} s"), patient
        if any(isinstance(c, socket.gaierror) for c in causes):
            return Unreachable(self.url, f"the host name {urlsplit(self.url).hostname!r} does not resolve"), patient
        if refused is not None:
            return (Unreachable(self.url, (refused.strerror or "refused").lower()),
                    patient or min(self.retries, FIRST_CONTACT_RETRIES))
        if isinstance(exc, requests.Timeout):
            return NoAnswer(f"no answer within {self.timeout:g} s", code="timeout"), 0
        if isinstance(exc, requests.ConnectionError):
            return NoAnswer("the connection closed before the answer", code="connection_lost"), self._retries_for(500)
        return ServiceError(f"{type(exc).__name__}: {exc}"), 0


class ItemsRefused(ServiceError):
    """Some items were refused; `failures` says which and why, `vectors` holds the others (refused rows NaN)."""

    def __init__(self, failures: list[Failure], vectors: np.ndarray):
        super().__init__(f"{len(failures)} item(s) refused, e.g. #{failures[0].index} {failures[0].item}: "
                         f"{failures[0].code}")
        self.failures, self.vectors = failures, vectors


def _refusal(response: requests.Response) -> Refusal:
    """A failed answer's error, from our JSON body or, from a proxy or another server, its status and text."""
    try:
        error = dict(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        error = {}
    message = error.get("message") or response.text.strip()[:200] or response.reason or ""
    index = error.get("index")
    return Refusal(response.status_code, str(error.get("code") or f"http_{response.status_code}"), str(message),
                   error.get("field") if isinstance(error.get("field"), str) else None,
                   index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else None)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps: requests' args, urllib3's `reason`, Python's __cause__ and __context__."""
    todo, seen = [exc], set()
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo += [*current.args, getattr(current, "reason", None), current.__cause__, current.__context__]


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
    return lambda n, close=False: bar.close() if close else bar.update(n)
