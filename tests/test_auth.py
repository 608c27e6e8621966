"""Optional API keys (CLIP_API_KEYS, CLIP_API_KEYS_FILE; clipsvc.web.auth): a table of requests against an app with
keys, the routes that stay open, the 401's shapes, constant-time comparison, and a real gunicorn with keys that the
openai SDK and docs/api.md's curl line reach, whose log never holds a key."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import openai
import pytest
import requests

from clipsvc.settings import Settings
from clipsvc.web import auth
from clipsvc.web.app import create_app
from testkit.server import command, environment, free_port, gunicorn

ROOT = Path(__file__).resolve().parent.parent
KEY, SECOND_KEY, FILE_KEY = "k3y-0123456789abcdef", "second.key_ABCDEFGHIJ", "from-the-file-9876543210"
WRONG = "not-a-key-0123456789"
TEXTS = [{"text": "a dog"}]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "api-keys"
    path.write_text(f"# clipsvc's keys, one a line\n\n  {FILE_KEY}  \n")
    return path


@pytest.fixture
def keyed(settings: Settings, encoder, key_file: Path):
    """An app with two keys from CLIP_API_KEYS and one from CLIP_API_KEYS_FILE."""
    env = {"CLIP_API_KEYS": f" {KEY} ,{SECOND_KEY},", "CLIP_API_KEYS_FILE": str(key_file)}
    keys = Settings.from_env(env)
    custom = Settings(**{**vars(settings), "api_keys": keys.api_keys, "api_keys_from_file": keys.api_keys_from_file})
    return create_app(custom, encoder).test_client()


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("headers, status, invalid", [
    ({}, 401, False),                                                   # no header
    ({"Authorization": ""}, 401, False),
    ({"Authorization": "Bearer"}, 401, False),                          # a scheme, no key
    ({"Authorization": "Bearer   "}, 401, False),
    ({"Authorization": f"Basic {KEY}"}, 401, False),                    # another scheme
    ({"Authorization": KEY}, 401, False),                               # the key alone, no scheme
    ({"X-API-Key": KEY}, 401, False),                                   # another header
    (bearer(WRONG), 401, True),                                         # a wrong key
    (bearer(KEY[:-1]), 401, True),                                      # a prefix of a key
    (bearer(KEY + "x"), 401, True),
    (bearer(KEY.upper()), 401, True),                                   # keys are case-sensitive
    (bearer(f"{KEY},{SECOND_KEY}"), 401, True),                         # the whole list is not a key
    (bearer(KEY), 200, None),                                           # the first key
    (bearer(SECOND_KEY), 200, None),                                    # the second
    (bearer(FILE_KEY), 200, None),                                      # the file's
    ({"Authorization": f"bearer {KEY}"}, 200, None),                    # the scheme is case-insensitive (RFC 7235)
    ({"Authorization": f"  Bearer   {KEY}  "}, 200, None),
])
def test_the_key_table(keyed, headers, status, invalid):
    response = keyed.post("/encode", json=TEXTS, headers=headers)
    assert response.status_code == status, response.json
    if status == 401:
        challenge = 'Bearer realm="clipsvc"' + (', error="invalid_token"' if invalid else "")
        assert response.headers["WWW-Authenticate"] == challenge
        assert response.json["error"]["code"] == "unauthorized"
        assert KEY not in response.get_data(as_text=True) and WRONG not in response.get_data(as_text=True)


@pytest.mark.parametrize("method, path, body", [
    ("post", "/syte_test/clip", {"data": {"text-1": "a dog"}}),
    ("post", "/encode", {"json": TEXTS}),
    ("post", "/rank", {"json": {"queries": TEXTS, "candidates": TEXTS}}),
    ("post", "/v1/embeddings", {"json": {"input": "a dog"}}),
    ("get", "/v1/models", {}),
    ("get", "/v1/models/clip-tiny", {}),
    ("get", "/meta", {}),
])
def test_every_model_endpoint_needs_a_key(keyed, method, path, body):
    assert getattr(keyed, method)(path, **body).status_code == 401
    assert getattr(keyed, method)(path, headers=bearer(KEY), **body).status_code == 200


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics", "/openapi.json", "/docs",
                                  "/docs/assets/swagger-ui.css", "/", "/demo/demo.js"])
def test_probes_metrics_and_pages_stay_open(keyed, path):
    assert keyed.get(path).status_code == 200


@pytest.mark.parametrize("method, path, status", [("get", "/nowhere", 404), ("get", "/syte_test/clip", 405),
                                                  ("options", "/encode", 200)])
def test_routing_errors_and_preflights_are_answered_without_a_key(keyed, method, path, status):
    assert getattr(keyed, method)(path).status_code == status


def test_every_open_rule_is_a_route(app):
    assert auth.OPEN_RULES <= {rule.rule for rule in app.url_map.iter_rules()}


def test_the_401_is_the_services_error_with_the_request_id(keyed):
    response = keyed.post("/encode", json=TEXTS, headers={"request_id": "abc-1"})
    assert response.mimetype == "application/json"
    assert response.headers["request_id"] == response.headers["X-Request-ID"] == "abc-1"
    assert response.json == {"error": {"status": 401, "code": "unauthorized", "field": None, "message":
                                       "This server needs an API key: send it as the header "
                                       "`Authorization: Bearer <key>`."}}
    wrong = keyed.post("/encode", json=TEXTS, headers=bearer(WRONG)).json["error"]
    assert wrong["message"] == "The API key sent is not one this server accepts."


def test_under_v1_the_401_is_in_openais_shape(keyed):
    response = keyed.post("/v1/embeddings", json={"input": "a dog"}, headers=bearer(WRONG))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert response.json == {"error": {"message": "The API key sent is not one this server accepts.",
                                       "type": "invalid_request_error", "param": None, "code": "unauthorized"}}


def test_without_keys_nothing_needs_one(client):
    assert client.post("/encode", json=TEXTS).status_code == 200
    assert client.post("/encode", json=TEXTS, headers=bearer(WRONG)).status_code == 200


def test_every_key_is_compared_even_after_a_match(monkeypatch):
    keys = auth.ApiKeys(Settings(api_keys=(KEY, SECOND_KEY), api_keys_from_file=(FILE_KEY,)))
    calls = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(auth.hmac, "compare_digest", lambda a, b: calls.append(len(a)) or real(a, b))
    for key, accepted in [(KEY, True), (FILE_KEY, True), (WRONG, False), ("x", False), ("y" * 600, False)]:
        calls.clear()
        assert keys.accepts(key) is accepted
        assert calls == [32, 32, 32]  # every key, and sha256 digests: the same length whatever was sent


def test_keys_are_held_as_digests_only():
    keys = auth.ApiKeys(Settings(api_keys=(KEY,)))
    assert KEY not in repr(vars(keys)) and KEY.encode() not in b"".join(vars(keys)["_digests"])


# --- A real gunicorn with keys --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One worker at debug level (the most the server logs), keys from the variable and from a file."""
    folder = tmp_path_factory.mktemp("keyed")
    (folder / "keys").write_text(f"{FILE_KEY}\n")
    with gunicorn(model_dir, folder / "server.log", WEB_CONCURRENCY="1", CLIP_LOG_LEVEL="debug",
                  CLIP_API_KEYS=f"{KEY},{SECOND_KEY}", CLIP_API_KEYS_FILE=str(folder / "keys")) as server:
        yield server


