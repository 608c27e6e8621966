"""The demo page at GET /: served with a strict policy, every asset from the app itself, shipped in the image."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from clipsvc.web.demo import ASSETS
from testkit.dockerfile import final_copy_sources
from testkit.dockerignore import dockerignored

ROOT = Path(__file__).resolve().parent.parent
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
# A URL to another origin: with a scheme (http://, https://, or any other like ftp://), or protocol-relative
# (//host) where a URL can stand: an attribute value, a JS string or CSS url(), @import.
EXTERNAL_URL = re.compile(r"""[a-z][a-z0-9+.-]*://|(?:["'`(=]|url\(|@import)\s*["']?//""", re.IGNORECASE)


class PageParser(HTMLParser):
    """The URLs the page loads, and anything inline that the policy would block (scripts, styles, handlers)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [values[name] for name in ("src", "href") if values.get(name)]
        self.inline += [f"<{tag} {name}>" for name, _ in attrs if name.startswith("on") or name == "style"]
        if tag == "script" and not values.get("src"):
            self.inline.append("<script> without src")
        if tag == "style":
            self.inline.append("<style>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


@pytest.fixture
def page(client) -> PageParser:
    parser = PageParser()
    parser.feed(client.get("/").get_data(as_text=True))
    return parser


def asset_path(url: str) -> str:
    """The path the browser asks for, for a URL relative to the page at /."""
    return "/" + url


def test_page_is_html_with_a_strict_policy(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert response.mimetype_params == {"charset": "utf-8"}
    policy = response.headers["Content-Security-Policy"]
    directives = dict((d.strip().split(" ", 1) + [""])[:2] for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_page_has_nothing_inline(page):
    assert page.inline == []  # scripts, styles and handlers all come from files, as the policy requires


def test_every_asset_the_page_references_is_served_with_its_type(client, page):
    assert {Path(url).suffix for url in page.urls} == {".js", ".css", ".png"}
    for url in page.urls:
        assert not re.match(r"[a-z]+:|/", url), f"{url}: not a relative path"
        response = client.get(asset_path(url))
        assert response.status_code == 200, url
        assert response.mimetype == CONTENT_TYPES[Path(url).suffix], url
        assert response.data == (ASSETS / Path(url).name).read_bytes()
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Content-Security-Policy"] == client.get("/").headers["Content-Security-Policy"]


def test_every_file_of_the_folder_is_used_by_the_page(page):
    assert sorted(p.name for p in ASSETS.iterdir()) == sorted(["index.html", *(Path(u).name for u in page.urls)])


@pytest.mark.parametrize("name", sorted(p.name for p in ASSETS.iterdir() if p.suffix != ".png"))
def test_no_asset_names_another_origin(name):
    text = (ASSETS / name).read_text()
    assert EXTERNAL_URL.findall(text) == []


@pytest.mark.parametrize("text, external", [
    ('<script src="https://cdn.example/x.js">', True),
    ("url(//fonts.example/a.woff2)", True),
    ("fetch('//evil.example/rank')", True),
    ("@import '//x.example/a.css';", True),
    ("ftp://example.org/file", True),
    ('<script src="demo/demo.js">', False),
    ("// a JavaScript comment", False),
    ('fetch("rank")', False),
])
def test_external_url_pattern(text, external):
    assert bool(EXTERNAL_URL.search(text)) is external


def test_the_script_posts_to_routes_the_app_has(app):
    script = (ASSETS / "demo.js").read_text()
    targets = re.findall(r"""fetch\(\s*["']([^"']+)["']""", script)
    assert targets == ["rank"]
    adapter = app.url_map.bind("localhost")
    for target in targets:
        assert adapter.match("/" + target, method="POST")[0] == "bentoml.rank_candidates"


@pytest.mark.parametrize("path", ["/nope", "/demo/", "/demo/missing.js", "/demo/../app.py", "/demo/%2e%2e/demo.py",
                                  "/demo/index.txt", "/index.html", "/demo.py"])
def test_unknown_paths_are_still_json_404s(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.mimetype == "application/json"
    error = response.json["error"]
    assert (error["status"], error["code"], error["field"]) == (404, "not_found", None)
    assert "GET /" in error["message"]


def test_wrong_method_on_the_page_is_a_json_405(client):
    response = client.post("/")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"


def test_the_assets_ship_in_the_docker_image():
    files = [p.relative_to(ROOT).as_posix() for p in ASSETS.iterdir()]
    assert files and [f for f in files if dockerignored(f)] == []
    copied = final_copy_sources()
    assert [f for f in files if not any(f == s or f.startswith(s + "/") for s in copied)] == []
