"""Schemathesis against a live gunicorn: no 5xx, and every response is one the document describes.

schemathesis' pytest plugin does not run under this pytest (9.x), so each operation gets an ordinary
parametrised test that drives schemathesis' own case strategies with Hypothesis.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from clipsvc.settings import Settings
from clipsvc.web.app import create_app
from clipsvc.web.openapi import build_spec

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
MAX_EXAMPLES = 25
# Seeded and bounded; no shrinking: every example is an HTTP request, and the failing one is reported as is.
RUN = settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None,
               suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])


def operations() -> list:
    """(method, path) of every documented operation (test_openapi checks that each one is served)."""
    paths = build_spec(create_app(Settings()))["paths"]
    return [pytest.param(method, path, id=f"{method.upper()} {path}")
            for path, item in paths.items() for method in item if method != "parameters"]


@pytest.fixture(scope="module")
def server(served):
    """The session's shared gunicorn (tests/conftest.py)."""
    return served


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
@pytest.mark.parametrize("method, path", operations())
def test_the_service_answers_as_documented(api_schema, server, method, path, mode):
    operation = api_schema[path][method.upper()]
    strategy = operation.as_strategy(generation_mode=mode)
    if mode is GenerationMode.POSITIVE:  # the document's own examples too
        strategy = st.one_of(strategy, *operation.get_strategies_from_examples())

    @RUN
    @given(case=strategy)
    def run(case):
        case.call_and_validate(base_url=server.url, checks=CHECKS, timeout=30)

    run()
