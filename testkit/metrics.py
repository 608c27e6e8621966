"""GET /metrics read back: the Prometheus text format as {(sample, labels): value}, scraped from a live server."""

from __future__ import annotations

import time

import requests
from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value, from the Prometheus text format."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def series(scraped: dict, name: str) -> dict[frozenset, float]:
    return {labels: v for (sample, labels), v in scraped.items() if sample == name}


def scrape(server) -> dict:
    response = requests.get(server.url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return samples(response.text)


def scrape_until(server, done, timeout: float = 60) -> dict:
    """Scrape until `done(scraped)` holds or `timeout` has passed; returns the last scrape."""
    deadline = time.monotonic() + timeout
    while not done(scraped := scrape(server)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return scraped
