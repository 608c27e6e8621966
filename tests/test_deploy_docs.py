"""docs/deployment.md names every way to deploy that the repo ships."""

from __future__ import annotations

import pytest

from testkit.deploy import DOCS, MAKE_TARGETS, MODEL_ZIP, doc_yaml_blocks


@pytest.mark.parametrize("text", [
    *(f"make {target}" for target in MAKE_TARGETS),
    "kubectl apply -k deploy/k8s", "kubectl apply -k deploy/k8s/gpu", "kubectl apply -k deploy/k8s/zip-init",
    "docker compose up", "--profile gpu", "Dockerfile.gpu", "clip-model", MODEL_ZIP,
])
def test_the_deployment_guide_mentions(text):
    assert text in DOCS.read_text()


def test_the_deployment_guide_has_a_volume_claim_example():
    kinds = [doc["kind"] for doc in doc_yaml_blocks()]
    assert "PersistentVolumeClaim" in kinds
