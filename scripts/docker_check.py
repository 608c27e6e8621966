#!/usr/bin/env python3
"""Build the CPU image and check it the way the README runs it (`make docker-check`; only Python's stdlib).

Builds the image, writes a tiny stand-in model readable by the image's user, runs
`docker run -v MODEL:/model:ro -p 127.0.0.1:PORT:8081 IMAGE`, and checks: the HEALTHCHECK turns healthy; the
seed request (an image and a text, multipart, header `request_id`) answers 200 with that `request_id` and the
README's keys; the server runs as a non-root user; `docker stop -t 70` ends it with exit code 0; every log line is
a JSON object, also after two broken TIFFs (each a 4xx; one makes libtiff write to stderr, which is logged as a
`clipsvc.native` warning, the other makes Pillow log an error, which is capped at warning: no line is at error
level); a run with nothing mounted at /model exits non-zero within --fail-within seconds with a JSON error line.
Every container it makes is removed, whatever happens. Exit status: 0 all checks passed, 1 one failed, 2 it could
not start (no Docker engine, bad arguments).

Where pip looks is the Dockerfile's build arguments (docs/deployment.md): behind a mirror,
  --build-arg PIP_INDEX_URL=https://mirror.example.com/pypi/simple
  --build-arg TORCH_INDEX_URL=https://mirror.example.com/pytorch/whl/cpu
  --build-arg BASE_IMAGE=mirror.example.com/library/python:3.11-slim-bookworm
with the torch wheel at hand instead of the PyTorch index, --wheels /opt/wheels (which implies
--build-arg TORCH_INDEX_URL=); air-gapped, every wheel in --wheels DIR and --build-arg PIP_NO_INDEX=1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zlib
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTAINER_PORT = 8081
USER_ID = 10001  # the Dockerfile's USER
SEED_TEXT = "Man staring at the moon, moon is made of mechanical parts"
SEED_IMAGE_NAME = "Firefly man staring at the moon, moon is made of mechanical parts 74156.jpg"
# The README's response to one image and one text with id 1, exactly these keys.
SEED_KEYS = {"image_1_vector", "text_1_vector", "image_vector_1_similarity_score",
             "image_vector_1_cosine_similarity"}


class CheckFailed(Exception):
    """A check did not hold; the message says what was seen."""


@dataclass
class Report:
    """What each check saw, in order, and the figures worth recording."""

    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)

    def record(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)


# --- Pure checks on what the container said (unit-tested without Docker) ---------------------------------------


def non_json_lines(logs: str) -> list[str]:
    """The log lines that are not one JSON object each (blank lines aside)."""
    bad = []
    for line in logs.splitlines():
        if not line.strip():
            continue
        try:
            if isinstance(json.loads(line), dict):
                continue
        except ValueError:
            pass
        bad.append(line)
    return bad


def log_records(logs: str) -> list[dict]:
    return [json.loads(line) for line in logs.splitlines() if line.strip() and not non_json_lines(line)]


def check_seed_response(status: int, headers: dict[str, str], body: bytes, request_id: str) -> str:
    """The README's answer to the seed request: 200, the request_id echoed, exactly its keys, unit vectors."""
    if status != 200:
        raise CheckFailed(f"status {status}: {body[:300]!r}")
    echoed = {name.lower(): value for name, value in headers.items()}.get("request_id")
    if echoed != request_id:
        raise CheckFailed(f"request_id header {echoed!r}, sent {request_id!r}")
    data = json.loads(body)
    if set(data) != SEED_KEYS:
        raise CheckFailed(f"keys {sorted(data)}, the README says {sorted(SEED_KEYS)}")
    image, text = data["image_1_vector"], data["text_1_vector"]
    if not image or len(image) != len(text) or not all(isinstance(x, float) for x in image + text):
        raise CheckFailed(f"vectors of {len(image)} and {len(text)} floats")
    for name, vector in (("image", image), ("text", text)):
        if abs(sum(x * x for x in vector) - 1) > 1e-3:
            raise CheckFailed(f"the {name} vector is not unit length")
    score = data["image_vector_1_similarity_score"]
    if not isinstance(score, int) or not 0 <= score <= 100:
        raise CheckFailed(f"similarity score {score!r} is not an integer 0-100")
    return f"200, request_id {echoed}, keys as the README, {len(image)}-float unit vectors, score {score}"


def check_request_logged(logs: str, request_id: str) -> str:
    lines = [r for r in log_records(logs) if r.get("request_id") == request_id and r.get("message") == "request"]
    if not lines or lines[0].get("status") != 200:
        raise CheckFailed(f"no request log line with request_id {request_id} and status 200")
    return f"request line: {lines[0].get('method')} {lines[0].get('path')} {lines[0].get('status')}"


