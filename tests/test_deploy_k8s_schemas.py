"""The Kubernetes manifests (deploy/k8s) against the Kubernetes JSON schemas, offline.

Every manifest file, every kustomize build (testkit.kustomize) and the YAML in docs/deployment.md is validated
against the schemas kubernetes-validate bundles, for its oldest and newest Kubernetes version.
"""

from __future__ import annotations

import copy
import socket

import kubernetes_validate
import pytest

from testkit import ROOT
from testkit.deploy import DOCS, doc_yaml_blocks, kustomization_dirs, manifest_files, patch_files, resource
from testkit.kustomize import build, load_documents

# kubernetes-validate's oldest bundled schemas and its newest: autoscaling/v2 and policy/v1 are in both.
K8S_VERSIONS = (kubernetes_validate.utils.all_versions()[0], kubernetes_validate.latest_version())


@pytest.fixture
def no_network(monkeypatch):
    """Validation must work offline: any connection attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def schema_cases() -> list:
    """Every resource a user can apply: each manifest file, each kustomize build (overlay patches applied in
    context), and the YAML examples in docs/deployment.md."""
    cases = []
    for path in manifest_files():
        if path.resolve() in patch_files():
            continue  # a patch alone lacks required fields; it is validated merged, in its overlay's build
        cases += [(path.relative_to(ROOT).as_posix(), doc) for doc in load_documents(path)]
    for directory in kustomization_dirs():
        name = f"kustomize build {directory.relative_to(ROOT).as_posix()}"
        cases += [(name, doc) for doc in build(directory)]
    cases += [(DOCS.relative_to(ROOT).as_posix(), doc) for doc in doc_yaml_blocks()]
    return [pytest.param(doc, version, id=f"{source}:{doc['kind']}:{version}")
            for source, doc in cases for version in K8S_VERSIONS]


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("document, version", schema_cases())
def test_manifest_matches_the_kubernetes_schema(document, version):
    # strict: the schemas forbid unknown fields, so a misspelt key fails instead of being ignored by the cluster.
    kubernetes_validate.validate(document, version, strict=True)


def _broken(edit) -> dict:
    document = copy.deepcopy(resource("cpu", "Deployment"))
    edit(document["spec"]["template"]["spec"]["containers"][0])
    return document


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("document", [
    pytest.param(_broken(lambda c: c.update(readinesProbe=c["readinessProbe"])), id="misspelt-field"),
    pytest.param(_broken(lambda c: c["ports"][0].update(containerPort="8081")), id="port-as-string"),
    pytest.param(_broken(lambda c: c.pop("name")), id="missing-container-name"),
    pytest.param(_broken(lambda c: c["startupProbe"]["httpGet"].update(path=["/readyz"])), id="wrong-type-nested"),
])
def test_the_validator_rejects_broken_manifests(document):
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, K8S_VERSIONS[-1], strict=True)

