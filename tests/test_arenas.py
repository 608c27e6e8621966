"""A worker's malloc arenas are limited before its threads allocate, unless the operator set MALLOC_ARENA_MAX:
counted by glibc itself (malloc_stats) in a fresh process whose threads all allocate at once. Under OpenVINO,
large blocks go back to the system when freed, unless the operator set MALLOC_MMAP_THRESHOLD_: measured as RSS."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest

from clipsvc.server import lifecycle
from clipsvc.server.arenas import ARENA_MAX, ENV, LARGE_ENV

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
    done = run(PROGRAM, mode, env)
    return done.stdout.strip(), done.stderr.count("Arena ")


LARGE = """
import ctypes, sys
from clipsvc.server.arenas import return_large_blocks
print(return_large_blocks() if sys.argv[1] == "limit" else None, flush=True)
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes, libc.memset.argtypes = [ctypes.c_void_p], [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096
size = 2 << 20
libc.free(libc.malloc(size))  # glibc's own rule: freeing a mapped block raises the threshold above its size
blocks = [libc.malloc(size) for _ in range(32)]
for block in blocks:
    libc.memset(block, 1, size)
pinned = libc.malloc(300 << 10)  # a block above them (too big for a gap below): the top cannot shrink
before = rss()
for block in blocks:
    libc.free(block)
print((before - rss()) >> 20)
"""


def run(program: str, mode: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", program, mode], capture_output=True, text=True, timeout=60,
                          env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture
def env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in (ENV, LARGE_ENV)}


@pytest.mark.parametrize("mode, extra, expected", [
    ("limit", {}, "True"), ("limit", {LARGE_ENV: str(1 << 30)}, "False"), ("none", {}, "None")])
def test_freed_large_blocks_go_back_to_the_system(env, mode, extra, expected):
    """64 MiB of 2 MiB blocks freed: given back with the threshold; kept by glibc's default and by an operator's
    own (larger) threshold, which is left alone."""
    said, returned = run(LARGE, mode, env | extra).stdout.split()
    assert said == expected
    assert (int(returned) >= 60) == (expected == "True"), returned


def test_threads_share_the_limited_arenas(env):
    assert arenas("limit", env) == ("True", ARENA_MAX)


def test_without_the_limit_each_thread_takes_its_own(env):
    assert arenas("none", env)[1] > ARENA_MAX  # the test's own check: glibc's default does create them


def test_the_operators_malloc_arena_max_is_kept(env):
    assert arenas("limit", env | {ENV: "4"}) == ("False", 4)


@pytest.mark.parametrize("engine, gives_back", [("openvino", True), ("torch", False)])
def test_only_an_openvino_worker_maps_its_large_blocks(monkeypatch, settings, engine, gives_back):
    """torch's CPU activations are large blocks freed at every layer: mapped one by one, each would fault."""
    called = []
    monkeypatch.setattr(lifecycle, "limit_arenas", lambda: called.append("arenas"))
    monkeypatch.setattr(lifecycle, "return_large_blocks", lambda: called.append("large"))
    monkeypatch.setattr(lifecycle, "_import_encoder", lambda: SimpleNamespace(build=lambda *args, **kw: "encoder"))
    monkeypatch.setattr(lifecycle._state, "encoder", None)
    assert lifecycle.load_worker_encoder(replace(settings, cpu_engine=engine)) == "encoder"
    assert called == ["arenas", "large"] if gives_back else ["arenas"]
