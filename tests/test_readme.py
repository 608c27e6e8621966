"""The README and the guides in docs/ are part of the contract: their commands, tables, links and docker lines must
match the code."""

import importlib.util
import json
import re
import shlex
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import requests
from conftest import image_bytes

from clipsvc.encoder.modeldir import resolve_model_dir
from clipsvc.errors import Code
from clipsvc.parsing.images import FORMATS
from clipsvc.settings import ENV_VARS, Settings, markdown_table
from testkit.models import zip_model
from testkit.readme import blocks, same_shape

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
API = (ROOT / "docs" / "api.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
# Where commands are shown to be copied; docs/deployment.md repeats the docker lines.
GUIDES = {path: (ROOT / path).read_text() for path in (
    "README.md", "docs/api.md", "docs/configuration.md", "docs/architecture.md", "docs/deployment.md",
    "bench/README.md", "SECURITY.md", "docs/reliability.md", "docs/performance.md")}
# Every Markdown page whose links must lead somewhere.
PAGES = sorted({*GUIDES, "wheels/README.md"})
README_MAX_LINES = 260  # about 250: the first ten minutes, the photo-indexing section, and links to the rest
SEED_IMAGE = "Firefly man staring at the moon, moon is made of mechanical parts 74156.jpg"


def load_script(name: str):
    """scripts/<name>.py, loaded by path (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"clipsvc_script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SETTINGS_TABLE = load_script("settings_table")


def table_rows(table: str) -> dict[str, str]:
    """variable -> default, of a Markdown settings table."""
    rows = re.findall(r"^\| `([A-Z_]+)` \| (.+?) \|", table, flags=re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def config_table() -> dict[str, str]:
    return table_rows(SETTINGS_TABLE.document_table(CONFIGURATION))


def test_the_settings_table_is_generated_from_the_declarations():
    """Variables, defaults and meanings all come from clipsvc/settings.py, so the table cannot drift from it."""
    assert SETTINGS_TABLE.document_table(CONFIGURATION) == SETTINGS_TABLE.table(), (
        "docs/configuration.md's settings table is not the one clipsvc/settings.py declares; "
        "run `python scripts/settings_table.py --write`")
    assert set(config_table()) == {var for var, _ in ENV_VARS.values()}


def test_the_generated_table_is_the_declarations_with_links_for_docs():
    """Only the links differ from `markdown_table()`: written for the root, they lead to the same places from docs/."""
    link = re.compile(r"\]\([^)]*\)")
    assert link.sub("](x)", SETTINGS_TABLE.table()) == link.sub("](x)", markdown_table())
    assert SETTINGS_TABLE.relocated("docs/performance.md#precision") == "performance.md#precision"
    assert SETTINGS_TABLE.relocated("#api-keys") == "api.md#api-keys"
    assert SETTINGS_TABLE.relocated("SECURITY.md") == "../SECURITY.md"
    assert SETTINGS_TABLE.relocated("#logs") == "#logs"


def test_the_table_writer_replaces_a_stale_table_and_nothing_else():
    stale = CONFIGURATION.replace("| `PORT` | `8081` |", "| `PORT` | `80` |")
    assert stale != CONFIGURATION and SETTINGS_TABLE.with_table(stale) == CONFIGURATION


def test_the_readmes_short_settings_table_agrees_with_the_full_one():
    """The README lists the settings a newcomer sets first; each with its real default."""
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    short = table_rows(table)
    assert len(short) == 5 and {name: config_table()[name] for name in short} == short


@pytest.mark.parametrize("field, spec", ENV_VARS.items())
def test_documented_defaults_equal_the_code(field, spec):
    var = spec[0]
    default = config_table()[var]
    if not default.startswith("`"):  # computed or empty defaults are described in words
        assert getattr(Settings(), field) in (None, ())
        return
    assert getattr(Settings.from_env({var: default.strip("`")}), field) == getattr(Settings(), field)


def test_the_module_map_lists_every_module_and_no_other():
    """docs/architecture.md is a newcomer's map: a module added or removed without it is a defect."""
    block = ARCHITECTURE.split("## Modules", 1)[1].split("```")[1]
    tree = block.split("clipsvc/\n", 1)[1].split("tests/", 1)[0]
    listed, packages = set(), {}  # packages: indentation -> the package opened at that depth
    for line in tree.splitlines():
        depth = len(line) - len(line.lstrip())
        packages = {d: name for d, name in packages.items() if d < depth}
        prefix = "".join(packages[d] for d in sorted(packages))
        if match := re.match(r"^ +([a-z_]+)/ ", line):
            packages[depth] = match[1] + "/"
        elif names := re.match(r"^ +([a-z_]+\.py(?:, [a-z_]+\.py)*)", line):
            listed |= {prefix + name for name in names[1].split(", ")}
    modules = {p.relative_to(ROOT / "clipsvc").as_posix() for p in (ROOT / "clipsvc").rglob("*.py")}
    assert listed == {m for m in modules if not m.endswith("__init__.py")}


def test_docker_run_line_uses_the_default_port_and_model_path():
    settings = Settings()
    assert f"docker run -v /path/to/host/model:{settings.model_dir} -p {settings.port}:{settings.port}" in README


def test_ci_runs_the_readme_test_command():
    test_command = re.search(r"^python3 -m venv .+pytest$", README, flags=re.MULTILINE).group(0)
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet --disable-pip-version-check -r requirements-dev.txt" in ci
    assert test_command.split("&& ", 3)[-1] in ci  # `ruff check . && python -m pytest`


def test_serve_command_names_the_gunicorn_config():
    assert "gunicorn -c gunicorn.conf.py wsgi:app" in README
    assert subprocess.run(["git", "ls-files", "--error-unmatch", "gunicorn.conf.py", "wsgi.py"], cwd=ROOT,
                          capture_output=True).returncode == 0


def test_the_test_command_states_no_count_or_duration_that_goes_stale():
    assert not re.search(r"\b\d+ tests\b", README)
    assert "a few minutes on 2 cores" in README


def test_the_readme_says_how_to_run_the_tests_that_skip():
    """What each skipping test needs, and the one target that installs what it can and requires them all."""
    tests = README.split("## Tests", 1)[1].split("\n## ", 1)[0]
    for needed in ("npm ci", "requirements-clip-client.txt", "chromium", "Docker engine", "make test-all"):
        assert needed in tests, needed


def test_the_readme_is_what_a_newcomer_needs_and_links_the_rest():
    lines = README.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; reference material belongs in docs/"
    assert re.findall(r"^## (.+)$", README, flags=re.MULTILINE)[0] == "Quickstart", "the quickstart comes first"
    for page in ("docs/api.md", "docs/configuration.md", "docs/architecture.md", "docs/deployment.md",
                 "docs/performance.md", "docs/reliability.md", "SECURITY.md"):
        assert f"]({page}" in README, page
    troubleshooting = README.split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    for symptom in ("does not exist", "Connection in use", "model_not_ready", "413", "too_many_pixels", "-sS",
                    "stand-in", "first request"):
        assert symptom in troubleshooting, symptom


@pytest.mark.parametrize("page", PAGES)
def test_every_link_leads_somewhere(page):
    """Each relative link names a file of the repo and, with `#anchor`, a heading there (as GitHub makes anchors)."""
    text = re.sub(r"^```.*?^```", "", (ROOT / page).read_text(), flags=re.MULTILINE | re.DOTALL)
    for target in SETTINGS_TABLE.LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (ROOT / page).parent / path if path else ROOT / page
        assert file.exists(), f"{page}: {target} names no file"
        if anchor:
            assert file.suffix == ".md" and anchor in SETTINGS_TABLE.anchors(file), f"{page}: {target}: no such section"


def shell_blocks(text: str) -> list[str]:
    """The ```bash blocks, line continuations joined."""
    return [block.replace("\\\n", " ") for block in re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)]


