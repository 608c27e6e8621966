"""Issue 20: what native code writes to fd 2 (libtiff on a TIFF whose codec it lacks) becomes JSON log lines, and a
library's error record about a client's upload (Pillow's on a broken TIFF) is a warning: error level means the
service failed. The capture in a small process first, the cap rule alone, then real gunicorn with such TIFFs."""

import importlib.util
import io
import json
import logging
import struct
import subprocess
import sys
import time

import pytest
import requests
from PIL import Image

from clipsvc.server import native_stderr
from clipsvc.server.logs import CapThirdPartyLevel, JsonFormatter, JsonHandler
from testkit import ROOT
from testkit.server import gunicorn

WEBP_MESSAGE = "WEBP compression support is not configured"  # libtiff, straight to fd 2 (Pillow 13.0.0's build)
SAMPLES_MESSAGE = "More samples per pixel than can be decoded"  # Pillow's logger, at error level


def patched_tiff(**tags: int) -> bytes:
    """An 8x8 RGB TIFF written by Pillow (uncompressed), then the given tags' values patched in place: e.g.
    Compression (259) = 50001 (WEBP), or SamplesPerPixel (277) = 7, above what Pillow decodes (6)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, "TIFF")
    data = bytearray(buffer.getvalue())
    assert data[:4] == b"II*\0"
    ifd = struct.unpack_from("<I", data, 4)[0]
    wanted = {int(name.removeprefix("tag")): value for name, value in tags.items()}
    for index in range(struct.unpack_from("<H", data, ifd)[0]):
        at = ifd + 2 + 12 * index
        tag, kind = struct.unpack_from("<HH", data, at)
        if tag in wanted:
            assert kind == 3  # SHORT: the value sits in the entry itself
            struct.pack_into("<IHH", data, at + 4, 1, wanted.pop(tag), 0)
    assert not wanted, f"tags not in the file: {wanted}"
    return bytes(data)


def docker_check():
    """scripts/docker_check.py, whose own (stdlib-built) TIFFs must do the same against the image."""
    spec = importlib.util.spec_from_file_location("docker_check", ROOT / "scripts" / "docker_check.py")
    module = sys.modules.setdefault("docker_check", importlib.util.module_from_spec(spec))  # dataclasses need it
    spec.loader.exec_module(module)
    return module


# --- The capture, in a small process ---------------------------------------------------------------------------------

CAPTURING = r"""
import logging, logging.config, os, sys
from clipsvc.server import native_stderr
from clipsvc.server.logs import logging_config
logging.config.dictConfig(logging_config())
native_stderr.capture()
os.write(2, b"libfoo: a plain line from C\n")
os.write(2, b"x" * 100_000 + b"\nafter the long line\n")
os.write(2, b"not UTF-8: \xff\n\n")
print("Python's own stderr", file=sys.stderr, flush=True)
logging.getLogger("PIL.TiffImagePlugin").error("a library's error %d", 7)
child = os.fork()
if child == 0:
    native_stderr.capture()
    os.write(2, b"from the child\n")
    sys.exit(0)
