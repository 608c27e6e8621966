"""The kustomizations of deploy/k8s: every file named once, every variant complete, and (where kubectl is
installed) testkit.kustomize's build equal to `kubectl kustomize`."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from testkit import ROOT
from testkit.deploy import VARIANTS, kustomization_dirs, manifest_files, referenced_files
from testkit.kustomize import build, identity

KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


def test_every_manifest_file_is_named_by_exactly_one_kustomization():
    named = referenced_files()
    for path in manifest_files():
        assert named.count(path.resolve()) == 1, f"{path.relative_to(ROOT)} is named {named.count(path)} times"
    assert all(path.exists() for path in named)


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_builds_the_four_resources(variant):
    resources = build(VARIANTS[variant])
    assert sorted(r["kind"] for r in resources) == sorted(KINDS)
    assert {r["metadata"]["name"] for r in resources} == {"clipsvc"}


def _normalised(value: object) -> object:
    """Order-free comparison: named list items sorted by name, as kustomize may reorder merged lists."""
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_normalised(v) for v in value]
        if all(isinstance(v, dict) and "name" in v for v in items):
            items.sort(key=lambda v: v["name"])
        return items
    return value


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=lambda d: d.relative_to(ROOT).as_posix())
def test_our_build_equals_kubectl_kustomize(directory):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed; the build above is checked against the schemas all the same")
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    theirs = {identity(r): _normalised(r) for r in yaml.safe_load_all(result.stdout) if r}
    ours = {identity(r): _normalised(r) for r in build(directory)}
    assert theirs == ours
