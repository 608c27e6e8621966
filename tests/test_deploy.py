"""The deployment files are part of the contract: they must be valid and agree with the code.

Kubernetes manifests (deploy/k8s), docker-compose.yml, Dockerfile.gpu and the Makefile are checked without a
cluster, a Docker engine or the network: manifests are validated against the Kubernetes JSON schemas that
kubernetes-validate bundles, the kustomize overlays are built here by applying their strategic merge patches
(and compared with `kubectl kustomize` where kubectl is installed), and hadolint lints Dockerfile.gpu.
The Dockerfile reader and helpers come from tests/test_dockerfile.py.
"""

from __future__ import annotations

import copy
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from functools import cache
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from test_dockerfile import (
    APP_FILES,
    GUNICORN_CMD,
    NOT_DEFAULTED,
    assert_hadolint_clean,
    dockerignored,
    env_of,
    exec_form,
    final,
    of,
    parse_dockerfile,
    requirement_lines,
    seconds,
    stages,
)

from clipsvc import __version__
from clipsvc.encoder.modeldir import resolve_model_dir
from clipsvc.encoder.standin import ARCHS
from clipsvc.settings import ENV_VARS, Settings
from clipsvc.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
GPU_DOCKERFILE = ROOT / "Dockerfile.gpu"
MAKEFILE = ROOT / "Makefile"
DOCS = ROOT / "docs" / "deployment.md"
README = ROOT / "README.md"
REQUIREMENTS = ROOT / "requirements.txt"

SETTINGS = Settings()
KNOWN_VARS = {var for var, _ in ENV_VARS.values()}
# kubernetes-validate's oldest bundled schemas and its newest: autoscaling/v2 and policy/v1 are in both.
K8S_VERSIONS = (kubernetes_validate.utils.all_versions()[0], kubernetes_validate.latest_version())
# The deployment variants: the top-level kustomization (CPU) and the overlays beside base/.
VARIANTS = {"cpu": K8S, "gpu": K8S / "gpu", "zip-init": K8S / "zip-init"}
KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
IMAGES = {"cpu": "clipsvc", "gpu": "clipsvc-gpu", "zip-init": "clipsvc"}
PROBES = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
# ViT-L/14 in fp32, per gunicorn worker (each loads its own copy).
MEMORY_PER_WORKER = 2 * 1024**3
# The zip-init overlay's init container unzips this file.
MODEL_ZIP = "clip-vit-large-patch14.zip"


# --- Reading ----------------------------------------------------------------------------------------------------------


def load_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's `${VAR}` / `${VAR:-default}` substitution (the forms docker-compose.yml uses)."""
    def substitute(match: re.Match[str]) -> str:
        return environ.get(match.group(1)) or (match.group(2) or "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}", substitute, value)


def quantity(value: str | int) -> float:
    """A Kubernetes resource quantity ("4", "500m", "4Gi") as a number of cores or bytes."""
    text = str(value)
    factors = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    for suffix, factor in factors.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


@pytest.mark.parametrize("value, expected", [("4", 4), (2, 2), ("500m", 0.5), ("4Gi", 4 * 2**30), ("256Mi", 2**28)])
def test_quantity_reader(value, expected):
    assert quantity(value) == expected


# --- A small kustomize: resources and strategic merge patches, which is all deploy/k8s uses ---------------------------

# The merge keys of the lists the patches touch (Kubernetes' patchMergeKey); other lists are replaced.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "volumes": "name", "env": "name",
              "volumeMounts": "mountPath", "ports": "containerPort"}


def strategic_merge(base: object, patch: object, field: str = "") -> object:
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


@pytest.mark.parametrize("base, patch, expected", [
    ({"a": 1, "b": {"c": 2}}, {"b": {"d": 3}}, {"a": 1, "b": {"c": 2, "d": 3}}),
    ({"volumes": [{"name": "x", "pvc": 1}]}, {"volumes": [{"name": "x", "pvc": None, "dir": {}}]},
     {"volumes": [{"name": "x", "dir": {}}]}),
    ({"containers": [{"name": "a", "image": "i"}, {"name": "b"}]}, {"containers": [{"name": "a", "image": "j"}]},
     {"containers": [{"name": "a", "image": "j"}, {"name": "b"}]}),
    ({"volumes": [{"name": "a"}]}, {"volumes": [{"name": "b"}]}, {"volumes": [{"name": "a"}, {"name": "b"}]}),
    ({"tolerations": [{"key": "a"}]}, {"tolerations": [{"key": "b"}]}, {"tolerations": [{"key": "b"}]}),
])
def test_strategic_merge(base, patch, expected):
    assert strategic_merge(base, patch) == expected


