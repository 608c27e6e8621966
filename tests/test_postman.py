"""The Postman collection: every request targets a real route with a body the service accepts."""

import io
import json
import re
from pathlib import Path

import pytest
from conftest import image_bytes

COLLECTION = json.loads((Path(__file__).resolve().parent.parent / "examples" /
                         "clipsvc.postman_collection.json").read_text())
ITEMS = COLLECTION["item"]


def expected_keys(item: dict) -> list[str]:
    script = "\n".join(line for event in item["event"] for line in event["script"]["exec"])
    return re.findall(r'to\.have\.property\("([^"]+)"\)', script)


def test_it_is_a_v21_collection_with_a_base_url():
    assert COLLECTION["info"]["schema"].endswith("/v2.1.0/collection.json")
    assert {"key": "baseUrl", "value": "http://127.0.0.1:8081"} in COLLECTION["variable"]
    assert {item["name"].split(" ")[0] for item in ITEMS} >= {"Seed", "Image", "Text", "Texts", "Several", "Rank",
                                                             "Encode", "Model", "Readiness", "Metrics", "OpenAPI"}
    assert {item["request"].get("body", {}).get("mode") for item in ITEMS} >= {"formdata", "urlencoded", "raw"}


def send(client, request: dict):
    path = request["url"]["raw"].replace("{{baseUrl}}", "")
    headers = {h["key"]: h["value"] for h in request["header"]}
    if request["method"] == "GET":
        return client.get(path, headers=headers)
    body = request["body"]
    if body["mode"] == "formdata":
        data = {f["key"]: (io.BytesIO(image_bytes()), f["src"]) if f["type"] == "file" else f["value"]
                for f in body["formdata"]}
        return client.post(path, data=data, headers=headers, content_type="multipart/form-data")
    if body["mode"] == "urlencoded":  # texts only; Postman sets the Content-Type itself, as the test client does
        assert all(f["key"].startswith("text-") for f in body["urlencoded"])
        return client.post(path, data={f["key"]: f["value"] for f in body["urlencoded"]}, headers=headers)
    return client.post(path, data=body["raw"], headers=headers)


@pytest.mark.parametrize("item", ITEMS, ids=[item["name"] for item in ITEMS])
def test_each_request_is_accepted_and_its_tests_would_pass(app, client, item):
    request = item["request"]
    path = request["url"]["raw"].replace("{{baseUrl}}", "").partition("?")[0]
    assert any(rule.rule == path and request["method"] in rule.methods for rule in app.url_map.iter_rules())
    response = send(client, request)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    assert response.headers["request_id"]
    sent_id = {h["key"]: h["value"] for h in request["header"]}.get("request_id")
    if sent_id:
        assert response.headers["request_id"] == sent_id
    example = item["response"][0]
    assert response.mimetype == example["header"][0]["value"].partition(";")[0]
    if not response.is_json:
        assert example["body"].partition("\n")[0] in response.get_data(as_text=True)
        return
    for key in expected_keys(item):
        assert key in response.json
    example = json.loads(example["body"])
    assert type(example) is type(response.json)
    if isinstance(example, dict):
        assert set(example) <= set(response.json)
    if isinstance(example, list) and isinstance(example[0], str):  # base64 vectors: one string per item
        assert [type(v) for v in response.json] == [str] * len(example)