def curl_file_fields(text: str) -> list[str]:
    """Every `-F name=@file...` / `-F name=<file...` argument in the shell blocks, as the shell passes it to curl."""
    args = [arg for block in shell_blocks(text) for arg in shlex.split(block, comments=True)]
    return [value for flag, value in zip(args, args[1:], strict=False)
            if flag in ("-F", "--form") and re.match(r"[^=]+=[@<]", value)]


def test_the_seed_example_quotes_its_file_name_for_curl():
    assert f"-F 'image-1=@\"{SEED_IMAGE}\"'" in README
    assert f"image-1=@\"{SEED_IMAGE}\"" in curl_file_fields(README)


@pytest.mark.parametrize("guide", GUIDES)
def test_curl_file_names_with_separators_are_quoted(guide):
    """curl reads `,` and `;` after `-F name=@` as separators unless the file name is in double quotes."""
    for field in curl_file_fields(GUIDES[guide]):
        path = field.split("=", 1)[1][1:]
        if path.startswith('"'):
            continue
        name, *params = path.split(";")
        assert "," not in name, field
        assert all(param.split("=")[0] in ("type", "filename", "headers", "encoder") for param in params), field


def docker_runs(text: str) -> list[list[str]]:
    return [shlex.split(line, comments=True) for block in shell_blocks(text) for line in block.splitlines()
            if line.startswith("docker run ")]


