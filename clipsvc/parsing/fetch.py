"""Fetching `img_uri` http(s) URLs for the operator's allow-listed hosts only, guarded against SSRF.

Off unless CLIP_FETCH_ALLOW_HOSTS names hosts. Then each fetch: host on the list; every address it resolves to
public (no loopback, private, link-local or metadata addresses); the connection made to the checked address, so
a second DNS answer cannot swap it (rebinding); redirects followed only within the same host and scheme (or
up to https); one deadline for the whole fetch; the body capped at CLIP_MAX_IMAGE_MB. Pure: no Flask, no model.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import SplitResult, urljoin, urlsplit

from ..errors import ApiError, Code, Rejected
from ..settings import Settings, env_var
from . import pinned_http

MAX_REDIRECTS = 3
MAX_URL_LENGTH = 4096
MAX_PARALLEL = 8  # URLs of one request fetched at once
CHUNK = 64 * 1024
MB = 1024 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
USER_AGENT = "clipsvc-fetch/1 (+https://github.com/clipsvc)"


class FetchRefused(Rejected):
    """A URL the policy does not allow; nothing was sent to it."""


class FetchError(Rejected):
    """The fetch was allowed but failed: unreachable, slow, an HTTP error, a bad redirect."""

    def __init__(self, message: str, error: Code = Code.URL_FETCH_FAILED):
        super().__init__(message, error)


class AddressForbidden(FetchError):
    def __init__(self, message: str):
        super().__init__(message, Code.URL_ADDRESS_FORBIDDEN)


class RedirectRefused(FetchError):
    def __init__(self, message: str):
        super().__init__(message, Code.URL_REDIRECT_REFUSED)


class TooLarge(FetchError):
    def __init__(self, message: str):
        super().__init__(message, Code.URL_TOO_LARGE)


def host_allowed(host: str, port: int, scheme: str, allow_hosts: tuple[str, ...]) -> bool:
    """`host` or `*.domain` entries; a port other than the scheme's default must be listed as `host:port`."""
    for entry in allow_hosts:
        name, _, listed_port = entry.partition(":")
        if (int(listed_port) if listed_port else DEFAULT_PORTS[scheme]) != port:
            continue
        if host == name or (name.startswith("*.") and host.endswith(name[1:])):
            return True
    return False


def public_address(address: str) -> bool:
    """Globally routable unicast only; IPv4 inside IPv6 (mapped, 6to4, Teredo) is judged as IPv4."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None:
            ip = inner
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int) -> list[str]:
    """The host's addresses; every one must be public, or a rebinding answer could pick the private one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"{host} could not be resolved ({exc})") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    blocked = [a for a in addresses if not public_address(a)]
    if blocked or not addresses:
        raise AddressForbidden(f"{host} resolves to a non-public address ({', '.join(blocked) or 'none'})")
    return addresses


def fetch_all(urls: dict[str, str], settings: Settings, inline: str) -> dict[str, bytes]:
    """Field -> URL in, field -> body out; fetched in parallel; the first failing field (in order) is raised.
    `inline` says how the caller's API carries an image itself, for the refusal when fetching is off."""
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(urls)), thread_name_prefix="clip-fetch") as pool:
        futures = {field: pool.submit(fetch, field, url, settings, inline) for field, url in urls.items()}
        return {field: future.result() for field, future in futures.items()}


def fetch(field: str, url: str, settings: Settings, inline: str) -> bytes:
    """One URL's body, or an ApiError naming `field` and what went wrong (with fetching off, how to send the
    image itself instead: `inline`, in the words of the API that carried the URL)."""
    if not settings.fetch_allow_hosts:
        raise ApiError(Code.URL_FETCH_DISABLED,
                       f"{field}: this service does not fetch URLs on a client's behalf; send the image itself "
                       f"{inline} (operators can allow hosts with {env_var('fetch_allow_hosts')})",
                       field=field)
    try:
        return _get(url, settings, time.monotonic() + settings.fetch_timeout_s)
    except Rejected as exc:
        raise ApiError(exc.error, f"{field}: {exc}", field=field) from None


