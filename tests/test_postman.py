"""The Postman collection, run by Postman's own runner: newman (pinned in package.json and package-lock.json,
installed by `npm ci`) sends every request to the session's real gunicorn and runs every test script, the
collection variables they set included; one failing Postman assertion fails here, named with its message.

The command is docs/api.md's, verbatim but for the server's URL and the folder of images; the images the
multipart requests name are made here. Needs node and node_modules/.bin/newman (`npm ci`, which `.ci/run`
runs): without them the newman tests skip, unless CLIPSVC_REQUIRE_NEWMAN=1 (set by CI) makes that a failure.
The checks newman cannot make (the collection's format, its routes, its saved examples against the real
responses) are below it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, image_bytes

from testkit.dockerignore import dockerignored

COLLECTION_PATH = ROOT / "examples" / "clipsvc.postman_collection.json"
COLLECTION = json.loads(COLLECTION_PATH.read_text())
ITEMS = COLLECTION["item"]
NEWMAN = ROOT / "node_modules" / ".bin" / "newman"
# In docs/api.md's command, what a test replaces: the default server and the folder of the user's images.
README_URL, README_IMAGES = "http://127.0.0.1:8081", "path/to/images"
RUN_TIMEOUT_S = 120
PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def readme_command() -> list[str]:
    """docs/api.md's newman command line, as the shell splits it."""
    readme = (ROOT / "docs" / "api.md").read_text().replace("\\\n", " ")
    lines = [line for block in re.findall(r"^```bash\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
             for line in block.splitlines() if line.startswith("node_modules/.bin/newman run ")]
    assert len(lines) == 1, "docs/api.md shows one newman command"
    return shlex.split(lines[0], comments=True)


def image_files(folder: Path) -> list[str]:
    """Write each file the requests name (`src`: multipart parts, raw file bodies) into `folder`: real image
    bytes, PNG for a .png name and JPEG otherwise; return the names."""
    bodies = [item["request"].get("body", {}) for item in ITEMS]
    names = sorted({part["src"] for body in bodies for part in body.get("formdata", []) if part["type"] == "file"}
                   | {body["file"]["src"] for body in bodies if body.get("mode") == "file"})
    for name in names:
        (folder / name).write_bytes(image_bytes("PNG" if name.lower().endswith(".png") else "JPEG"))
    return names


def run_newman(collection: Path, url: str, images: Path, report: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """docs/api.md's command with `url` and `images` (and `collection`) in place of its own, plus a JSON report;
    the process (its output) and the parsed report."""
    args = readme_command()
    assert f"baseUrl={README_URL}" in args and README_IMAGES in args and str(COLLECTION_PATH.relative_to(ROOT)) in args
    replace = {f"baseUrl={README_URL}": f"baseUrl={url}", README_IMAGES: str(images),
               str(COLLECTION_PATH.relative_to(ROOT)): str(collection)}
    args = [replace.get(arg, arg) for arg in args]
    args += ["--reporters", "cli,json", "--reporter-json-export", str(report), "--color", "off",
             "--timeout-request", "60000"]
    env = {k: v for k, v in os.environ.items() if k.lower() not in PROXY_VARS}  # loopback, straight
    process = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert report.is_file(), f"newman wrote no report (exit {process.returncode}):\n{process.stdout}{process.stderr}"
    return process, json.loads(report.read_text())


def failed_assertions(report: dict) -> list[str]:
    """Every failure of the run (a failed pm.test, a script error, a request that got no response), as
    'request: test: message'."""
    return [f"{failure['source'].get('name', '?')}: {failure['error'].get('test', failure['at'])}: "
            f"{failure['error']['message']}" for failure in report["run"]["failures"]]


@pytest.fixture(scope="session")
def newman() -> Path:
    """Checked before the shared server starts (session-scoped, so pytest sets it up first), so a machine without
    node or newman skips at no cost."""
    reason = ("node missing (apt-get install nodejs npm, then `npm ci` in the repo root)" if not shutil.which("node")
              else f"{NEWMAN} missing (`npm ci` in the repo root installs it)" if not NEWMAN.exists() else None)
    if reason:
        if os.environ.get("CLIPSVC_REQUIRE_NEWMAN") == "1":
            pytest.fail(f"{reason}, and CLIPSVC_REQUIRE_NEWMAN=1 requires the newman run")
        pytest.skip(reason)
    return NEWMAN


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("postman-images")
    assert image_files(folder)
    return folder


@pytest.fixture(scope="module")
def newman_run(newman, served, images, tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict]:
    """The whole collection, once, against the session's gunicorn."""
    return run_newman(COLLECTION_PATH, served.url, images, tmp_path_factory.mktemp("newman") / "report.json")


def test_newman_runs_every_request_and_every_postman_test_passes(newman_run):
    process, report = newman_run
    output = process.stdout + process.stderr
    assert not failed_assertions(report), "\n".join(failed_assertions(report)) + "\n\n" + output[-6000:]
    assert "load error" not in output, output  # a file part newman could not read (sent empty)
    assert report["run"]["error"] is None, report["run"]["error"]
    assert process.returncode == 0, output[-6000:]
    executions = report["run"]["executions"]
    assert [e["item"]["name"] for e in executions] == [item["name"] for item in ITEMS]
    assert report["run"]["stats"]["requests"] == {"total": len(ITEMS), "pending": 0, "failed": 0}
    for execution in executions:  # each request ran its test script, and each of its pm.test ran
        assertions = execution["assertions"]
        assert assertions and not any(a["skipped"] for a in assertions), execution["item"]["name"]


def test_the_openai_model_goes_from_the_model_list_into_the_embeddings_request(newman_run):
    """The list-models script stores the id in {{model}}, which the embeddings request then sends."""
    _, report = newman_run
    by_name = {e["item"]["name"]: e for e in report["run"]["executions"]}
    listed = json.loads(bytes(by_name["OpenAI: list models"]["response"]["stream"]["data"]))
    sent = json.loads(by_name["OpenAI: embeddings (a text and an image)"]["request"]["body"]["raw"])
    assert sent["model"] == listed["data"][0]["id"] == "clip-tiny"


def test_a_failing_postman_test_fails_the_run(newman, served, images, tmp_path):
    """A pm.test that cannot pass (one status changed) is reported, by request, test and message."""
    collection = json.loads(COLLECTION_PATH.read_text())
    readiness = next(item for item in collection["item"] if item["name"] == "Readiness")
    script = readiness["event"][0]["script"]["exec"]
    script[0] = script[0].replace("have.status(200)", "have.status(201)")
    (tmp_path / "broken.json").write_text(json.dumps(collection))
    process, report = run_newman(tmp_path / "broken.json", served.url, images, tmp_path / "report.json")
    assert process.returncode != 0
    assert failed_assertions(report) == ["Readiness: status is 200: expected response to have status code 201 "
                                         "but got 200"]


def test_it_is_a_v21_collection_with_a_base_url():
    assert COLLECTION["info"]["schema"].endswith("/v2.1.0/collection.json")
    assert {"key": "baseUrl", "value": README_URL} in COLLECTION["variable"]
    assert {item["name"].split(" ")[0] for item in ITEMS} >= {"Seed", "Image", "Text", "Texts", "Several", "Rank",
                                                             "Encode", "OpenAI:", "Model", "Readiness", "Metrics",
                                                             "OpenAPI"}
    assert {item["request"].get("body", {}).get("mode") for item in ITEMS} >= {"formdata", "urlencoded", "raw"}


@pytest.mark.parametrize("item", ITEMS, ids=[item["name"] for item in ITEMS])
def test_each_request_targets_a_route_of_the_app(app, item):
    """Checked without node: a request to a path the app does not serve would otherwise only show as a 404."""
    request = item["request"]
    path = request["url"]["raw"].replace("{{baseUrl}}", "").partition("?")[0]
    assert any(rule.rule == path and request["method"] in rule.methods for rule in app.url_map.iter_rules())
    assert request["url"]["host"] == ["{{baseUrl}}"] and "/".join(request["url"]["path"]) == path.lstrip("/")


def test_the_saved_examples_have_the_shape_of_the_real_responses(newman_run):
    """What Postman shows before a request is sent: each saved example's type, keys and Content-Type are those
    of the real response newman got (and a request_id sent is echoed)."""
    _, report = newman_run
    for item, execution in zip(ITEMS, report["run"]["executions"], strict=True):
        name, response = item["name"], execution["response"]
        headers = {h["key"].lower(): h["value"] for h in response["header"]}
        body = bytes(response["stream"]["data"]).decode()
        example = item["response"][0]
        assert example["code"] == response["code"], name
        saved_type = {h["key"].lower(): h["value"] for h in example["header"]}["content-type"]
        assert headers["content-type"].partition(";")[0] == saved_type.partition(";")[0], name
        assert headers["request_id"], name
        sent_id = {h["key"]: h["value"] for h in item["request"]["header"]}.get("request_id")
        assert headers["request_id"] == (sent_id or headers["request_id"]), name
        if not saved_type.startswith("application/json"):
            assert example["body"].partition("\n")[0] in body, name
            continue
        saved, real = json.loads(example["body"]), json.loads(body)
        assert type(saved) is type(real), name
        if isinstance(saved, dict):
            assert set(saved) <= set(real), name
        if isinstance(saved, list) and isinstance(saved[0], str):  # base64 vectors: one string per item
            assert [type(v) for v in real] == [str] * len(saved), name


def test_newman_is_pinned_exactly_and_locked():
    package = json.loads((ROOT / "package.json").read_text())
    pinned = package["devDependencies"]["newman"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"newman {pinned!r}: an exact version, not a range"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"][""]["devDependencies"] == package["devDependencies"]
    assert lock["packages"]["node_modules/newman"]["version"] == pinned
    assert all(entry.get("integrity") for path, entry in lock["packages"].items() if path), "every package hashed"


def test_ci_installs_newman_from_the_lock_and_requires_its_run():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = ci.index("ruff check . && python -m pytest")
    assert -1 < ci.find("\nnpm ci ") < test_command
    assert -1 < ci.find("\nexport CLIPSVC_REQUIRE_NEWMAN=1\n") < test_command
    assert dockerignored("node_modules/newman/package.json")
    assert subprocess.run(["git", "check-ignore", "-q", "node_modules/newman"], cwd=ROOT).returncode == 0
