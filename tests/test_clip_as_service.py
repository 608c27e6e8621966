"""clip-as-service over HTTP: POST /post and its envelope on /encode and /rank, beside BentoML's bodies there.

The wire format is jina's HTTP gateway's (its request model and response model, docarray's document JSON) as
`clip_client` 0.8.3 sends and reads it; the real client runs in its own environment (requirements-clip-client.txt,
made by .ci/run as .venv-clip-client, or the Python CLIP_CLIENT_PYTHON names).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import image_bytes

from clipsvc.settings import Settings
from clipsvc.web.app import create_app
from testkit.readme import ADDRESS, API, code_blocks, run_bash
from testkit.responses import assert_error

PNG = image_bytes("PNG", (32, 24))
BLOB = base64.b64encode(PNG).decode()
URI = f"data:image/png;base64,{BLOB}"
# The seed's own data URI (a 16x16 GIF), verbatim.
SEED_GIF = ("data:image/gif;base64,R0lGODlhEAAQAMQAAORHHOVSKudfOulrSOp3WOyDZu6QdvCchPGolfO0o/XBs/fNwfjZ0frl3/zy7"
            "////wAAAA"
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACH5BAkAABAALAAAAAAQABAAAAVVICSOZGlCQAosJ6mu7fiyZe"
            "KqNKToQGDsM8hBADgUXoGAiqhSvp5QAnQKGIgUhwFUYLCVDFCrKUE1lBavAViFIDlTImbKC5Gm2hB0SlBCBMQiB0UjIQA7")
PLACES = ("control room", "lecture room", "conference room", "podium indoor", "television studio")


def encode(client, items: list[dict]) -> np.ndarray:
    return np.array(client.post("/encode", json=items).json)


def envelope(endpoint: str, data: list[dict], **parameters) -> dict:
    """What clip_client's jina HTTP client posts: DataRequest.to_dict() plus exec_endpoint at the top."""
    return {"header": {"request_id": "c0ffee", "exec_endpoint": endpoint}, "parameters": parameters,
            "data": data, "exec_endpoint": endpoint}


@pytest.mark.parametrize("path, endpoint", [("/post", "/"), ("/post", "/encode"), ("/encode", "/encode")])
def test_documents_get_the_embeddings_of_encode(client, path, endpoint):
    docs = [{"id": "t", "text": "First do it"}, {"id": "u", "uri": URI}, {"id": "b", "blob": BLOB, "uri": "a.png"}]
    body = client.post(path, json=envelope(endpoint, docs)).json
    assert set(body) == {"header", "parameters", "routes", "data"}
    assert body["header"]["execEndpoint"] == endpoint and body["header"]["requestId"]
    assert [d["id"] for d in body["data"]] == ["t", "u", "b"]
    expected = encode(client, [{"text": "First do it"}, {"img_blob": BLOB}, {"img_blob": BLOB}])
    np.testing.assert_allclose([d["embedding"] for d in body["data"]], expected, atol=1e-5)
    assert body["data"][0]["text"] == "First do it" and body["data"][1]["uri"] == URI


def test_the_issues_post_shape_with_exec_endpoint_in_camel_case_and_ids_given(client):
    body = client.post("/post", json={"data": [{"text": "a"}, {"text": "b"}], "execEndpoint": "/encode"}).json
    assert len({d["id"] for d in body["data"]}) == 2 and all(len(d["embedding"]) > 0 for d in body["data"])
    assert client.post("/post", json={"data": {"docs": [{"text": "a"}]}}).status_code == 200  # jina accepts both


@pytest.mark.parametrize("path", ["/post", "/rank"])
def test_rank_sorts_matches_by_softmax_and_gives_cosines(client, encoder, path):
    matches = [{"id": p, "text": f"a photo of a {p}"} for p in PLACES]
    body = client.post(path, json=envelope("/rank", [{"id": "q", "blob": BLOB, "matches": matches}],
                                           drop_image_content=True)).json
    (doc,) = body["data"]
    assert doc["id"] == "q" and doc["blob"] is None and len(doc["embedding"]) == encoder.facts.embedding_dim
    bento = client.post("/rank", json={"queries": [{"img_blob": BLOB}],
                                       "candidates": [{"text": m["text"]} for m in matches]}).json
    by_id = {m["id"]: m["scores"] for m in doc["matches"]}
    np.testing.assert_allclose([by_id[p]["clip_score"]["value"] for p in PLACES], bento["probabilities"][0], rtol=1e-5)
    np.testing.assert_allclose([by_id[p]["clip_score_cosine"]["value"] for p in PLACES],
                               bento["cosine_similarities"][0], atol=1e-5)
    values = [m["scores"]["clip_score"]["value"] for m in doc["matches"]]
    assert values == sorted(values, reverse=True)