def kustomization(directory: Path) -> dict:
    (document,) = load_documents(directory / "kustomization.yaml")
    return document


@cache
def build(directory: Path) -> tuple[dict, ...]:
    """What `kustomize build directory` gives for the features deploy/k8s uses."""
    spec = kustomization(directory)
    unknown = set(spec) - {"apiVersion", "kind", "resources", "patches"}
    assert not unknown, f"{directory}: this test's kustomize does not know {unknown}; extend build()"
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


def identity(resource: dict) -> tuple[str, str, str]:
    return resource["apiVersion"], resource["kind"], resource["metadata"]["name"]


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


def server(variant: str) -> dict:
    (container,) = [c for c in pod_spec(variant)["containers"] if c["name"] == "clipsvc"]
    return container


def container_env(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def doc_yaml_blocks() -> list[dict]:
    blocks = re.findall(r"^```yaml\n(.*?)^```", DOCS.read_text(), flags=re.MULTILINE | re.DOTALL)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if isinstance(doc, dict) and "kind" in doc]


# --- Schemas ----------------------------------------------------------------------------------------------------------


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


# --- Kustomizations ---------------------------------------------------------------------------------------------------


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


# --- The Deployment against the code ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def get_routes() -> set[str]:
    app = create_app(Settings(device="cpu", workers=1, torch_threads=1))
    return {rule.rule for rule in app.url_map.iter_rules() if "GET" in rule.methods}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("probe, path", PROBES.items())
def test_probes_ask_existing_routes_on_the_http_port(variant, probe, path, get_routes):
    check = server(variant)[probe]["httpGet"]
    assert check["path"] == path
    assert check["path"] in get_routes
    assert check["port"] == "http"


def test_readiness_waits_for_the_model_and_liveness_does_not():
    client = create_app(Settings(device="cpu", workers=1, torch_threads=1)).test_client()
    assert client.get(PROBES["livenessProbe"]).status_code == 200
    assert client.get(PROBES["readinessProbe"]).status_code == 503


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_container_port_is_the_code_default(variant):
    ports = server(variant)["ports"]
    assert [(p["name"], p["containerPort"]) for p in ports] == [("http", SETTINGS.port)]
    assert Settings.from_env(container_env(server(variant))).port == SETTINGS.port


def _budget(probe: dict) -> int:
    return probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_startup_probe_allows_a_slow_model_load(variant):
    assert _budget(server(variant)["startupProbe"]) >= 300


@pytest.mark.parametrize("variant", VARIANTS)
def test_liveness_outlasts_gunicorns_own_worker_timeout(variant):
    # Probes wait behind long requests in sync workers; gunicorn replaces a stuck worker itself.
    assert _budget(server(variant)["livenessProbe"]) > SETTINGS.worker_timeout


def _pre_stop_seconds(container: dict) -> int:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return int(command[1]) if command[:1] == ["sleep"] else 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_termination_grace_outlasts_gunicorns_graceful_timeout(variant):
    grace = pod_spec(variant)["terminationGracePeriodSeconds"]
    assert grace > SETTINGS.graceful_timeout + _pre_stop_seconds(server(variant))
    assert grace >= 70


