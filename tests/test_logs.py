import json
import logging
import os

import pytest
from conftest import post_clip

from clipsvc.server.logs import JsonFormatter, logging_config, refuse_configuration
from clipsvc.settings import Settings, SettingsError


def record(**extra) -> logging.LogRecord:
    rec = logging.LogRecord("clipsvc.test", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    rec.__dict__.update(extra)
    return rec


def test_formatter_writes_one_json_object_with_extras():
    line = JsonFormatter().format(record(request_id="7", images=2))
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["message"] == "hello world" and entry["level"] == "info" and entry["logger"] == "clipsvc.test"
    assert entry["request_id"] == "7" and entry["images"] == 2 and "pid" in entry and "ts" in entry


def test_exceptions_stay_on_one_line():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record()
        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    assert "\n" not in line and "boom" in json.loads(line)["exception"]


def test_config_routes_gunicorn_and_transformers_through_json():
    config = logging_config("debug")
    assert config["root"]["level"] == "DEBUG"
    for name in ("gunicorn.error", "transformers"):
        assert config["loggers"][name]["handlers"] == ["json"]


def test_request_lines_carry_id_and_counters(client, caplog):
    caplog.set_level(logging.INFO, logger="clipsvc.request")
    post_clip(client, {"text-1": "a", "text-2": "b"}, {"request_id": "42"})
    post_clip(client, {"bad": "x"})
    first, second = [r for r in caplog.records if r.name == "clipsvc.request"]
    assert (first.request_id, first.status, first.texts, first.images) == ("42", 200, 2, 0)
    assert first.counters == {"requests": 1, "images": 0, "texts": 2, "errors": 0}
    assert second.status == 400 and second.counters == {"requests": 2, "images": 0, "texts": 2, "errors": 1}


# (what the client sends, the status and the error_code its log line carries; None: a success, without the field)
ANSWERS = [
    (lambda client: post_clip(client, {"text-1": "a"}), 200, None),
    (lambda client: post_clip(client, {"bad": "x"}), 400, "unknown_key"),
    (lambda client: post_clip(client, {"text-1": ""}), 400, "empty_text"),
    (lambda client: client.post("/encode", data="not json", content_type="application/json"), 400, "invalid_json"),
    (lambda client: client.get("/nope"), 404, "not_found"),
    (lambda client: client.get("/syte_test/clip"), 405, "method_not_allowed"),
    (lambda client: client.post("/v1/embeddings", json={"input": "a", "dimensions": 7}), 400, "invalid_dimensions"),
]


@pytest.mark.parametrize("send, status, code", ANSWERS)
def test_an_error_line_names_the_error_code_and_every_line_the_client(client, caplog, send, status, code):
    """Why a client failed, and which client: the code of the JSON error it got (OpenAI's shape too)."""
    caplog.set_level(logging.INFO, logger="clipsvc.request")
    response = send(client)
    assert response.status_code == status
    (line,) = [record for record in caplog.records if record.name == "clipsvc.request"]
    assert line.status == status and line.client == "127.0.0.1"
    if code is None:
        assert not hasattr(line, "error_code")
    else:
        assert line.error_code == code == (response.json["error"].get("code") or response.json["error"]["type"])


@pytest.mark.parametrize("env, variable, value", [
    ({"CLIP_MAX_ITEMS": "0"}, "CLIP_MAX_ITEMS", "0"),
    ({"WEB_CONCURRENCY": "abc"}, "WEB_CONCURRENCY", "abc"),
    ({"CLIP_API_KEYS": "short"}, "CLIP_API_KEYS", None),  # a secret: never shown
])
def test_a_refusal_is_one_json_line_with_the_settings_fields_and_exit_status_78(capfd, env, variable, value):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    with pytest.raises(SystemExit) as stopped:
        refuse_configuration(caught.value)
    assert stopped.value.code == os.EX_CONFIG == 78
    out, err = capfd.readouterr()
    (line,) = err.splitlines()
    entry = json.loads(line)
    assert out == "" and entry["level"] == "error" and entry["event"] == "bad_configuration"
    assert {"ts", "logger", "message", "pid", "problem", "accepted"} <= set(entry) and entry["variable"] == variable
    assert entry.get("value") == value
    if value is None:
        assert "short" not in line
