"""The guides' examples (README.md, docs/*.md), taken from their section and run as written against a test server's
address, and the outputs they show compared with what the commands really print.

An example that shows its output is a ```bash or ```python block followed directly (nothing but blank lines between)
by a ```json or ```text block: what the command prints, abridged at most with `...` (one line of JSON as the service
writes it, the floats after the first few of a vector left out). `check_output` compares the shapes: the same keys
in the same order, the same JSON types, the same headers for `curl -i`, the same words and punctuation of plain text.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from testkit import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"
API = DOCS / "api.md"
CONFIGURATION = DOCS / "configuration.md"
ARCHITECTURE = DOCS / "architecture.md"
# Every guide whose examples are run and whose shown outputs are checked.
GUIDES = (README, API, CONFIGURATION)
ADDRESS = "http://127.0.0.1:8081"  # where the guides' examples send their requests
ELLIPSIS = "..."
OUTPUT_LANGUAGES = ("json", "text")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


@dataclass(frozen=True)
class Block:
    """A fenced code block: its language, its text, the heading it sits under and the line its fence opens on."""
    language: str
    code: str
    heading: str
    line: int


@dataclass(frozen=True)
class Example:
    """A command block and the output block right after it."""
    document: Path
    command: Block
    shown: Block

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.command.line}"


def blocks(document: Path = README) -> list[tuple[Block, bool]]:
    """Every fenced block of `document` in order, each with whether it follows the previous block directly."""
    found: list[tuple[Block, bool]] = []
    heading, fence, body, start, gap_is_blank = "", None, [], 0, False
    for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1):
        if fence is None:
            if line.startswith("```"):
                fence, body, start = line[3:].strip(), [], number
            elif re.match(r"#{1,6} ", line):
                heading, gap_is_blank = line, False
            elif line.strip():
                gap_is_blank = False
        elif line.startswith("```"):
            found.append((Block(fence, "\n".join(body) + "\n", heading, start), gap_is_blank and bool(found)))
            fence, gap_is_blank = None, True
        else:
            body.append(line)
    return found


def _headings(document: Path) -> list[tuple[int, str]]:
    """(line number, heading line) of every heading outside code blocks."""
    result, fenced = [], False
    for number, line in enumerate(document.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            result.append((number, line))
    return result


def section_blocks(heading: str, document: Path = README) -> list[Block]:
    """The blocks under `heading` (a heading line, or its start), up to the next heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    headings = _headings(document)
    starts = [number for number, line in headings if line.startswith(heading)]
    if len(starts) != 1:
        raise KeyError(f"{document.name} has {len(starts)} sections {heading!r}, not one")
    ends = [number for number, line in headings
            if number > starts[0] and len(line) - len(line.lstrip("#")) <= level]
    end = ends[0] if ends else float("inf")
    return [block for block, _ in blocks(document) if starts[0] < block.line < end]


def code_blocks(heading: str, language: str, document: Path = README) -> list[str]:
    """The `language` code blocks of the section under `heading`, up to the next heading of its level or above."""
    return [block.code for block in section_blocks(heading, document) if block.language == language]


def examples(document: Path = README) -> list[Example]:
    """Every command block (bash, python) whose output is shown right after it."""
    found = blocks(document)
    return [Example(document, previous, block)
            for (previous, _), (block, direct) in zip(found, found[1:], strict=False)
            if direct and block.language in OUTPUT_LANGUAGES and previous.language in ("bash", "python")]


def environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment with this Python's bin folder first on PATH: the user's virtualenv, activated."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
    env.update(extra or {})
    return env


