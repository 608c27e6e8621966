"""The repo's deployment files, read: the Kubernetes variants (rendered by `kubectl kustomize`), docker-compose.yml,
Dockerfile.gpu, the Makefile's targets and the YAML in docs/deployment.md."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import yaml

from testkit import ROOT
from testkit.dockerfile import Instruction, parse_dockerfile, stages
from testkit.kustomize import build, kustomization

K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
GPU_DOCKERFILE = ROOT / "Dockerfile.gpu"
MAKEFILE = ROOT / "Makefile"
DOCS = ROOT / "docs" / "deployment.md"
# The deployment variants: the top-level kustomization (CPU) and the overlays beside base/.
VARIANTS = {"cpu": K8S, "gpu": K8S / "gpu", "zip-init": K8S / "zip-init"}
MODEL_ZIP = "clip-vit-large-patch14.zip"  # what the zip-init overlay's init container unzips
MAKE_TARGETS = {
    # target: what `make -n TARGET` must print
    "venv": ["python3 -m venv .venv", "pip install", "-r requirements-dev.txt"],
    "run": ["CLIP_MODEL_DIR=models/vit-l-14", "gunicorn -c gunicorn.conf.py wsgi:app"],
    "test": [],  # the README's test command, checked by test_make
    "bench": ["python bench/perf.py --arch vit-b-32"],
    "standin": ["python -m clipsvc.standin models/vit-l-14 --arch vit-l-14"],
    "lint": ["ruff check . && hadolint Dockerfile Dockerfile.gpu"],
    "docker": ["docker build -t clipsvc ."],
    "docker-gpu": ["docker build -f Dockerfile.gpu -t clipsvc-gpu ."],
    "docker-check": ["scripts/docker-check --image clipsvc"],
}


def kustomization_dirs() -> list[Path]:
    return sorted(path.parent for path in K8S.rglob("kustomization.yaml"))


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def patch_files() -> list[Path]:
    patches = [(d, entry) for d in kustomization_dirs() for entry in kustomization(d).get("patches", [])]
    return [(directory / entry["path"]).resolve() for directory, entry in patches]


def referenced_files() -> list[Path]:
    """Every file a kustomization names, as a resource or as a patch."""
    named = [(d / entry).resolve() for d in kustomization_dirs() for entry in kustomization(d).get("resources", [])]
    return [path for path in named if path.is_file()] + patch_files()


def resource(variant: str, kind: str) -> dict:
    (found,) = [r for r in build(VARIANTS[variant]) if r["kind"] == kind]
    return found


def pod_spec(variant: str) -> dict:
    return resource(variant, "Deployment")["spec"]["template"]["spec"]


def app_container(variant: str) -> dict:
    """The variant's clipsvc container (the server, not an init container)."""
    (container,) = [c for c in pod_spec(variant)["containers"] if c["name"] == "clipsvc"]
    return container


def container_env(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def quantity(value: str | int) -> float:
    """A Kubernetes resource quantity ("4", "500m", "4Gi") as a number of cores or bytes."""
    text = str(value)
    factors = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    for suffix, factor in factors.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def doc_yaml_blocks() -> list[dict]:
    """The Kubernetes objects shown in docs/deployment.md's ```yaml blocks."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", DOCS.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if isinstance(doc, dict) and "kind" in doc]


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` (unset or empty) and `${VAR-default}` (unset only) substitution."""
    def substitute(match: re.Match[str]) -> str:
        name, form, default = match.group(1), match.group(2), match.group(3) or ""
        if form == "-":
            return environ.get(name, default)
        return environ.get(name) or default

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}", substitute, value)


@cache
def gpu_stage() -> list[Instruction]:
    """Dockerfile.gpu's one stage."""
    (stage,) = stages(parse_dockerfile(GPU_DOCKERFILE.read_text()))
    return stage