def check_all_json(logs: str) -> str:
    bad = non_json_lines(logs)
    if bad:
        raise CheckFailed(f"{len(bad)} non-JSON line(s), first: {bad[0][:200]!r}")
    count = len(log_records(logs))
    if not count:
        raise CheckFailed("no log lines at all")
    return f"{count} lines, every one a JSON object"


def check_native_stderr(logs: str, tiff_answers: dict[str, int | str]) -> str:
    """After the broken TIFFs (upload_broken_tiffs): each was a 4xx, libtiff's own stderr line came back as a JSON
    warning, and nothing a client sent made an error-level line (error level means the service failed)."""
    wrong = {name: answer for name, answer in tiff_answers.items() if not isinstance(answer, int) or answer // 100 != 4}
    if wrong or not tiff_answers:
        raise CheckFailed(f"the broken TIFFs were not answered 4xx: {wrong or 'not sent'}")
    records = log_records(logs)
    native = [r for r in records if r.get("logger") == "clipsvc.native" and r.get("level") == "warning"]
    if not native:
        raise CheckFailed("no clipsvc.native warning line: libtiff's stderr was not logged as JSON")
    errors = [r for r in records if r.get("level") in ("error", "critical")]
    if errors:
        raise CheckFailed(f"{len(errors)} error-level line(s), first: {json.dumps(errors[0])[:200]}")
    return (f"broken TIFFs {', '.join(map(str, tiff_answers.values()))}, {len(native)} native stderr line(s) as "
            f"warnings ({native[0].get('message', '')[:60]!r}), no error line")


def check_model_error(logs: str) -> str:
    """The missing-model run's logs: JSON only, with an error line that names /model."""
    check_all_json(logs)
    errors = [r for r in log_records(logs) if r.get("level") in ("error", "critical") and "/model" in json.dumps(r)]
    if not errors:
        raise CheckFailed(f"no JSON error line naming /model in: {logs[-500:]!r}")
    return f"error line: {errors[0].get('message')!r}"


def process_uid(status: str) -> int:
    """The real uid from /proc/PID/status."""
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise CheckFailed("no Uid line in /proc/1/status")


def multipart(fields: list[tuple[str, str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart/form-data body from (name, filename or "", content, content type) parts, and its type."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, filename, content, ctype in fields:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode()
        body += (f"Content-Type: {ctype}\r\n" if ctype else "").encode() + b"\r\n" + content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def png(width: int = 224, height: int = 224) -> bytes:
    """A small RGB gradient as PNG, with zlib alone (the seed photo is not in the repo)."""
    rows = b"".join(b"\x00" + b"".join(bytes((x % 256, y % 256, (x + y) % 256)) for x in range(width))
                    for y in range(height))  # each row: filter type 0, then RGB triples

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def tiff(compression: int = 1, samples_per_pixel: int = 3) -> bytes:
    """An 8x8 RGB TIFF (one strip, little-endian) with struct alone. compression=50001 (WEBP) over raw pixels makes
    libtiff write to fd 2 whether or not it has the codec; samples_per_pixel=7 makes Pillow log an error."""
    side, pixels = 8, bytes(8 * 8 * 3)
    shorts = {256: side, 257: side, 258: 8, 259: compression, 262: 2, 277: samples_per_pixel, 278: side}
    data_at = 8 + 2 + 12 * (len(shorts) + 2) + 4  # header, entry count, entries, next-IFD offset
    entries = {tag: struct.pack("<HHIHH", tag, 3, 1, value, 0) for tag, value in shorts.items()}
    entries |= {273: struct.pack("<HHII", 273, 4, 1, data_at), 279: struct.pack("<HHII", 279, 4, 1, len(pixels))}
    ifd = struct.pack("<H", len(entries)) + b"".join(entries[tag] for tag in sorted(entries)) + struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8) + ifd + pixels


# --- Docker ------------------------------------------------------------------------------------------------------


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise CheckFailed(f"`docker {' '.join(args[:3])} ...` ran past {timeout:.0f} s") from exc
    if check and result.returncode != 0:
        command = " ".join(args[:3])
        raise CheckFailed(f"`docker {command} ...` exited {result.returncode}: {result.stderr.strip()[-800:]}")
    return result


def docker_answers() -> str | None:
    """None when a Docker engine answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    try:
        result = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                                timeout=20)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 20 s"
    if result.returncode != 0 or not result.stdout.strip():
        return f"no Docker engine answers `docker info`: {result.stderr.strip()[-300:]}"
    return None


def build_command(args: argparse.Namespace) -> list[str]:
    command = ["docker", "build", "-t", args.image]
    if args.network:
        command += ["--network", args.network]
    build_args = list(args.build_arg)
    if args.wheels and not any(a.startswith("TORCH_INDEX_URL=") for a in build_args):
        build_args.append("TORCH_INDEX_URL=")  # the torch wheel is at hand: no PyTorch index to reach
    for value in build_args:
        command += ["--build-arg", value]
    return [*command, str(ROOT)]


def build(args: argparse.Namespace, report: Report, stack: ExitStack) -> str:
    if args.wheels:  # into the context's wheels/ for this build only; wheels/.gitignore keeps git out of it
        for wheel in sorted(Path(args.wheels).glob("*.whl")):
            target = ROOT / "wheels" / wheel.name
            if not target.exists():
                shutil.copy2(wheel, target)
                stack.callback(target.unlink, missing_ok=True)
    command = build_command(args)
    print("$", " ".join(command), flush=True)
    started = time.monotonic()
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=args.build_timeout)
    except subprocess.TimeoutExpired as exc:
        raise CheckFailed(f"the build ran past {args.build_timeout} s") from exc
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise CheckFailed(f"docker build exited {result.returncode}:\n{(result.stdout + result.stderr)[-3000:]}")
    size = int(docker("image", "inspect", "-f", "{{.Size}}", args.image).stdout)
    report.figures.update(build_seconds=round(seconds, 1), image_bytes=size)
    return f"{args.image} in {seconds:.0f} s, {size / 1e9:.2f} GB"


def write_model(args: argparse.Namespace, stack: ExitStack) -> Path:
    """A tiny stand-in (python -m clipsvc.standin), readable by the image's uid 10001."""
    if args.model:
        return Path(args.model).resolve()
    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="clipsvc-docker-check-"))) / "tiny"
    subprocess.run([sys.executable, "-m", "clipsvc.standin", str(directory), "--arch", "tiny"], cwd=ROOT,
                   check=True, timeout=300, capture_output=True)
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return directory


