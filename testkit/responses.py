"""Checks on the service's answers that many test files make."""

from __future__ import annotations

import re


def assert_error(response, status: int, code: str, field: str | None = None) -> None:
    """Our error shape exactly, with a message and the request-id header (a Flask test client's response); `index`
    is there exactly when the field names an item of a list (`candidates[2].img_blob`), and is its position."""
    assert response.status_code == status
    assert response.is_json
    expected = {"status": status, "code": code, "message": response.json["error"]["message"], "field": field}
    item = re.search(r"\[(\d+)\]", field or "")
    if item:
        expected["index"] = int(item.group(1))
    assert response.json == {"error": expected}
    assert response.json["error"]["message"]
    assert response.headers["request_id"]
