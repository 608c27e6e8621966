"""A worker's malloc arenas are limited before its threads allocate, unless the operator set MALLOC_ARENA_MAX:
counted by glibc itself (malloc_stats) in a fresh process whose threads all allocate at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clipsvc.server.arenas import ARENA_MAX, ENV

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's arenas")

THREADS = 12
PROGRAM = f"""
import ctypes, sys, threading
from clipsvc.server.arenas import limit_arenas
print(limit_arenas() if sys.argv[1] == "limit" else None, flush=True)
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
ready, done = threading.Barrier({THREADS} + 1), threading.Event()

def allocate():
    libc.malloc(4096)  # a thread's first allocation takes it an arena
    ready.wait()
    done.wait()

threads = [threading.Thread(target=allocate) for _ in range({THREADS})]
for thread in threads:
    thread.start()
ready.wait()
libc.malloc_stats()  # one "Arena N:" block per arena, on stderr
done.set()
"""


def arenas(mode: str, env: dict[str, str]) -> tuple[str, int]:
    run = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=60,
                         env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert run.returncode == 0, run.stderr
    return run.stdout.strip(), run.stderr.count("Arena ")


@pytest.fixture
def env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != ENV}


def test_threads_share_the_limited_arenas(env):
    assert arenas("limit", env) == ("True", ARENA_MAX)


def test_without_the_limit_each_thread_takes_its_own(env):
    assert arenas("none", env)[1] > ARENA_MAX  # the test's own check: glibc's default does create them


def test_the_operators_malloc_arena_max_is_kept(env):
    assert arenas("limit", env | {ENV: "4"}) == ("False", 4)