def run_container(image: str, name: str, stack: ExitStack, *options: str) -> str:
    stack.callback(docker, "rm", "--force", "--volumes", name, timeout=90, check=False)
    docker("run", "--detach", "--name", name, *options, image, timeout=60)
    return name


def wait_healthy(name: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        state = json.loads(docker("inspect", "-f", "{{json .State}}", name).stdout)
        health = (state.get("Health") or {}).get("Status")
        if health == "healthy":
            return time.monotonic() - started
        if not state.get("Running") or health == "unhealthy":
            raise CheckFailed(f"health {health}, running {state.get('Running')}, exit {state.get('ExitCode')}")
        time.sleep(1)
    raise CheckFailed(f"not healthy within {timeout:.0f} s")


def seed_request(base_url: str, request_id: str) -> tuple[int, dict[str, str], bytes]:
    return post_form(base_url, [("image-1", SEED_IMAGE_NAME, png(), "image/png"),
                                ("text-1", "", SEED_TEXT.encode(), None)], request_id)


def upload_broken_tiffs(base_url: str) -> dict[str, int | str]:
    """Two TIFFs a client may send (see tiff()), each alone: name -> status, or why there was none. The logs are
    checked afterwards (check_native_stderr)."""
    answers: dict[str, int | str] = {}
    for name, content in (("webp.tif", tiff(compression=50001)), ("samples.tif", tiff(samples_per_pixel=7))):
        try:
            answers[name] = post_form(base_url, [("image-1", name, content, "image/tiff")], "docker-check-tiff")[0]
        except OSError as exc:
            answers[name] = str(exc)
    return answers


def post_form(base_url: str, fields: list[tuple[str, str, bytes, str | None]], request_id: str,
              ) -> tuple[int, dict[str, str], bytes]:
    body, content_type = multipart(fields)
    request = urllib.request.Request(f"{base_url}/syte_test/clip", data=body, method="POST",
                                     headers={"Content-Type": content_type, "request_id": request_id})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def check(report: Report, name: str, step) -> object:
    try:
        detail = step()
    except (CheckFailed, ValueError, OSError, subprocess.SubprocessError) as exc:
        report.record(name, False, str(exc))
        return None
    report.record(name, True, str(detail))
    return detail


def serve_checks(args: argparse.Namespace, report: Report, stack: ExitStack, model: Path) -> None:
    name = run_container(args.image, f"clipsvc-check-{uuid.uuid4().hex[:8]}", stack,
                         "-v", f"{model}:/model:ro", "-p", f"127.0.0.1:{args.port or ''}:{CONTAINER_PORT}")
    healthy = check(report, "healthcheck", lambda: f"healthy after {wait_healthy(name, args.health_timeout):.0f} s")
    if healthy is None:
        report.record("logs so far", False, docker("logs", name, check=False).stderr[-2000:])
        return
    host_port = docker("port", name, f"{CONTAINER_PORT}/tcp").stdout.split()[0]
    if not host_port.startswith("127.0.0.1:"):
        report.record("loopback only", False, f"published on {host_port}")
    request_id = f"docker-check-{uuid.uuid4().hex[:8]}"
    check(report, "seed request", lambda: check_seed_response(*seed_request(f"http://{host_port}", request_id),
                                                             request_id))
    tiff_answers = upload_broken_tiffs(f"http://{host_port}")  # judged with the logs, in "JSON logs"
    check(report, "non-root", lambda: non_root(name))
    started = time.monotonic()
    check(report, "docker stop", lambda: stop(name, started))
    logs = docker("logs", name, timeout=60)
    check(report, "JSON logs", lambda: f"{check_all_json(logs.stdout + logs.stderr)}; "
                                       f"{check_native_stderr(logs.stdout + logs.stderr, tiff_answers)}")
    check(report, "request logged", lambda: check_request_logged(logs.stdout + logs.stderr, request_id))


def non_root(name: str) -> str:
    user = docker("inspect", "-f", "{{.Config.User}}", name).stdout.strip()
    uid = process_uid(docker("exec", name, "cat", "/proc/1/status").stdout)
    exec_uid = int(docker("exec", name, "id", "-u").stdout)
    if uid == 0 or exec_uid == 0 or uid != USER_ID:
        raise CheckFailed(f"PID 1 runs as uid {uid}, `id -u` says {exec_uid}, image USER {user!r}")
    return f"PID 1 (gunicorn) uid {uid}, `docker exec id -u` {exec_uid}, image USER {user}"


def stop(name: str, started: float) -> str:
    docker("stop", "-t", "70", name, timeout=100)
    code = int(docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout)
    if code != 0:
        raise CheckFailed(f"exit code {code}")
    return f"exit code 0 after {time.monotonic() - started:.1f} s"


def missing_model_check(args: argparse.Namespace, report: Report, stack: ExitStack) -> None:
    def run() -> str:
        started = time.monotonic()
        name = run_container(args.image, f"clipsvc-check-nomodel-{uuid.uuid4().hex[:8]}", stack)
        code = int(docker("wait", name, timeout=args.fail_within).stdout)
        seconds = time.monotonic() - started
        if code == 0:
            raise CheckFailed("exit code 0 without a model")
        logs = docker("logs", name)
        report.figures["missing_model_seconds"] = round(seconds, 1)
        return f"exit code {code} after {seconds:.1f} s; {check_model_error(logs.stdout + logs.stderr)}"
    check(report, "missing model fails fast", run)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/docker-check", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--image", default="clipsvc", help="tag to build and check (default: clipsvc)")
    parser.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE",
                        help="passed to docker build; repeat it (see below)")
    parser.add_argument("--wheels", metavar="DIR", help="copy DIR/*.whl into the context's wheels/ for the build")
    parser.add_argument("--network", metavar="MODE", help="docker build --network, e.g. host")
    parser.add_argument("--no-build", action="store_true", help="check the image already tagged --image")
    parser.add_argument("--remove-image", action="store_true", help="remove the image afterwards")
    parser.add_argument("--model", metavar="DIR", help="a model directory instead of a tiny stand-in")
    parser.add_argument("--port", type=int, default=0, help="host port on 127.0.0.1 (default: any free one)")
    parser.add_argument("--build-timeout", type=float, default=1800, metavar="S")
    parser.add_argument("--health-timeout", type=float, default=180, metavar="S")
    parser.add_argument("--fail-within", type=float, default=30, metavar="S",
                        help="a run without a model must exit within S seconds (default 30)")
    parser.add_argument("--report", metavar="FILE", help="write the checks and figures as JSON")
    args = parser.parse_args(argv)
    for value in args.build_arg:
        if "=" not in value:
            parser.error(f"--build-arg {value!r}: expected NAME=VALUE")
    if args.wheels and not Path(args.wheels).is_dir():
        parser.error(f"--wheels {args.wheels}: not a directory")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if why := docker_answers():
        print(f"docker-check: {why}", file=sys.stderr)
        return 2
    report = Report()
    started = time.monotonic()
    with ExitStack() as stack:
        if args.remove_image:
            stack.callback(docker, "rmi", "--force", args.image, timeout=120, check=False)
        if not args.no_build and check(report, "build", lambda: build(args, report, stack)) is None:
            return finish(args, report, started)
        model = write_model(args, stack)
        serve_checks(args, report, stack, model)
        missing_model_check(args, report, stack)
    return finish(args, report, started)


def finish(args: argparse.Namespace, report: Report, started: float) -> int:
    report.figures["total_seconds"] = round(time.monotonic() - started, 1)
    passed = sum(ok for _, ok, _ in report.checks)
    print(f"docker-check: {passed}/{len(report.checks)} checks passed in {report.figures['total_seconds']:.0f} s")
    if args.report:
        Path(args.report).write_text(json.dumps({"ok": report.ok, "figures": report.figures, "checks": [
            {"name": n, "ok": ok, "detail": d} for n, ok, d in report.checks]}, indent=2) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
