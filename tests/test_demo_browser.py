"""The demo page in headless Chromium against real gunicorn: its bars show exactly what POST /rank answers, its
scores what POST /syte_test/clip answers; with API keys on, a key typed into the page (or into /docs' Authorize
dialog) is what lets requests through.

Needs Debian's chromium and chromium-driver (`.ci/run` installs them). Without them the tests skip, unless
CLIPSVC_REQUIRE_BROWSER=1 (set by CI) makes that a failure. CLIPSVC_UPDATE_SCREENSHOT=1 also writes the
screenshot to docs/demo.png, for the README. The server is the session's shared one (tests/conftest.py); the key
tests start one with keys (testkit.server).
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path

import pytest
import requests
from PIL import Image, ImageDraw
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from clipsvc.web.scoring import clip_score
from testkit.server import gunicorn

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
CAPTIONS = ["a red circle in a blue sky", "a photo of a dog", "a bowl of tomato soup"]
WAIT_S = 30


@pytest.fixture(scope="session", autouse=True)
def browser_installed() -> None:
    """Checked before the shared server starts (session-scoped, so pytest sets it up first), so a machine without
    a browser skips at no cost."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        reason = f"{' and '.join(missing)} missing (apt-get install chromium chromium-driver)"
        if os.environ.get("CLIPSVC_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{reason}, and CLIPSVC_REQUIRE_BROWSER=1 requires the browser test")
        pytest.skip(reason)


@pytest.fixture(scope="module")
def server(served):
    """The session's shared gunicorn (tests/conftest.py)."""
    return served


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory):
    options = Options()
    options.binary_location = str(CHROMIUM)  # with the driver's path below, Selenium Manager never runs
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-extensions", "--window-size=1200,1100",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, CSP violations among them
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        driver.set_page_load_timeout(WAIT_S)
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "red-circle.png"
    image = Image.new("RGB", (160, 120), (90, 150, 230))
    ImageDraw.Draw(image).ellipse((50, 30, 110, 90), fill=(220, 40, 40))
    image.save(path)
    return path


def open_page(driver, server) -> None:
    driver.get_log("browser")  # drop what earlier tests logged
    driver.get(server.url + "/")


def submit(driver, image: Path | None, captions: list[str]) -> None:
    if image is not None:
        driver.find_element(By.ID, "image-input").send_keys(str(image))
    driver.find_element(By.ID, "captions").send_keys("\n".join(captions))
    driver.find_element(By.ID, "rank-button").click()


def wait_for_rows(driver) -> list:
    """The bar rows once drawn; if the page shows an error instead, its text is the failure."""
    result = WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#ranking .bar-row") or d.find_element(By.ID, "error").text)
    assert isinstance(result, list), f"the page shows an error: {result}"
    return result


def wait_for_error(driver) -> str:
    return WebDriverWait(driver, WAIT_S).until(lambda d: d.find_element(By.ID, "error").text)


def rank_directly(server, image: bytes, captions: list[str], headers: dict | None = None) -> requests.Response:
    body = {"queries": [{"img_blob": base64.b64encode(image).decode()}], "candidates": [{"text": c} for c in captions]}
    return requests.post(server.url + "/rank", json=body, headers=headers, timeout=WAIT_S)


def score_directly(server, image: bytes, caption: str) -> tuple[int, float]:
    """What POST /syte_test/clip answers for the pair: its CLIPScore and cosine."""
    answer = requests.post(server.url + "/syte_test/clip", files={"image-1": ("picture.png", image)},
                           data={"text-1": caption}, timeout=WAIT_S).json()
    return answer["image_vector_1_similarity_score"], answer["image_vector_1_cosine_similarity"]


def fill_ratio(row, kind: str) -> float:
    track = row.find_element(By.CSS_SELECTOR, f".bar.{kind} .track").rect["width"]
    return row.find_element(By.CSS_SELECTOR, f".bar.{kind} .fill").rect["width"] / track