def _get(url: str, settings: Settings, deadline: float) -> bytes:
    for _ in range(MAX_REDIRECTS + 1):
        parts, scheme, host, port = _check(url, settings)
        status, location, body = _request(scheme, host, port, parts, settings, deadline)
        if location is None:
            if status != 200:
                raise FetchError(f"{host} answered HTTP {status}; the image URL must return 200")
            return body
        url = urljoin(url, location)
        new = urlsplit(url)
        if (new.hostname or "").rstrip(".") != host or (scheme == "https" and new.scheme.lower() != "https"):
            raise RedirectRefused(f"{host} redirected to {new.scheme}://{new.netloc}; only redirects within the "
                                  "same host, never from https to http, are followed")
    raise RedirectRefused(f"more than {MAX_REDIRECTS} redirects")


def _check(url: str, settings: Settings) -> tuple[SplitResult, str, str, int]:
    """The URL's parts, scheme, host and port, once the policy allows it."""
    if len(url) > MAX_URL_LENGTH:
        raise FetchRefused(f"the URL is longer than {MAX_URL_LENGTH} characters", Code.INVALID_URI)
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:
        raise FetchRefused(f"{url[:100]!r} is not a valid URL", Code.INVALID_URI) from None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").rstrip(".")
    if scheme not in DEFAULT_PORTS or not host:
        raise FetchRefused("only http and https URLs with a host can be fetched", Code.INVALID_URI)
    if parts.username is not None or parts.password is not None:
        raise FetchRefused("URLs with credentials are not fetched", Code.INVALID_URI)
    if not host_allowed(host, port, scheme, settings.fetch_allow_hosts):
        raise FetchRefused(f"{host}:{port} is not on this service's allow-list ({env_var('fetch_allow_hosts')})",
                           Code.URL_HOST_NOT_ALLOWED)
    return parts, scheme, host, port


def _request(scheme: str, host: str, port: int, parts: SplitResult, settings: Settings,
             deadline: float) -> tuple[int, str | None, bytes]:
    """One GET to the checked address: (status, redirect location or None, body)."""
    address = resolve(host, port)[0]
    connection = pinned_http.connection(scheme, host, port, address, _remaining(deadline, host))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
        response = connection.getresponse()
        if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
            return response.status, response.getheader("Location"), b""
        if response.status != 200:
            return response.status, None, b""
        return 200, None, _read(response, connection, settings.max_image_bytes, deadline, host)
    except TimeoutError:
        limit = f"{settings.fetch_timeout_s:g} s ({env_var('fetch_timeout_s')})"
        raise FetchError(f"{host} did not answer within {limit}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(f"{host} could not be fetched ({type(exc).__name__}: {exc})"[:300]) from None
    finally:
        connection.close()


def _read(response: http.client.HTTPResponse, connection: http.client.HTTPConnection, limit: int,
          deadline: float, host: str) -> bytes:
    length = response.getheader("Content-Length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise TooLarge(f"{host} sent {int(length)} bytes; the limit is {limit / MB:g} MB ({env_var('max_image_mb')})")
    chunks, size = [], 0
    while chunk := _chunk(response, connection, deadline, host):
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"{host} sent more than the limit of {limit / MB:g} MB ({env_var('max_image_mb')})")
        chunks.append(chunk)
    return b"".join(chunks)


def _chunk(response: http.client.HTTPResponse, connection: http.client.HTTPConnection, deadline: float,
           host: str) -> bytes:
    connection.pinned.settimeout(_remaining(deadline, host))  # one deadline for the whole body, not per read
    return response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)


def _remaining(deadline: float, host: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError(f"{host} did not send the image in time ({env_var('fetch_timeout_s')})")
    return left
