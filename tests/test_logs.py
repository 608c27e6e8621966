import json
import logging

from conftest import post_clip

from clipsvc.server.logs import JsonFormatter, logging_config


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