def test_the_bars_show_what_rank_answers(driver, server, picture, tmp_path):
    open_page(driver, server)
    submit(driver, picture, CAPTIONS)
    rows = wait_for_rows(driver)

    shown = [(r.get_attribute("data-caption"), float(r.get_attribute("data-probability")),
              float(r.get_attribute("data-cosine"))) for r in rows]
    answer = rank_directly(server, picture.read_bytes(), CAPTIONS).json()
    expected = dict(zip(CAPTIONS, zip(answer["probabilities"][0], answer["cosine_similarities"][0], strict=True),
                        strict=True))
    assert sorted(caption for caption, _, _ in shown) == sorted(CAPTIONS)  # one bar row per caption
    assert sum(p for _, p, _ in shown) == pytest.approx(1, abs=1e-6)
    for caption, probability, cosine in shown:
        assert (probability, cosine) == pytest.approx(expected[caption], rel=1e-6, abs=1e-9), caption
    assert [p for _, p, _ in shown] == sorted((p for _, p, _ in shown), reverse=True)  # best first

    for row, (caption, probability, cosine) in zip(rows, shown, strict=True):
        assert row.find_element(By.CSS_SELECTOR, ".caption").text == caption
        assert fill_ratio(row, "probability") == pytest.approx(probability, abs=0.01)
        assert fill_ratio(row, "cosine") == pytest.approx(min(max(cosine, 0), 1), abs=0.01)
        assert f"{100 * probability:.1f} %" in row.text and f"{cosine:.4f}" in row.text
        score = int(row.get_attribute("data-score"))
        assert (score, cosine) == pytest.approx(score_directly(server, picture.read_bytes(), caption), abs=1e-5)
        assert row.find_element(By.CSS_SELECTOR, ".bar.score .value").text == str(score)
        assert fill_ratio(row, "score") == pytest.approx(score / 100, abs=0.01)
    legend = driver.find_elements(By.CSS_SELECTOR, ".legend div")  # one line of explanation per number
    assert [line.find_element(By.TAG_NAME, "dt").text for line in legend] == ["probability", "cosine", "score"]
    assert all(line.find_element(By.TAG_NAME, "dd").text for line in legend)
    assert driver.find_element(By.ID, "error").text == ""
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []  # no CSP violation, no 404

    screenshot = tmp_path / "demo.png"
    assert driver.save_screenshot(str(screenshot))
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(screenshot) as image:
        assert image.size[0] > 0 and image.size[1] > 0
    if os.environ.get("CLIPSVC_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(screenshot, ROOT / "docs" / "demo.png")


def test_a_file_that_is_not_an_image_shows_the_services_message(driver, server, tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("these are notes, not a picture\n")
    open_page(driver, server)
    submit(driver, fake, CAPTIONS[:1])
    message = wait_for_error(driver)

    error = rank_directly(server, fake.read_bytes(), CAPTIONS[:1]).json()["error"]
    box = driver.find_element(By.ID, "error")
    assert box.find_element(By.CSS_SELECTOR, ".error-message").text == error["message"]
    assert error["field"] in message and "(the image)" in message
    assert (box.get_attribute("data-code"), box.get_attribute("data-status")) == ("unsupported_image", "400")
    assert driver.find_elements(By.CSS_SELECTOR, "#ranking .bar-row") == []


def test_missing_input_is_explained_before_anything_is_sent(driver, server, picture):
    open_page(driver, server)
    submit(driver, None, CAPTIONS)
    assert "No image chosen" in wait_for_error(driver)

    open_page(driver, server)
    submit(driver, picture, ["   ", ""])
    assert "No captions" in wait_for_error(driver)
    assert driver.find_element(By.ID, "error").get_attribute("data-status") == ""  # the service was not asked


def test_an_unreachable_service_is_explained(driver, server, picture):
    open_page(driver, server)
    driver.set_network_conditions(offline=True, latency=0, download_throughput=-1, upload_throughput=-1)
    try:
        submit(driver, picture, CAPTIONS)
        assert "Could not reach the service" in wait_for_error(driver)
    finally:
        driver.delete_network_conditions()


# Cosines around every kind of edge: clamped below and above, exact halves (Python rounds them to even, JavaScript's
# Math.round up), float noise next to them, and /rank's float32 values.
COSINES = [-1.0, -0.3, -1e-9, 0.0, 0.002, 0.006, 0.01, 0.03, 0.042, 0.1, 0.15, 0.202, 0.25, 0.2998, 0.3, 0.30000001,
           0.31, 0.326, 0.33, 0.35, 0.37, 0.39, 0.398, 0.39999, 0.4, 0.41, 0.9, 1.0,
           *(n / 1000 + 0.0002 for n in range(0, 400, 7)), *(k / 250 for k in range(0, 101)),
           0.2298000067472458, 0.16869999468326569]


def test_the_pages_score_formula_is_the_services(driver, server):
    """The page computes CLIPScore from /rank's cosine: for a table of cosines it must equal scoring.clip_score, the
    one formula /syte_test/clip uses."""
    open_page(driver, server)
    page = driver.execute_script("return arguments[0].map(clipScore);", COSINES)
    assert dict(zip(COSINES, page, strict=True)) == {cosine: clip_score(cosine) for cosine in COSINES}
    assert clip_score(0.002) == 0 and clip_score(0.006) == 2  # halves to even: the table holds real ties


# --- With API keys --------------------------------------------------------------------------------------------------

KEY = "demo-key-0123456789abcdef"


@pytest.fixture(scope="module")
def keyed_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    with gunicorn(model_dir, tmp_path_factory.mktemp("keyed-demo") / "server.log", WEB_CONCURRENCY="1",
                  CLIP_API_KEYS=KEY) as server:
        yield server


def test_without_a_key_the_page_says_to_enter_one_and_with_it_ranks(driver, keyed_server, picture):
    open_page(driver, keyed_server)
    driver.execute_script("sessionStorage.clear();")
    open_page(driver, keyed_server)
    submit(driver, picture, CAPTIONS)
    message = wait_for_error(driver)
    assert "API key field" in message
    box = driver.find_element(By.ID, "error")
    assert (box.get_attribute("data-code"), box.get_attribute("data-status")) == ("unauthorized", "401")

    driver.find_element(By.ID, "api-key").send_keys(KEY)
    driver.find_element(By.ID, "rank-button").click()
    rows = wait_for_rows(driver)
    answer = rank_directly(keyed_server, picture.read_bytes(), CAPTIONS, {"Authorization": f"Bearer {KEY}"}).json()
    assert sorted(float(r.get_attribute("data-cosine")) for r in rows) == \
        pytest.approx(sorted(answer["cosine_similarities"][0]), rel=1e-6)

    open_page(driver, keyed_server)  # kept for this tab, in sessionStorage, not in a cookie or localStorage
    assert driver.find_element(By.ID, "api-key").get_attribute("value") == KEY
    assert driver.execute_script("return localStorage.length + document.cookie.length") == 0
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "401" not in e["message"]] == []


def test_the_docs_authorize_button_sends_the_key(driver, keyed_server):
    driver.get(keyed_server.url + "/docs")
    wait = WebDriverWait(driver, WAIT_S)

    def try_meta(expected: str) -> str:
        """Expand GET /meta, Try it out, Execute, and wait for the status Swagger UI shows to be `expected`."""
        summary = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '.opblock-summary-path[data-path="/meta"]'))
        block = summary.find_element(By.XPATH, "ancestor::div[contains(@class, 'opblock ')]")
        if not block.find_elements(By.CSS_SELECTOR, "button.execute, button.try-out__btn"):
            summary.click()
        try_out = wait.until(lambda d: block.find_elements(By.CSS_SELECTOR, "button.try-out__btn"))[0]
        if "cancel" not in try_out.get_attribute("class"):
            try_out.click()
        wait.until(lambda d: block.find_element(By.CSS_SELECTOR, "button.execute")).click()
        cell = ".live-responses-table tbody .response-col_status"
        return wait.until(lambda d: [c.text for c in block.find_elements(By.CSS_SELECTOR, cell)
                                     if c.text.startswith(expected)])[0]

    assert try_meta("401").startswith("401")
    driver.find_element(By.CSS_SELECTOR, "button.authorize").click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, 'input[aria-label="auth-bearer-value"]')).send_keys(KEY)
    driver.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper button.authorize").click()
    driver.find_element(By.CSS_SELECTOR, "button.btn-done").click()
    assert try_meta("200").startswith("200")  # the same request, now with the key Swagger UI holds
