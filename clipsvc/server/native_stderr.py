"""What native code writes to file descriptor 2 (libtiff, libjpeg, oneDNN, CUDA, faulthandler, Python's own
last-resort writes), logged line by line as JSON records of `clipsvc.native` at warning level.

capture() keeps a private copy of the real stderr (the JSON handler writes there: real_stderr_fd()), puts a pipe on
fd 2 and starts a thread that reads it. The master calls it in on_starting and every worker again in post_fork: a
forked child has no reader thread, and its own pipe makes each line's pid name the process that wrote it. At exit
fd 2 goes back to the real stderr, which ends the pipe; the reader logs what was left in it, then stops.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from dataclasses import dataclass

LOGGER = "clipsvc.native"
log = logging.getLogger(LOGGER)
MAX_LINE = 8192  # bytes of one line that are logged; the rest of an absurdly long line is dropped
DRAIN_SECONDS = 2.0  # at exit, how long the reader may take to log what is left in the pipe

_real_fd: int | None = None  # the real stderr (a container's log, the tests' file) once fd 2 is captured


@dataclass
class _Capture:
    pid: int  # the process that made the pipe: a forked child inherits this record, not the reader thread
    read_fd: int
    reader: threading.Thread


_capture: _Capture | None = None


def real_stderr_fd() -> int:
    """Where JSON lines go: the real stderr, never the pipe on fd 2 (that would feed the reader its own lines)."""
    return 2 if _real_fd is None else _real_fd


def capture() -> None:
    """Route this process's fd 2 through a pipe whose lines are logged; once per process (master, each worker)."""
    global _real_fd, _capture
    if _capture is not None:
        if _capture.pid == os.getpid():
            return
        os.close(_capture.read_fd)  # a forked child: its parent's reader reads that pipe, not this process
    else:
        atexit.register(_restore)  # forked children inherit it, and with it their own _capture
    if _real_fd is None:
        _real_fd = os.dup(2)  # not inheritable: exec'd programs get fd 2, the pipe, like everything else
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    reader = threading.Thread(target=_pump, args=(read_fd,), name="clipsvc-native-stderr", daemon=True)
    _capture = _Capture(os.getpid(), read_fd, reader)
    reader.start()


def _restore() -> None:
    """At exit: fd 2 back to the real stderr, which closes the pipe's last write end; wait for the reader to log
    what was left. Anything written to fd 2 after this (a crash during interpreter shutdown) is a plain line."""
    if _capture is None or _capture.pid != os.getpid() or _real_fd is None:
        return
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    os.dup2(_real_fd, 2)
    _capture.reader.join(DRAIN_SECONDS)


def _pump(fd: int) -> None:
    """The reader thread: one record per line until every write end of the pipe is closed."""
    pending, dropping = b"", False  # dropping: the rest of a line already logged as truncated
    while chunk := _read(fd):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if not dropping:
                _log(line, truncated=False)
            dropping = False
        if len(pending) > MAX_LINE:
            if not dropping:
                _log(pending, truncated=True)
            pending, dropping = b"", True
    if pending and not dropping:
        _log(pending, truncated=False)
    os.close(fd)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def _log(line: bytes, truncated: bool) -> None:
    truncated = truncated or len(line) > MAX_LINE
    text = line[:MAX_LINE].decode("utf-8", errors="replace").rstrip()
    if not text.strip():
        return
    if not log.hasHandlers():  # logging not configured: lastResort writes to fd 2, which would be a loop
        os.write(real_stderr_fd(), text.encode() + b"\n")
        return
    extra = {"event": "native_stderr", "stream": "stderr", "fd": 2}
    log.warning("%s", text, extra={**extra, "truncated": True} if truncated else extra)
