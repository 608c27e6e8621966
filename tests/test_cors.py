"""CLIP_CORS_ORIGINS: preflights and response headers through the Flask client, and a real browser (Chromium) on a
second origin calling real gunicorn, with API keys off and on."""

from __future__ import annotations

import http.server
import os
import threading
from pathlib import Path

import pytest

from clipsvc.settings import Settings
from clipsvc.web.app import create_app
from testkit.server import gunicorn

ORIGIN = "http://app.example.test:8000"
PREFLIGHT = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "request_id, authorization, content-type"}
KEY = "k" * 24


def app_with(model_dir, encoder, **settings):
    return create_app(Settings(model_dir=model_dir, device="cpu", workers=1, **settings), encoder).test_client()


@pytest.mark.parametrize("origins, origin, allowed_as", [
    ((ORIGIN,), ORIGIN, ORIGIN),
    (("*",), ORIGIN, "*"),
    ((ORIGIN,), "http://evil.example.test", None),
    ((), ORIGIN, None),  # off by default
])
def test_preflight_and_response_headers(model_dir, encoder, origins, origin, allowed_as):
    client = app_with(model_dir, encoder, cors_origins=origins, api_keys=(KEY,))
    preflight = client.options("/encode", headers={**PREFLIGHT, "Origin": origin})
    answer = client.post("/encode", json=[{"text": "a dog"}],
                         headers={"Origin": origin, "Authorization": f"Bearer {KEY}", "request_id": "r-1"})
    assert answer.status_code == 200
    if allowed_as is None:
        assert "Access-Control-Allow-Origin" not in preflight.headers
        assert "Access-Control-Allow-Origin" not in answer.headers
        return
    assert preflight.status_code == 204  # answered before the key check: a preflight carries no key
    assert preflight.headers["Access-Control-Allow-Origin"] == allowed_as
    assert {"request_id", "authorization", "content-type"} <= {
        h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert answer.headers["Access-Control-Allow-Origin"] == allowed_as
    assert "request_id" in answer.headers["Access-Control-Expose-Headers"]
    assert "Origin" in answer.headers["Vary"]


def test_errors_carry_the_headers_too(model_dir, encoder):
    client = app_with(model_dir, encoder, cors_origins=(ORIGIN,), api_keys=(KEY,))
    refused = client.post("/encode", json=[{"text": "a dog"}], headers={"Origin": ORIGIN})
    assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == ORIGIN


PAGE = """<!doctype html><meta charset="utf-8"><title>other origin</title><script>
async function call(key) {
  const headers = {"Content-Type": "application/json", "request_id": "from-the-page"};
  if (key) headers["Authorization"] = "Bearer " + key;
  try {
    const r = await fetch("%(api)s/encode", {method: "POST", headers, body: JSON.stringify([{text: "a dog"}])});
    const body = await r.json();
    return {status: r.status, id: r.headers.get("request_id"), rows: Array.isArray(body) ? body.length : 0};
  } catch (e) { return {error: String(e)}; }
}
</script>"""


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
    if not (chromium.exists() and driver_path.exists()):
        if os.environ.get("CLIPSVC_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium and chromedriver are required (CLIPSVC_REQUIRE_BROWSER=1)")
        pytest.skip("chromium or chromedriver missing (apt-get install chromium chromium-driver)")
    options = Options()
    options.binary_location = str(chromium)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(driver_path)), options=options)
    yield driver
    driver.quit()


def page_server(api: str, directory: Path):
    """The second origin: a plain static server on another loopback port serving the calling page."""
    (directory / "index.html").write_text(PAGE % {"api": api})
    handler = lambda *args: http.server.SimpleHTTPRequestHandler(*args, directory=str(directory))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize("keys", [False, True], ids=["keys off", "keys on"])
def test_a_page_on_another_origin_calls_the_api(browser, model_dir, tmp_path, keys):
    pages = tmp_path / "pages"
    pages.mkdir()
    settings = {"CLIP_API_KEYS": KEY} if keys else {}
    static, origin = page_server("http://127.0.0.1:0", pages)  # the page is written once the API's port is known
    try:
        with gunicorn(model_dir, tmp_path / "server.log", WEB_CONCURRENCY="1", CLIP_CORS_ORIGINS=origin,
                      **settings) as server:
            (pages / "index.html").write_text(PAGE % {"api": server.url})
            browser.get(origin + "/index.html")
            allowed = browser.execute_async_script(
                "call(arguments[0]).then(arguments[arguments.length - 1]);", KEY if keys else None)
            assert allowed == {"status": 200, "id": "from-the-page", "rows": 1}, allowed
            if keys:
                refused = browser.execute_async_script("call(null).then(arguments[arguments.length - 1]);")
                assert refused["status"] == 401, refused  # readable by the page: the error names the origin too
        with gunicorn(model_dir, tmp_path / "closed.log", WEB_CONCURRENCY="1", **settings) as closed:
            (pages / "index.html").write_text(PAGE % {"api": closed.url})
            browser.get(origin + "/index.html")
            blocked = browser.execute_async_script(
                "call(arguments[0]).then(arguments[arguments.length - 1]);", KEY if keys else None)
            assert "error" in blocked, blocked  # CORS off (the default): the browser withholds the answer
    finally:
        static.shutdown()