@pytest.mark.parametrize("key", [KEY, FILE_KEY])
def test_the_openai_sdk_sends_its_api_key(keyed_server, key):
    sdk = openai.OpenAI(base_url=f"{keyed_server.url}/v1", api_key=key, max_retries=0, timeout=60)
    result = sdk.embeddings.create(input=["a dog", "a cat"], model=sdk.models.list().data[0].id)
    assert [item.index for item in result.data] == [0, 1]


def test_the_openai_sdk_with_a_wrong_key_gets_an_authentication_error(keyed_server):
    sdk = openai.OpenAI(base_url=f"{keyed_server.url}/v1", api_key=WRONG, max_retries=0, timeout=60)
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk.embeddings.create(input="a dog", model="clip-tiny")
    assert caught.value.status_code == 401 and caught.value.code == "unauthorized"


def test_the_guides_curl_line_works_verbatim(keyed_server):
    (line,) = [line for line in (ROOT / "docs" / "api.md").read_text().splitlines()
               if line.startswith("curl ") and '"Authorization: Bearer $KEY"' in line]
    line = line.replace("http://127.0.0.1:8081", keyed_server.url)
    for key, vectors in [(KEY, True), (WRONG, False)]:
        out = subprocess.run(["bash", "-c", line], env={"KEY": key, "PATH": "/usr/bin:/bin"}, capture_output=True,
                             text=True, timeout=60, check=True).stdout
        assert out.startswith("[[") is vectors and ('"unauthorized"' in out) is not vectors, out[:200]


def test_no_key_is_ever_logged(keyed_server):
    """After the requests above (right, wrong and file keys), none of them is anywhere in the server's log."""
    for key in (KEY, SECOND_KEY, FILE_KEY, WRONG):
        requests.post(f"{keyed_server.url}/encode", json=TEXTS, headers=bearer(key), timeout=60)
    text = keyed_server.log_path.read_text()
    assert '"status": 401' in text and '"status": 200' in text  # the requests were logged
    for key in (KEY, SECOND_KEY, FILE_KEY, WRONG):
        assert key not in text


@pytest.mark.parametrize("env, message", [
    ({"CLIP_API_KEYS": "short"}, "CLIP_API_KEYS is out of range"),
    ({"CLIP_API_KEYS": f"{KEY},too short"}, "CLIP_API_KEYS is out of range"),
    ({"CLIP_API_KEYS": " , ,"}, "CLIP_API_KEYS is invalid: it holds no key"),
    ({"CLIP_API_KEYS_FILE": "/nonexistent/keys"}, "CLIP_API_KEYS_FILE is invalid: cannot read it: No such file"),
])
def test_a_bad_key_stops_start_up_without_showing_it(model_dir, tmp_path, env, message):
    """The gunicorn master exits at once, naming the variable, never the value."""
    result = subprocess.run(command(free_port()), cwd=ROOT, env=environment(model_dir, free_port(), env),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr
    assert "short" not in result.stderr and KEY not in result.stderr


def test_keys_never_show_in_the_settings_repr(key_file):
    settings = Settings.from_env({"CLIP_API_KEYS": KEY, "CLIP_API_KEYS_FILE": str(key_file)})
    assert (settings.api_keys, settings.api_keys_from_file) == ((KEY,), (FILE_KEY,))
    assert KEY not in repr(settings) and FILE_KEY not in repr(settings) and not re.search("api_keys", repr(settings))