def run_bash(code: str, url: str, cwd: Path | None = None, env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
    """A shell example with the guides' address replaced by `url`."""
    return subprocess.run(["bash", "-c", code.replace(ADDRESS, url)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=environment(env))


def run_python(code: str, url: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """A Python example with the guides' address replaced by `url`, run by this Python as a script."""
    return subprocess.run([sys.executable, "-c", code.replace(ADDRESS, url)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=environment())


def run(example: Example, url: str, cwd: Path) -> subprocess.CompletedProcess:
    runner = run_bash if example.command.language == "bash" else run_python
    return runner(example.command.code, url, cwd)


# --- Shown outputs against printed ones ---------------------------------------------------------------------------

class _More:
    """Where an abridged JSON value had `...`: more elements (in a list) or more keys (in an object)."""

    def __repr__(self) -> str:
        return ELLIPSIS


MORE = _More()
_MORE_KEY = "\0more"  # written into the JSON text as "\u0000more"


def parse_abridged(text: str):
    """JSON in which `...` may stand for list elements or object members left out."""
    out, stack, i = [], [], 0
    while i < len(text):
        char = text[i]
        if char == '"':
            end = i + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            out.append(text[i:end + 1])
            i = end + 1
            continue
        if text.startswith(ELLIPSIS, i):
            out.append('"\\u0000more": null' if stack and stack[-1] == "{" else '"\\u0000more"')
            i += len(ELLIPSIS)
            continue
        if char in "[{":
            stack.append(char)
        elif char in "]}":
            stack.pop()
        out.append(char)
        i += 1
    return _with_more(json.loads("".join(out)))


def _with_more(value):
    if isinstance(value, list):
        return [MORE if item == _MORE_KEY else _with_more(item) for item in value]
    if isinstance(value, dict):
        return {(MORE if key == _MORE_KEY else key): _with_more(item) for key, item in value.items()}
    return value


def _kind(value) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null",
            list: "array", dict: "object"}[type(value)]


def same_shape(shown, real, path: str = "$") -> None:
    """Raise AssertionError where `real` has another shape than the abridged `shown`: another type, other keys or
    keys in another order, fewer elements than shown. `...` stands for elements or keys not shown."""
    if isinstance(shown, dict):
        assert isinstance(real, dict), f"{path}: shown an object, printed {_kind(real)}"
        keys, real_keys = [k for k in shown if k is not MORE], list(real)
        if MORE in shown:
            positions = [real_keys.index(k) if k in real_keys else -1 for k in keys]
            assert -1 not in positions and positions == sorted(positions), (
                f"{path}: shown keys {keys} are not, in this order, among the printed {real_keys}")
        else:
            assert keys == real_keys, f"{path}: shown keys {keys}, printed {real_keys}"
        for key in keys:
            same_shape(shown[key], real[key], f"{path}.{key}")
    elif isinstance(shown, list):
        assert isinstance(real, list), f"{path}: shown an array, printed {_kind(real)}"
        items = [item for item in shown if item is not MORE]
        if MORE in shown:
            assert shown[len(items):] == [MORE] * (len(shown) - len(items)), f"{path}: `...` only after the elements"
            assert len(real) >= len(items), f"{path}: shown {len(items)}+ elements, printed {len(real)}"
        else:
            assert len(real) == len(items), f"{path}: shown {len(items)} elements, printed {len(real)}"
        for index, item in enumerate(items):
            same_shape(item, real[index], f"{path}[{index}]")
    else:
        assert _kind(shown) == _kind(real), f"{path}: shown {_kind(shown)} {shown!r}, printed {_kind(real)} {real!r}"


def _words(text: str) -> list[str]:
    """Plain text as its words and punctuation, each number as one token `<n>`."""
    return re.findall(r"<n>|\w+|[^\w\s]", re.sub(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", "<n>", text))


def check_output(shown: Block, printed: str) -> None:
    """Raise AssertionError unless `printed` is what the `shown` block shows, up to its abridgements."""
    text = shown.code.strip("\n")
    assert "//" not in text.replace("://", ""), "a shown output has a `//` comment: no command prints one"
    if text.startswith("HTTP/"):
        head, _, body = text.partition("\n\n")
        real_head, _, real_body = printed.replace("\r\n", "\n").partition("\n\n")
        shown_lines, real_lines = head.splitlines(), real_head.splitlines()
        assert shown_lines[0] == real_lines[0], f"status line: shown {shown_lines[0]!r}, printed {real_lines[0]!r}"
        names = [line.split(":", 1)[0].lower() for line in shown_lines[1:]]
        real_names = [line.split(":", 1)[0].lower() for line in real_lines[1:]]
        assert names == real_names, f"headers: shown {names}, printed {real_names}"
        real_values = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in real_lines[1:]}
        for line in shown_lines[1:]:  # the values that do not change from run to run
            name, value = (part.strip() for part in line.split(":", 1))
            real = real_values[name.lower()]
            if name.lower() in ("request_id", "x-request-id") and UUID.fullmatch(value):  # one the server chose
                assert UUID.fullmatch(real), f"{name}: shown a fresh id, printed {real!r}"
            elif name.lower() in ("content-type", "request_id", "x-request-id"):
                assert value == real, f"{name}: shown {value!r}, printed {real!r}"
        same_shape(parse_abridged(body), json.loads(real_body))
    elif shown.language == "json":
        same_shape(parse_abridged(text), json.loads(printed))
    else:
        assert _words(text) == _words(printed), f"shown:\n{text}\nprinted:\n{printed}"
