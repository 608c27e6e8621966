"""Checks on the service's answers that many test files make."""

from __future__ import annotations


def assert_error(response, status: int, code: str, field: str | None = None) -> None:
    """Our error shape exactly, with a message and the request-id header (a Flask test client's response)."""
    assert response.status_code == status
    assert response.is_json
    assert response.json == {"error": {"status": status, "code": code, "message": response.json["error"]["message"],
                                       "field": field}}
    assert response.json["error"]["message"]
    assert response.headers["request_id"]
