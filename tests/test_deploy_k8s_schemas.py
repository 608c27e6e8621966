"""The Kubernetes manifests (deploy/k8s) against the Kubernetes JSON schemas, offline.

Every manifest file, every kustomization as `kubectl kustomize` renders it (what `kubectl apply -k` sends) and the
YAML in docs/deployment.md is validated against the schemas kubernetes-validate bundles, for its oldest and newest
Kubernetes version. Without kubectl the rendered ones skip, or fail where CLIPSVC_REQUIRE_KUBECTL=1 (CI).
"""

from __future__ import annotations

import copy
import socket

import kubernetes_validate
import pytest

from testkit import ROOT
from testkit.deploy import DOCS, doc_yaml_blocks, kustomization_dirs, manifest_files, patch_files, resource
from testkit.kustomize import build, identity, load_documents

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


def file_cases() -> list:
    """The resources as written: each manifest file and the YAML examples in docs/deployment.md."""
    cases = []
    for path in manifest_files():
        if path.resolve() in patch_files():
            continue  # a patch alone lacks required fields; it is validated merged, in its overlay's rendering
        cases += [(path.relative_to(ROOT).as_posix(), doc) for doc in load_documents(path)]
    cases += [(DOCS.relative_to(ROOT).as_posix(), doc) for doc in doc_yaml_blocks()]
    return [pytest.param(doc, version, id=f"{source}:{doc['kind']}:{version}")
            for source, doc in cases for version in K8S_VERSIONS]


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("document, version", file_cases())
def test_manifest_matches_the_kubernetes_schema(document, version):
    # strict: the schemas forbid unknown fields, so a misspelt key fails instead of being ignored by the cluster.
    kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda d: d.relative_to(ROOT).as_posix())
def test_kubectl_kustomize_output_matches_the_kubernetes_schema(directory, version):
    """Each kustomization as kubectl renders it, overlay patches applied by the real strategic merge."""
    resources = build(directory)
    assert resources, f"kubectl kustomize {directory} rendered nothing"
    failures = []
    for document in resources:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            failures.append(f"{identity(document)}: {error}")
    assert not failures, "\n".join(failures)


BREAKAGES = {
    "misspelt-field": lambda c: c.update(readinesProbe=c["readinessProbe"]),
    "port-as-string": lambda c: c["ports"][0].update(containerPort="8081"),
    "missing-container-name": lambda c: c.pop("name"),
    "wrong-type-nested": lambda c: c["startupProbe"]["httpGet"].update(path=["/readyz"]),
}


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("edit", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_the_validator_rejects_broken_manifests(edit):
    document = copy.deepcopy(resource("cpu", "Deployment"))
    kubernetes_validate.validate(document, K8S_VERSIONS[-1], strict=True)  # valid as rendered
    edit(document["spec"]["template"]["spec"]["containers"][0])
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(document, K8S_VERSIONS[-1], strict=True)
