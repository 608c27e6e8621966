"""The kustomizations of deploy/k8s rendered by the real tool, `kubectl kustomize`, as parsed resources; and the
kustomization files read as written. No merge of our own: what a cluster applies is what kubectl renders.

Without kubectl a test that renders skips with the install hint, or fails where CLIPSVC_REQUIRE_KUBECTL=1 (.ci/run
sets it, as it installs kubectl)."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

REQUIRE = "CLIPSVC_REQUIRE_KUBECTL"
INSTALL_HINT = "apt-get install kubernetes-client, Debian's kubectl"
TIMEOUT_S = 60


class KustomizeError(RuntimeError):
    """`kubectl kustomize` failed: the message holds its stderr and which kubectl it was."""


def load_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kustomization(directory: Path) -> dict:
    """A directory's kustomization.yaml as written (which files it names), not rendered."""
    (document,) = load_documents(directory / "kustomization.yaml")
    return document


def identity(resource: dict) -> tuple[str, str, str]:
    return resource["apiVersion"], resource["kind"], resource["metadata"]["name"]


def kubectl() -> str:
    """kubectl's path. Missing, the test skips with the install hint, or fails where CLIPSVC_REQUIRE_KUBECTL=1."""
    path = shutil.which("kubectl")
    if path is None:
        reason = f"kubectl is not on PATH: the manifests are rendered with `kubectl kustomize` ({INSTALL_HINT})"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{reason}, and {REQUIRE}=1 requires their tests")
        pytest.skip(reason)
    return path


def _client_version(binary: str) -> str:
    try:
        result = subprocess.run([binary, "version", "--client"], capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"version unknown: {error}"
    return " ".join((result.stdout or result.stderr).split())


@cache
def build(directory: Path) -> tuple[dict, ...]:
    """`kubectl kustomize directory`, parsed: the resources `kubectl apply -k directory` would send, in its order.
    Cached and shared: callers copy before they edit."""
    binary = kubectl()
    command = [binary, "kustomize", str(directory)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise KustomizeError(f"`{' '.join(command)}` took over {TIMEOUT_S} s") from error
    if result.returncode != 0:
        raise KustomizeError(f"`{' '.join(command)}` exited {result.returncode} "
                             f"({binary}: {_client_version(binary)}):\n{result.stderr.strip()}")
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)
