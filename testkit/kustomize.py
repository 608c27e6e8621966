"""A small kustomize: resources and strategic merge patches, which is all deploy/k8s uses."""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path

import yaml

# The merge keys of the lists the patches touch (Kubernetes' patchMergeKey); other lists are replaced.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
              "volumeMounts": "mountPath", "ports": "containerPort"}


def load_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def strategic_merge(base: object, patch: object, field: str = "") -> object:
    """`patch` merged into `base`: maps key by key (None deletes), lists of MERGE_KEYS item by item."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = strategic_merge(merged[key], value, key)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        patches = {item[key]: item for item in patch}
        merged = [strategic_merge(item, patches.pop(item[key]), field) if item[key] in patches
                  else copy.deepcopy(item) for item in base]
        return merged + [copy.deepcopy(item) for item in patches.values()]
    return copy.deepcopy(patch)


def kustomization(directory: Path) -> dict:
    (document,) = load_documents(directory / "kustomization.yaml")
    return document


def identity(resource: dict) -> tuple[str, str, str]:
    return resource["apiVersion"], resource["kind"], resource["metadata"]["name"]


@cache
def build(directory: Path) -> tuple[dict, ...]:
    """What `kustomize build directory` gives for the features deploy/k8s uses."""
    spec = kustomization(directory)
    unknown = set(spec) - {"apiVersion", "kind", "resources", "patches"}
    assert not unknown, f"{directory}: this small kustomize does not know {unknown}; extend build()"
    resources: list[dict] = []
    for entry in spec.get("resources", []):
        target = directory / entry
        resources += build(target.resolve()) if target.is_dir() else load_documents(target)
    for entry in spec.get("patches", []):
        assert set(entry) == {"path"}, f"{directory}: only `path:` strategic merge patches are supported here"
        for patch in load_documents(directory / entry["path"]):
            targets = [i for i, r in enumerate(resources) if identity(r) == identity(patch)]
            assert len(targets) == 1, f"{entry['path']}: {identity(patch)} matches {len(targets)} resources"
            resources[targets[0]] = strategic_merge(resources[targets[0]], patch)
    return tuple(resources)