ZIP_RUNS = [(guide, args) for guide in ("README.md", "docs/deployment.md") for args in docker_runs(GUIDES[guide])
            if any(arg.endswith(".zip:ro") or arg.endswith(".zip") for arg in args)]


def test_both_guides_show_both_ways_to_mount_the_zip():
    for guide in ("README.md", "docs/deployment.md"):
        text = GUIDES[guide]
        assert "-v /path/to/clip-vit-large-patch14.zip:/model/clip-vit-large-patch14.zip:ro" in text, guide
        assert "-v /path/to/clip-vit-large-patch14.zip:/clip.zip:ro -e CLIP_MODEL_DIR=/clip.zip" in text, guide
    assert len(ZIP_RUNS) == 4


@pytest.mark.parametrize("guide, args", ZIP_RUNS, ids=[f"{guide}-{i}" for i, (guide, _) in enumerate(ZIP_RUNS)])
def test_documented_zip_mounts_work(model_dir, tmp_path, guide, args):
    """Play the docker run line on a stand-in root: no file onto the image's /model directory, and
    CLIP_MODEL_DIR (or its default) then finds the model."""
    root = tmp_path / "root"
    (root / "model").mkdir(parents=True)  # the image's VOLUME /model
    env = {}
    for flag, value in zip(args, args[1:], strict=False):
        if flag == "-e":
            env.update([value.split("=", 1)])
        if flag == "-v" and ".zip:" in value:
            target = root / PurePosixPath(value.split(":")[1]).relative_to("/")
            assert not target.is_dir(), f"docker cannot mount a file onto the directory {value.split(':')[1]}"
            target.parent.mkdir(parents=True, exist_ok=True)
            zip_model(model_dir, target)
    model = root / PurePosixPath(env.get("CLIP_MODEL_DIR", str(Settings().model_dir))).relative_to("/")
    assert (resolve_model_dir(model, tmp_path / "cache") / "config.json").is_file()


MOUNT_TEXTS = ["README.md", "docs/api.md", "docs/configuration.md", "docs/deployment.md", "docker-compose.yml",
               "Dockerfile", "Dockerfile.gpu",
               *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "deploy").rglob("*.yaml"))]


@pytest.mark.parametrize("path", MOUNT_TEXTS)
def test_no_zip_is_mounted_onto_the_model_directory(path):
    assert not re.search(r"\.zip:/model(?::ro)?(?![\w/.-])", (ROOT / path).read_text())


def test_the_accepted_image_formats_are_the_decoders():
    """docs/api.md's list is the parser's table (clipsvc.parsing.images.FORMATS), in the same order."""
    sentence = API.split("Accepted formats:", 1)[1].split("(Radiance", 1)[0]
    named = [name.strip() for name in re.split(r",|\band\b", re.sub(r"\([^)]*\)", "", sentence)) if name.strip()]
    assert named == list(FORMATS)


def test_the_error_table_agrees_with_the_code_table():
    """docs/api.md lists the common errors; each one it names has the status clipsvc.errors.Code gives it."""
    table = API.split("### Errors", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d{3}) \| (.+?) \|", table, flags=re.MULTILINE)
    named = {code: int(status) for status, codes in rows for code in re.findall(r"`([a-z_]+)`", codes)}
    assert len(named) >= 20
    statuses = {code.id: code.status for code in Code}
    assert {code: statuses.get(code) for code in named} == named


# --- The log lines docs/configuration.md shows, against the real ones ---------------------------------------------

def shown_log_lines() -> dict[str, dict]:
    """The ```json blocks of the Logs section, by their `event` (the request line by its message)."""
    section = CONFIGURATION.split("\n## Logs\n", 1)[1]
    shown = {}
    for block, _ in blocks(ROOT / "docs" / "configuration.md"):
        if block.language == "json" and block.heading == "## Logs" and block.code.strip() in section:
            record = json.loads(block.code)
            shown[record.get("event") or record["message"]] = record
    return shown


def test_the_shown_log_lines_have_the_real_ones_keys(served):
    """Each line shown (`model_loaded`, `ready`, a request) has exactly the keys, in order, and the types of the line
    the served gunicorn wrote."""
    shown = shown_log_lines()
    assert set(shown) == {"model_loaded", "ready", "request"}
    requests.post(f"{served.url}/syte_test/clip", headers={"request_id": "logged-1"}, timeout=60,
                  files={"image-1": ("a.png", image_bytes("PNG"))}, data={"text-1": "a dog"}).raise_for_status()
    records = served.log_records()
    real = {
        "model_loaded": next(r for r in records if r.get("event") == "model_loaded"),
        "ready": next(r for r in records if r.get("event") == "ready"),
        "request": next(r for r in records if r.get("request_id") == "logged-1"),
    }
    for name, record in shown.items():
        same_shape(record, real[name], name)