@pytest.mark.parametrize("variant", VARIANTS)
def test_resources_follow_workers_times_threads(variant):
    container = server(variant)
    settings = Settings.from_env(container_env(container))
    cores = settings.workers * settings.threads_per_worker
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert container_env(container).get("CLIP_TORCH_THREADS"), "in a pod the default would count the node's cores"
    assert quantity(requests["cpu"]) == cores == quantity(limits["cpu"])
    assert quantity(requests["memory"]) >= settings.workers * MEMORY_PER_WORKER
    assert quantity(limits["memory"]) >= quantity(requests["memory"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_environment_is_a_valid_configuration(variant):
    env = container_env(server(variant))
    assert set(env) <= KNOWN_VARS, "typo, or a setting clipsvc/settings.py does not read"
    Settings.from_env(env)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_model_is_mounted_read_only_where_the_code_looks(variant):
    container = server(variant)
    model_dir = container_env(container).get("CLIP_MODEL_DIR", str(SETTINGS.model_dir))
    assert model_dir == str(SETTINGS.model_dir)
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == model_dir]
    assert mount.get("readOnly") is True
    (volume,) = [v for v in pod_spec(variant)["volumes"] if v["name"] == mount["name"]]
    if variant == "zip-init":
        assert set(volume) == {"name", "emptyDir"}
    else:
        assert volume["persistentVolumeClaim"] == {"claimName": "clip-model", "readOnly": True}


@pytest.mark.parametrize("variant", VARIANTS)
def test_runs_as_the_images_non_root_user_with_a_read_only_root(variant):
    spec = pod_spec(variant)
    image_user = of(final(), "USER")[-1].args.split(":")[0]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert str(spec["securityContext"]["runAsUser"]) == image_user == "10001"
    for container in spec["containers"] + spec.get("initContainers", []):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, container["name"]
        assert context["allowPrivilegeEscalation"] is False, container["name"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_what_the_app_writes_lies_on_an_empty_dir(variant):
    container = server(variant)
    writable = {m["mountPath"]: m["name"] for m in container["volumeMounts"] if not m.get("readOnly")}
    assert "/tmp" in writable, "gunicorn's heartbeat files and werkzeug's spooled uploads go to /tmp"
    volumes = {v["name"]: v for v in pod_spec(variant)["volumes"]}
    assert "emptyDir" in volumes[writable["/tmp"]]
    cache_dir = container_env(container).get("CLIP_MODEL_CACHE_DIR") or env_of(final())["CLIP_MODEL_CACHE_DIR"]
    assert Path(cache_dir).is_relative_to("/tmp")


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_mount_has_a_volume_and_every_volume_is_mounted(variant):
    spec = pod_spec(variant)
    mounted = {m["name"] for c in spec["containers"] + spec.get("initContainers", []) for m in c["volumeMounts"]}
    assert mounted == {v["name"] for v in spec["volumes"]}


@pytest.mark.parametrize("variant", VARIANTS)
def test_images_are_this_version(variant):
    spec = pod_spec(variant)
    for container in spec["containers"] + spec.get("initContainers", []):
        assert container["image"] == f"{IMAGES[variant]}:{__version__}"


@pytest.mark.parametrize("variant, gpus", [("cpu", None), ("gpu", 1), ("zip-init", None)])
def test_gpu_limits(variant, gpus):
    assert server(variant)["resources"]["limits"].get("nvidia.com/gpu") == gpus


def test_the_gpu_overlay_changes_only_the_image_gpu_and_tolerations():
    cpu, gpu = resource("cpu", "Deployment"), copy.deepcopy(resource("gpu", "Deployment"))
    container = gpu["spec"]["template"]["spec"]["containers"][0]
    container["image"] = server("cpu")["image"]
    del container["resources"]["limits"]["nvidia.com/gpu"]
    assert gpu["spec"]["template"]["spec"].pop("tolerations")
    assert gpu == cpu
    assert container_env(server("gpu")).get("CLIP_DEVICE", SETTINGS.device) == "auto"


@pytest.mark.parametrize("variant", VARIANTS)
def test_service_hpa_and_pdb_select_the_deployments_pods(variant):
    deployment, service = resource(variant, "Deployment"), resource(variant, "Service")
    hpa, pdb = resource(variant, "HorizontalPodAutoscaler"), resource(variant, "PodDisruptionBudget")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selects = deployment["spec"]["selector"]["matchLabels"]
    assert selects.items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == identity(deployment)


@pytest.mark.parametrize("variant", VARIANTS)
def test_service_port_reaches_the_named_container_port(variant):
    service = resource(variant, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(SETTINGS.port, "http")]


def test_scaling_and_disruption_budget_fit_together():
    deployment, pdb = resource("cpu", "Deployment"), resource("cpu", "PodDisruptionBudget")
    hpa = resource("cpu", "HorizontalPodAutoscaler")["spec"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    assert hpa["metrics"][0]["resource"]["target"]["type"] == "Utilization"
    assert deployment["spec"]["replicas"] == hpa["minReplicas"] <= hpa["maxReplicas"]
    # A drain can evict a pod only while more than minAvailable are up.
    assert pdb["spec"]["minAvailable"] == 1 < hpa["minReplicas"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


# --- The zip-init overlay's init container, run here on a stand-in model ----------------------------------------------


def test_the_init_container_unzips_a_model_the_server_can_use(model_dir, tmp_path):
    spec = pod_spec("zip-init")
    (init,) = spec["initContainers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in init["volumeMounts"]}
    # The zip comes read-only from a claim, the model goes to the emptyDir the server mounts at /model.
    zip_mount = next(m for m in mounts.values() if "persistentVolumeClaim" in volumes[m["name"]])
    model_mount = next(m for m in server("zip-init")["volumeMounts"] if m["mountPath"] == str(SETTINGS.model_dir))
    assert zip_mount["readOnly"] is True and volumes[zip_mount["name"]]["persistentVolumeClaim"]["readOnly"] is True
    assert mounts[str(SETTINGS.model_dir)]["name"] == model_mount["name"] and "readOnly" not in mounts["/model"]

    # The user's zip holds the clip-vit-large-patch14 folder.
    host = {path: tmp_path / path.strip("/") for path in mounts}
    host[zip_mount["mountPath"]].mkdir()
    with zipfile.ZipFile(host[zip_mount["mountPath"]] / MODEL_ZIP, "w") as archive:
        for file in model_dir.iterdir():
            archive.write(file, f"clip-vit-large-patch14/{file.name}")
    host[str(SETTINGS.model_dir)].mkdir()

    command = init["command"]
    assert command[0] == "python" and f"{zip_mount['mountPath']}/{MODEL_ZIP}" in command
    argv = [sys.executable, *command[1:]]
    for path, local in host.items():
        argv = [arg.replace(path, str(local), 1) if arg.startswith(path) else arg for arg in argv]
    subprocess.run(argv, check=True, timeout=120)
    assert resolve_model_dir(host[str(SETTINGS.model_dir)]) == host[str(SETTINGS.model_dir)] / "clip-vit-large-patch14"


# --- docker-compose.yml -----------------------------------------------------------------------------------------------

COMPOSE_SERVICES = {
    # service: (Dockerfile, image, host port, profiles)
    "clipsvc": ("Dockerfile", "clipsvc", SETTINGS.port, None),
    "clipsvc-gpu": ("Dockerfile.gpu", "clipsvc-gpu", 8082, ["gpu"]),
}


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_has_the_cpu_and_gpu_services():
    assert set(compose()["services"]) == set(COMPOSE_SERVICES)


@pytest.mark.parametrize("name, dockerfile, image, host_port, profiles",
                         [(name, *spec) for name, spec in COMPOSE_SERVICES.items()])
def test_compose_service_builds_and_publishes_the_image(name, dockerfile, image, host_port, profiles):
    service = compose()["services"][name]
    assert service["build"] == {"context": ".", "dockerfile": dockerfile}
    assert (ROOT / dockerfile).is_file()
    assert service["image"] == image
    assert service.get("profiles") == profiles
    assert service["ports"] == [f"{host_port}:{SETTINGS.port}"]
    assert service["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", COMPOSE_SERVICES)
def test_compose_mounts_the_host_model_read_only_at_the_model_dir(name):
    (volume,) = compose()["services"][name]["volumes"]
    assert volume.startswith("${CLIP_MODEL_HOST_DIR:-./models/clip-vit-large-patch14}:")
    source, target, mode = interpolate(volume, {}).split(":")
    assert (source, target, mode) == ("./models/clip-vit-large-patch14", str(SETTINGS.model_dir), "ro")
    assert interpolate(volume, {"CLIP_MODEL_HOST_DIR": "/srv/clip"}).split(":")[0] == "/srv/clip"


@pytest.mark.parametrize("name", COMPOSE_SERVICES)
@pytest.mark.parametrize("host, workers, threads", [({}, SETTINGS.workers, None),
                                                    ({"WEB_CONCURRENCY": "4", "CLIP_TORCH_THREADS": "3"}, 4, 3)])
def test_compose_environment_comes_from_the_host_with_the_code_defaults(name, host, workers, threads):
    environment = compose()["services"][name]["environment"]
    assert set(environment) == {"WEB_CONCURRENCY", "CLIP_TORCH_THREADS"} <= KNOWN_VARS
    settings = Settings.from_env({var: interpolate(str(value), host) for var, value in environment.items()})
    assert (settings.workers, settings.torch_threads) == (workers, threads)


@pytest.mark.parametrize("name", COMPOSE_SERVICES)
def test_compose_healthcheck_is_the_images(name):
    check = compose()["services"][name]["healthcheck"]
    (image_check,) = of(final(), "HEALTHCHECK")
    flags, rest = image_check.flags()
    assert check["test"] == ["CMD", *exec_form(rest.removeprefix("CMD ").strip())]
    assert "/readyz" in check["test"][-1]
    for key in ("interval", "timeout", "start_period", "retries"):
        image_value = flags[key.replace("_", "-")]
        assert str(check[key]) == image_value if key == "retries" else seconds(check[key]) == seconds(image_value)


@pytest.mark.parametrize("name", COMPOSE_SERVICES)
def test_compose_stop_grace_outlasts_gunicorns_graceful_timeout(name):
    assert seconds(compose()["services"][name]["stop_grace_period"]) > SETTINGS.graceful_timeout


def test_compose_gpu_service_reserves_one_nvidia_gpu():
    (device,) = compose()["services"]["clipsvc-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert "deploy" not in compose()["services"]["clipsvc"]


# --- Dockerfile.gpu ---------------------------------------------------------------------------------------------------


@cache
def gpu_stage() -> list:
    (stage,) = stages(parse_dockerfile(GPU_DOCKERFILE.read_text()))
    return stage


def torch_pin() -> str:
    (line,) = [line for line in requirement_lines() if line.startswith("torch==")]
    return line.removeprefix("torch==")


def test_gpu_hadolint_finds_nothing():
    assert_hadolint_clean(GPU_DOCKERFILE)


def test_gpu_base_image_ships_the_pinned_torch_with_cuda_12():
    base = gpu_stage()[0].args
    match = re.fullmatch(r"pytorch/pytorch:(?P<torch>[\d.]+)-cuda12\.\d+-cudnn9-runtime", base)
    assert match, f"{base}: expected pytorch/pytorch:<torch>-cuda12.x-cudnn9-runtime"
    assert match["torch"] == torch_pin(), "the base image's torch must be requirements.txt's"


def test_gpu_installs_every_requirement_but_torch_without_a_cache():
    (install,) = [i.args for i in of(gpu_stage(), "RUN") if "pip install" in i.args]
    pattern = re.search(r"grep -v '([^']+)' (\S+)", install)
    assert pattern and pattern[2].endswith("requirements.txt")
    removed = [line for line in REQUIREMENTS.read_text().splitlines() if re.search(pattern[1], line)]
    assert removed == [f"torch=={torch_pin()}"]
    assert "--no-cache-dir" in install.split()
    assert "torch.version.cuda is None" in install, "the build must fail if pip replaced the CUDA torch"
    assert "PIP_EXTRA_INDEX_URL" not in env_of(gpu_stage()), "the CPU index would swap torch for the CPU build"


def test_gpu_environment_is_the_cpu_images_but_path():
    cpu = {k: v for k, v in env_of(final()).items() if k != "PATH"}
    assert env_of(gpu_stage()) == cpu
    assert env_of(gpu_stage())["CLIP_DEVICE"] == "auto"


@pytest.mark.parametrize("field, var", sorted((field, var) for field, (var, _) in ENV_VARS.items()
                                                if var not in NOT_DEFAULTED))
def test_gpu_env_line_equals_the_code_default(field, var):
    env = env_of(gpu_stage())
    assert var in env, f"{var} is missing from Dockerfile.gpu's ENV"
    assert getattr(Settings.from_env({var: env[var]}), field) == getattr(SETTINGS, field)


@pytest.mark.parametrize("name, expected", [
    ("EXPOSE", [str(SETTINGS.port)]),
    ("VOLUME", [str(SETTINGS.model_dir)]),
    ("USER", ["10001:10001"]),
    ("WORKDIR", ["/app"]),
    ("ENTRYPOINT", []),
])
def test_gpu_instruction(name, expected):
    assert [i.args for i in of(gpu_stage(), name)] == expected


def test_gpu_healthcheck_and_cmd_are_the_cpu_images():
    assert [i.args for i in of(gpu_stage(), "HEALTHCHECK")] == [i.args for i in of(final(), "HEALTHCHECK")]
    cmds = of(gpu_stage(), "CMD")
    assert exec_form(cmds[-1].args) == GUNICORN_CMD
    assert of(gpu_stage(), "USER")[-1].line < cmds[-1].line


def test_gpu_copies_the_app_and_makes_the_cache_dir_writable():
    copies = [i.flags()[1].split() for i in of(gpu_stage(), "COPY")]
    sources = [s.strip("/").removeprefix("./") for words in copies for s in words[:-1]]
    assert set(APP_FILES) <= set(sources)
    assert [s for s in sources if dockerignored(s) or not (ROOT / s).exists()] == []
    cache_dir = env_of(gpu_stage())["CLIP_MODEL_CACHE_DIR"]
    assert any(cache_dir in i.args and "chown" in i.args for i in of(gpu_stage(), "RUN"))


# --- Makefile ---------------------------------------------------------------------------------------------------------

MAKE_TARGETS = {
    # target: what `make -n TARGET` must print
    "venv": ["python3 -m venv .venv", "pip install", "-r requirements-dev.txt"],
    "run": ["CLIP_MODEL_DIR=models/vit-l-14", "gunicorn -c gunicorn.conf.py wsgi:app"],
    "test": [],  # the README's test command, below
    "bench": ["python bench/perf.py --arch vit-b-32"],
    "standin": ["python -m clipsvc.standin models/vit-l-14 --arch vit-l-14"],
    "lint": ["ruff check . && hadolint Dockerfile Dockerfile.gpu"],
    "docker": ["docker build -t clipsvc ."],
    "docker-gpu": ["docker build -f Dockerfile.gpu -t clipsvc-gpu ."],
}


def make_dry_run(target: str) -> str:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    # A clean environment: the Makefile's `?=` defaults, not this shell's CLIP_MODEL_DIR or MAKEFLAGS.
    result = subprocess.run([make, "--no-print-directory", "-n", target], cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin"}, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


def readme_test_command() -> str:
    """`ruff check . && python -m pytest`: the README's test command after the venv and install steps."""
    command = re.search(r"^python3 -m venv .+pytest$", README.read_text(), flags=re.MULTILINE).group(0)
    return command.split("&& ", 3)[-1]


def test_every_target_is_defined_and_phony():
    text = MAKEFILE.read_text()
    defined = set(re.findall(r"^([A-Za-z0-9_-]+):(?!=)", text, flags=re.MULTILINE))
    phony = {name for line in re.findall(r"^\.PHONY:(.*)$", text, flags=re.MULTILINE) for name in line.split()}
    assert set(MAKE_TARGETS) <= defined
    assert set(MAKE_TARGETS) <= phony


@pytest.mark.parametrize("target, expected", MAKE_TARGETS.items())
def test_make_prints(target, expected):
    output = make_dry_run(target)
    for text in expected:
        assert text in output


def test_make_test_runs_the_readme_test_command_in_the_venv():
    output = make_dry_run("test").strip()
    assert output == f". .venv/bin/activate && {readme_test_command()}"


def test_make_standin_and_bench_name_real_architectures():
    assert "vit-l-14" in ARCHS and "vit-b-32" in ARCHS
    bench = (ROOT / "bench" / "perf.py").read_text()
    for flag in re.findall(r"--[a-z-]+", make_dry_run("bench")):
        assert f'"{flag}"' in bench, f"bench/perf.py has no {flag}"


def test_image_names_agree_across_makefile_compose_and_kubernetes():
    assert compose()["services"]["clipsvc"]["image"] in make_dry_run("docker").split()
    assert compose()["services"]["clipsvc-gpu"]["image"] in make_dry_run("docker-gpu").split()
    assert server("cpu")["image"].split(":")[0] == compose()["services"]["clipsvc"]["image"]
    assert server("gpu")["image"].split(":")[0] == compose()["services"]["clipsvc-gpu"]["image"]


# --- docs/deployment.md -----------------------------------------------------------------------------------------------


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