def test_bentomls_bodies_still_work_on_the_same_paths(client):
    assert len(client.post("/encode", json=[{"text": "a"}]).json) == 1
    ranked = client.post("/rank", json={"queries": [{"text": "a"}], "candidates": [{"text": "b"}]}).json
    assert set(ranked) == {"probabilities", "cosine_similarities"}


@pytest.mark.parametrize("path, body, code, field", [
    ("/post", {"data": []}, "invalid_documents", "data"),
    ("/post", {"data": [{"text": "a"}], "exec_endpoint": "/search"}, "invalid_documents", "exec_endpoint"),
    ("/post", {"data": [{"text": "a"}], "parameters": [1]}, "invalid_documents", "parameters"),
    ("/post", [{"text": "a"}], "invalid_documents", None),
    ("/post", {"data": [{"tags": {}}]}, "invalid_document", "data[0]"),
    ("/post", {"data": [{"id": 7, "text": "a"}]}, "invalid_document", "data[0].id"),
    ("/rank", envelope("/rank", [{"text": "a"}]), "invalid_document", "data[0].matches"),
    ("/encode", envelope("/encode", [{"blob": "not base64!"}]), "invalid_base64", "data[0].blob"),
    ("/post", {"data": [{"uri": "apple.png"}]}, "invalid_uri", "data[0].uri"),
    ("/post", {"data": [{"uri": "https://example.com/a.png"}]}, "url_fetch_disabled", "data[0].uri"),
])
def test_bad_envelopes_get_our_error_shape(client, path, body, code, field):
    assert_error(client.post(path, json=body), 400, code, field)


def test_documents_and_matches_count_together_against_the_item_limit(settings, encoder):
    client = create_app(Settings(**{**vars(settings), "max_items": 3}), encoder).test_client()
    docs = [{"text": "q", "matches": [{"text": "a"}, {"text": "b"}, {"text": "c"}]}]
    assert_error(client.post("/rank", json=envelope("/rank", docs)), 400, "too_many_items")


def test_metrics_label_post_by_route(served):
    requests.post(f"{served.url}/post", json={"data": [{"text": "a"}]}, timeout=30).raise_for_status()
    metrics = requests.get(f"{served.url}/metrics", timeout=30).text
    assert any('"/post"' in line for line in metrics.splitlines() if line.startswith("clipsvc_")), metrics[:2000]


# --- docs/api.md's section, run as written (against the test server's address) ----------------------------

SECTION = "### clip-as-service: `POST /post`"


def test_the_guides_curl_example_runs(served):
    (code,) = [block for block in code_blocks(SECTION, "bash", API) if "curl" in block]
    body = json.loads(run_bash(code, served.url).stdout)
    assert [len(d["embedding"]) > 0 for d in body["data"]] == [True, True]


ROOT = Path(__file__).resolve().parent.parent
# The client's own environment, as .ci/run makes it (docs/api.md: clip-as-service), or another named by the variable.
CLIENT = os.environ.get("CLIP_CLIENT_PYTHON") or str(ROOT / ".venv-clip-client" / "bin" / "python")


@pytest.fixture(scope="module")
def client_python() -> str:
    if Path(CLIENT).exists():
        return CLIENT
    reason = (f"no clip-client environment at {CLIENT}: python3 -m venv .venv-clip-client && "
              ".venv-clip-client/bin/pip install -r requirements-clip-client.txt")
    if os.environ.get("CLIPSVC_REQUIRE_CLIP_CLIENT") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def test_the_real_clip_client_encodes_and_ranks_as_encode_and_rank(client_python, served, tmp_path):
    (code,) = code_blocks(SECTION, "python", API)
    (tmp_path / "apple.png").write_bytes(PNG)
    script = code.replace(ADDRESS, served.url) + (
        "\nimport json\nprint(json.dumps({'encoded': r.tolist(), 'texts': ranked['@m', 'text'], "
        "'scores': ranked['@m', 'scores__clip_score__value']}))\n")
    done = subprocess.run([client_python, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    with requests.Session() as http:
        expected = http.post(f"{served.url}/encode", json=[
            {"text": "First do it"}, {"img_blob": BLOB}, {"img_uri": SEED_GIF}], timeout=60).json()
        bento = http.post(f"{served.url}/rank", json={"queries": [{"img_blob": BLOB}], "candidates": [
            {"text": f"a photo of a {p}"} for p in PLACES]}, timeout=60).json()
    np.testing.assert_allclose(result["encoded"], expected, atol=1e-5)
    order = np.argsort(bento["probabilities"][0])[::-1]
    assert result["texts"] == [f"a photo of a {PLACES[i]}" for i in order]
    np.testing.assert_allclose(result["scores"], np.array(bento["probabilities"][0])[order], rtol=1e-5)
