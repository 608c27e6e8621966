"""The kustomizations of deploy/k8s, rendered by `kubectl kustomize` (testkit.kustomize): every file named once,
every variant complete, every overlay's patch applied. Without kubectl the rendering tests skip, or fail where
CLIPSVC_REQUIRE_KUBECTL=1 (CI)."""

from __future__ import annotations

import pytest

from testkit import ROOT
from testkit.deploy import K8S, VARIANTS, kustomization, kustomization_dirs, manifest_files, referenced_files
from testkit.kustomize import build, identity, load_documents

KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
OVERLAYS = [d for d in kustomization_dirs() if kustomization(d).get("patches")]


def test_every_manifest_file_is_named_by_exactly_one_kustomization():
    named = referenced_files()
    for path in manifest_files():
        count = named.count(path.resolve())
        assert count == 1, f"{path.relative_to(ROOT)} is named {count} times"
    assert all(path.exists() for path in named)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_builds_the_four_resources(variant):
    resources = build(VARIANTS[variant])
    assert sorted(r["kind"] for r in resources) == sorted(KINDS)
    assert {r["metadata"]["name"] for r in resources} == {"clipsvc"}


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda d: d.relative_to(ROOT).as_posix())
def test_each_overlays_patches_change_their_target(overlay):
    """A patch kubectl applied to nothing, or that changes nothing, would leave the overlay a copy of the base."""
    base = {identity(r): r for r in build(K8S / "base")}
    built = {identity(r): r for r in build(overlay)}
    for entry in kustomization(overlay)["patches"]:
        for patch in load_documents(overlay / entry["path"]):
            assert identity(patch) in base, f"{entry['path']} patches {identity(patch)}, which base/ lacks"
            assert built[identity(patch)] != base[identity(patch)], f"{entry['path']} changed nothing"
