"""The Kubernetes Deployment, Service, HPA and PDB of each variant (deploy/k8s, rendered by `kubectl kustomize`)
agree with the code: probes, ports, budgets, resources, environment, mounts, users and images; and the
zip-init overlay's init container, run here on a stand-in model, unzips a model the server can use."""

from __future__ import annotations

import copy
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from clipsvc import __version__
from clipsvc.encoder.modeldir import resolve_model_dir
from clipsvc.settings import ENV_VARS, Settings, SettingsError
from clipsvc.web.app import create_app
from testkit.deploy import K8S, MODEL_ZIP, VARIANTS, app_container, container_env, pod_spec, quantity, resource
from testkit.dockerfile import env_of, final, of
from testkit.kustomize import build, identity

SETTINGS = Settings()
KNOWN_VARS = {var for var, _ in ENV_VARS.values()}
IMAGES = {"cpu": "clipsvc", "gpu": "clipsvc-gpu", "zip-init": "clipsvc"}
PROBES = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
# ViT-L/14 in fp32, per gunicorn worker (each loads its own copy).
MEMORY_PER_WORKER = 2 * 1024**3


@pytest.fixture(scope="module")
def get_routes() -> set[str]:
    app = create_app(Settings(device="cpu", workers=1, torch_threads=1))
    return {rule.rule for rule in app.url_map.iter_rules() if "GET" in rule.methods}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("probe, path", PROBES.items())
def test_probes_ask_existing_routes_on_the_http_port(variant, probe, path, get_routes):
    check = app_container(variant)[probe]["httpGet"]
    assert check["path"] == path
    assert check["path"] in get_routes
    assert check["port"] == "http"


def test_readiness_waits_for_the_model_and_liveness_does_not():
    client = create_app(Settings(device="cpu", workers=1, torch_threads=1)).test_client()
    assert client.get(PROBES["livenessProbe"]).status_code == 200
    assert client.get(PROBES["readinessProbe"]).status_code == 503


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_container_port_is_the_code_default(variant):
    ports = app_container(variant)["ports"]
    assert [(p["name"], p["containerPort"]) for p in ports] == [("http", SETTINGS.port)]
    assert Settings.from_env(container_env(app_container(variant))).port == SETTINGS.port


def _budget(probe: dict) -> int:
    return probe.get("periodSeconds", 10) * probe.get("failureThreshold", 3)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_startup_probe_allows_a_slow_model_load(variant):
    assert _budget(app_container(variant)["startupProbe"]) >= 300


@pytest.mark.parametrize("variant", VARIANTS)
def test_liveness_outlasts_gunicorns_own_worker_timeout(variant):
    # Probes wait behind long requests in sync workers; gunicorn replaces a stuck worker itself.
    assert _budget(app_container(variant)["livenessProbe"]) > SETTINGS.worker_timeout


def _pre_stop_seconds(container: dict) -> int:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    return int(command[1]) if command[:1] == ["sleep"] else 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_termination_grace_outlasts_gunicorns_graceful_timeout(variant):
    grace = pod_spec(variant)["terminationGracePeriodSeconds"]
    assert grace > SETTINGS.graceful_timeout + _pre_stop_seconds(app_container(variant))
    assert grace >= 70


@pytest.mark.parametrize("variant", VARIANTS)
def test_resources_follow_workers_times_threads(variant):
    container = app_container(variant)
    settings = Settings.from_env(container_env(container))
    cores = settings.workers * settings.threads_per_worker
    requests, limits = container["resources"]["requests"], container["resources"]["limits"]
    assert container_env(container).get("CLIP_TORCH_THREADS"), "in a pod the default would count the node's cores"
    assert quantity(requests["cpu"]) == cores == quantity(limits["cpu"])
    assert quantity(requests["memory"]) >= settings.workers * MEMORY_PER_WORKER
    assert quantity(limits["memory"]) >= quantity(requests["memory"])


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_environment_is_a_valid_configuration(variant):
    env = container_env(app_container(variant))
    assert set(env) <= KNOWN_VARS, "typo, or a setting clipsvc/settings.py does not read"
    Settings.from_env(env)


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_model_is_mounted_read_only_where_the_code_looks(variant):
    container = app_container(variant)
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
    container = app_container(variant)
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
    assert app_container(variant)["resources"]["limits"].get("nvidia.com/gpu") == gpus


def test_the_gpu_overlay_changes_only_the_image_gpu_and_tolerations():
    cpu, gpu = resource("cpu", "Deployment"), copy.deepcopy(resource("gpu", "Deployment"))
    container = gpu["spec"]["template"]["spec"]["containers"][0]
    container["image"] = app_container("cpu")["image"]
    del container["resources"]["limits"]["nvidia.com/gpu"]
    assert gpu["spec"]["template"]["spec"].pop("tolerations")
    assert gpu == cpu
    assert container_env(app_container("gpu")).get("CLIP_DEVICE", SETTINGS.device) == "auto"


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
    model_mount = next(m for m in app_container("zip-init")["volumeMounts"]
                       if m["mountPath"] == str(SETTINGS.model_dir))
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



# --- The api-keys overlay: keys from a Secret mounted as the file CLIP_API_KEYS_FILE names --------------------------

API_KEYS = K8S / "api-keys"


def _api_keys_build() -> dict[str, dict]:
    return {resource["kind"]: resource for resource in build(API_KEYS)}


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_variants_need_no_key(variant):
    env = container_env(app_container(variant))
    assert not {"CLIP_API_KEYS", "CLIP_API_KEYS_FILE"} & set(env)
    assert Settings.from_env(env).api_keys_from_file == ()


def test_the_api_keys_overlay_mounts_the_secret_where_the_variable_points():
    built = _api_keys_build()
    assert set(built) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret"}
    spec = built["Deployment"]["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == "clipsvc"]
    key_file = Path(container_env(container)["CLIP_API_KEYS_FILE"])
    (mount,) = [m for m in container["volumeMounts"] if key_file.is_relative_to(m["mountPath"])]
    assert mount["readOnly"] is True and "subPath" not in mount  # a directory mount: the kubelet refreshes it
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    secret = built["Secret"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert volume["secret"]["defaultMode"] == 0o440 and spec["securityContext"]["fsGroup"] == 10001
    assert key_file.relative_to(mount["mountPath"]).as_posix() in secret["stringData"]


def test_the_api_keys_overlay_changes_only_the_key_file():
    cpu, keyed = resource("cpu", "Deployment"), copy.deepcopy(_api_keys_build()["Deployment"])
    spec = keyed["spec"]["template"]["spec"]
    container = spec["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != "CLIP_API_KEYS_FILE"]
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "api-keys"]
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "api-keys"]
    assert keyed == cpu


def test_the_shipped_secret_holds_no_key_so_the_pods_refuse_to_start(tmp_path):
    """As shipped the Secret's file is comments only: the service stops at start-up instead of running with a key
    everyone could read here; with a real key in it, that key is the one accepted."""
    (content,) = _api_keys_build()["Secret"]["stringData"].values()
    path = tmp_path / "api-keys"
    path.write_text(content)
    with pytest.raises(SettingsError, match="CLIP_API_KEYS_FILE is invalid: it holds no key"):
        Settings.from_env({"CLIP_API_KEYS_FILE": str(path)})
    path.write_text(content + "an-operators-key-0123456789\n")
    assert Settings.from_env({"CLIP_API_KEYS_FILE": str(path)}).api_keys_from_file == ("an-operators-key-0123456789",)