os.waitpid(child, 0)
print(os.getpid(), child, flush=True)
os.write(2, b"last words, without a newline")
"""


def test_fd2_lines_become_json_records_of_the_process_that_wrote_them():
    done = subprocess.run([sys.executable, "-c", CAPTURING], cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    parent, child = map(int, done.stdout.split())
    records = [json.loads(line) for line in done.stderr.decode().splitlines()]  # raises on a plain line
    native = {r["message"]: r for r in records if r["logger"] == native_stderr.LOGGER}
    assert all(r["level"] == "warning" and r["event"] == "native_stderr" and r["stream"] == "stderr"
               for r in native.values())
    long_line = "x" * native_stderr.MAX_LINE
    assert set(native) >= {"libfoo: a plain line from C", long_line, "after the long line", "not UTF-8: \ufffd",
                           "Python's own stderr", "from the child", "last words, without a newline"}
    assert native[long_line]["truncated"] is True and "truncated" not in native["after the long line"]
    assert native["from the child"]["pid"] == child
    assert {r["pid"] for m, r in native.items() if m != "from the child"} == {parent}
    (library,) = [r for r in records if r["logger"] == "PIL.TiffImagePlugin"]
    assert (library["level"], library["original_level"]) == ("warning", "error")


class Unformattable(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        raise ValueError("cannot format this record")


@pytest.mark.parametrize("name, reported", [(native_stderr.LOGGER, False), ("clipsvc.request", True)])
def test_a_captured_line_that_fails_to_log_is_not_reported_on_stderr(capsys, name, reported):
    """logging reports a failed record on stderr: for a captured line that would come back through the pipe as
    another record, failing the same way, for ever."""
    handler = JsonHandler()
    handler.setFormatter(Unformattable())
    handler.handle(logging.LogRecord(name, logging.WARNING, __file__, 1, "a line", (), None))
    assert ("cannot format this record" in capsys.readouterr().err) is reported


# --- The cap rule ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, level, logged, original", [
    ("PIL.TiffImagePlugin", logging.ERROR, "warning", "error"),
    ("urllib3.connectionpool", logging.CRITICAL, "warning", "critical"),
    ("root", logging.ERROR, "warning", "error"),
    ("clipsvcx", logging.ERROR, "warning", "error"),  # a prefix of ours is not ours
    ("PIL.TiffImagePlugin", logging.WARNING, "warning", None),
    ("PIL.Image", logging.DEBUG, "debug", None),
    ("clipsvc.web.errors", logging.ERROR, "error", None),
    ("clipsvc", logging.CRITICAL, "critical", None),
    ("gunicorn.error", logging.ERROR, "error", None),
])
def test_only_our_loggers_and_gunicorns_log_at_error(name, level, logged, original):
    record = logging.LogRecord(name, level, __file__, 1, "something went wrong", (), None)
    assert CapThirdPartyLevel().filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == logged and entry.get("original_level") == original


# --- Real gunicorn ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    with gunicorn(model_dir, tmp_path_factory.mktemp("native-stderr") / "server.log", WEB_CONCURRENCY="1") as server:
        yield server


def wait_record(server, match, since: int = 0, timeout: float = 10) -> dict:
    """The first log record after the first `since` that `match` accepts: the reader thread logs a captured line a
    moment after it was written."""
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in server.log_records()[since:] if match(r)]
        if found or time.monotonic() > deadline:
            assert found, f"no such record in:\n{server.log_path.read_text()[-4000:]}"
            return found[0]
        time.sleep(0.05)


TIFFS = {
    "webp, Pillow's file patched": (lambda: patched_tiff(tag259=50001), native_stderr.LOGGER, WEBP_MESSAGE),
    "webp, docker-check's file": (lambda: docker_check().tiff(compression=50001), native_stderr.LOGGER, WEBP_MESSAGE),
    "samples, Pillow's file patched": (lambda: patched_tiff(tag277=7), "PIL.TiffImagePlugin", SAMPLES_MESSAGE),
    "samples, docker-check's file": (lambda: docker_check().tiff(samples_per_pixel=7), "PIL.TiffImagePlugin",
                                     SAMPLES_MESSAGE),
}


@pytest.mark.parametrize("case", TIFFS)
def test_a_broken_tiff_is_a_4xx_with_json_warnings_only(server, case):
    make, logger, message = TIFFS[case]
    request_id, before = f"tiff-{list(TIFFS).index(case)}", len(server.log_records())
    response = requests.post(server.url + "/syte_test/clip", files={"image-1": ("x.tif", make(), "image/tiff")},
                             headers={"request_id": request_id}, timeout=30)
    assert 400 <= response.status_code < 500 and response.json()["error"]["status"] == response.status_code
    wait_record(server, lambda r: r.get("request_id") == request_id and r["logger"] == "clipsvc.request")
    record = wait_record(server, lambda r: r["logger"] == logger and message in r["message"], before)
    assert record["level"] == "warning"
    assert record["pid"] in server.worker_pids() and record["pid"] != server.process.pid
    if logger != native_stderr.LOGGER:  # logged in the request's thread: it carries the request's id
        assert (record["original_level"], record["request_id"]) == ("error", request_id)
    records = [json.loads(line) for line in server.log_lines()]  # raises on any line that is not JSON
    assert [r for r in records if r["level"] in ("error", "critical")] == []


def test_after_the_uploads_and_a_clean_stop_every_line_is_json_and_none_is_an_error(server):
    assert server.stop() == 0
    records = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.strip()]
    assert any(native_stderr.LOGGER == r["logger"] for r in records)
    assert [r for r in records if r["level"] in ("error", "critical")] == []
