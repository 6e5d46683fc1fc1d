"""The Kubernetes manifests: rendered by kustomize, valid against the Kubernetes schemas,
consistent with each other, with the image and with the settings the gateway knows.

Overlays are rendered with `kubectl kustomize` (the kustomize built into kubectl, on the
machine image) and every object is validated offline with `kubernetes-validate`, which
ships the Kubernetes JSON schemas, in strict mode (unknown fields are errors).
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import kubernetes_validate
import pytest
import yaml

from app.api.draining import ABORT_WAIT_SECONDS
from tests.support.gateway import gateway_with_test_backend
from tests.test_deployment import SETTING_NAMES, dockerfile, env_of, settings_from

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("gpu", "cpu-demo")
# The oldest Kubernetes still supported upstream when this was written, and the newest known.
K8S_VERSIONS = ("1.31.0", "1.37.0")
UVICORN_SHUTDOWN_SECONDS = 5  # app/__main__.py: timeout_graceful_shutdown
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl (with its built-in kustomize) is not installed"
)


@functools.cache
def render(path: Path) -> tuple[dict[str, Any], ...]:
    assert KUBECTL is not None
    result = subprocess.run(
        [KUBECTL, "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def overlay(name: str) -> list[dict[str, Any]]:
    return copy.deepcopy(list(render(K8S / "overlays" / name)))


def schema_errors(doc: dict[str, Any], version: str = K8S_VERSIONS[-1]) -> list[str]:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}"]
    return []


def objects(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name_part: str) -> dict[str, Any]:
    (found,) = [d for d in objects(docs, kind) if name_part in d["metadata"]["name"]]
    return found


def gateway(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "Deployment", "gateway")


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    return main


def gateway_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """What the gateway container's environment holds, as the kubelet would build it."""
    main = container(gateway(docs))
    env: dict[str, str] = {}
    for source in main.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(one(docs, "ConfigMap", name)["data"])
    for item in main.get("env", []):
        env[item["name"]] = item.get("value", "<from a secret>")
    return env


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# --- rendering and schemas ---------------------------------------------------------------
@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_overlays_render_and_follow_the_kubernetes_schemas(name: str, version: str) -> None:
    docs = overlay(name)
    assert docs
    assert [e for d in docs for e in schema_errors(d, version)] == []


def _breakages() -> list[Any]:
    def put(kind: str, path: list[str | int], value: Any) -> Any:
        def apply(docs: list[dict[str, Any]]) -> dict[str, Any]:
            doc = next(d for d in docs if d["kind"] == kind)
            node: Any = doc
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value
            return doc

        return apply

    pod = ["spec", "template", "spec"]
    cases = [
        ("unknown container field", "Deployment", [*pod, "containers", 0, "port"], 8000),
        ("replicas as text", "Deployment", ["spec", "replicas"], "two"),
        ("probe without handler", "Deployment", [*pod, "containers", 0, "readinessProbe"],
         {"httpGet": {"path": "/ready"}}),
        ("service port as list", "Service", ["spec", "ports", 0, "port"], [8000]),
        ("hpa target without name", "HorizontalPodAutoscaler", ["spec", "scaleTargetRef"],
         {"kind": "Deployment"}),
    ]  # fmt: skip
    return [pytest.param(put(kind, path, value), id=what) for what, kind, path, value in cases]


@needs_kubectl
@pytest.mark.parametrize("breaks", _breakages())
def test_the_validator_rejects_broken_objects(breaks: Any) -> None:
    docs = overlay("gpu")
    broken = breaks(docs)
    assert schema_errors(broken)


# --- the gateway Deployment ----------------------------------------------------------------
@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_gateway_settings_are_known_and_valid(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = overlay(name)
    env = gateway_env(docs)
    assert set(env) <= SETTING_NAMES, set(env) - SETTING_NAMES
    secret_backed = {k for k, v in env.items() if v == "<from a secret>"}
    assert secret_backed == {"API_KEYS", "VOICE_STORE_URL"}
    settings = settings_from({k: v for k, v in env.items() if k not in secret_backed}, monkeypatch)
    main = container(gateway(docs))
    assert [p["containerPort"] for p in main["ports"]] == [settings.port]
    assert settings.host == "0.0.0.0"


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_gateway_runs_non_root_on_a_read_only_root_with_its_volumes(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = overlay(name)
    pod = gateway(docs)["spec"]["template"]["spec"]
    main = container(gateway(docs))
    useradd = next(i.args for i in dockerfile()[-1] if i.keyword == "RUN" and "useradd" in i.args)
    uid = int(re.search(r"--uid (\d+)", useradd).group(1))  # type: ignore[union-attr]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    env = {k: v for k, v in gateway_env(docs).items() if not v.startswith("<")}
    settings = settings_from(env, monkeypatch)
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    volumes = {v["name"] for v in pod["volumes"]}
    # Everything the gateway writes is a volume: data, caches (HF_HOME too), temp files.
    hf_home = env_of(dockerfile()[-1])["HF_HOME"]
    for path in (str(settings.data_dir), str(settings.cache_dir), "/tmp"):
        assert path in mounts and mounts[path] in volumes, path
    assert hf_home.startswith(str(settings.cache_dir) + "/")


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_probes_and_shutdown_grace_match_the_gateway(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = overlay(name)
    deployment = gateway(docs)
    main = container(deployment)
    env = {k: v for k, v in gateway_env(docs).items() if not v.startswith("<")}
    settings = settings_from(env, monkeypatch)
    port_names = {p["name"] for p in main["ports"]}
    probes = {kind: main[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe",
                                                       "readinessProbe")}  # fmt: skip
    assert probes["readinessProbe"]["path"] == "/ready"
    assert probes["livenessProbe"]["path"] == "/live"
    assert all(p["port"] in port_names for p in probes.values())
    assert main["readinessProbe"]["timeoutSeconds"] > settings.backend_connect_timeout
    # Kubernetes kills the pod after the grace period: it must cover the preStop pause,
    # the drain of live streams, the abort of the rest and uvicorn's own shutdown.
    pause = main["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    needed = (
        float(pause[1])
        + settings.shutdown_grace_seconds
        + ABORT_WAIT_SECONDS
        + UVICORN_SHUTDOWN_SECONDS
    )
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= needed
    # A rolling update never takes away capacity before the new pod is ready.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@needs_kubectl
@pytest.mark.parametrize("name", OVERLAYS)
def test_service_autoscaler_and_budget_point_at_the_gateway(name: str) -> None:
    docs = overlay(name)
    deployment = gateway(docs)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = one(docs, "Service", "gateway")
    assert matches(service["spec"]["selector"], labels)
    assert service["spec"]["ports"][0]["targetPort"] in {
        p["name"] for p in container(deployment)["ports"]
    }
    hpa = one(docs, "HorizontalPodAutoscaler", "gateway")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = one(docs, "PodDisruptionBudget", "gateway")
    assert matches(pdb["spec"]["selector"]["matchLabels"], labels)
    assert "minAvailable" not in pdb["spec"]  # with one replica it would block every drain


# --- overlays ----------------------------------------------------------------------------
def gpus(deployment: dict[str, Any]) -> int:
    limits = container(deployment)["resources"].get("limits", {})
    return int(limits.get("nvidia.com/gpu", 0))


@needs_kubectl
def test_gpu_overlay_wires_the_gateway_to_each_vllm_replica(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = overlay("gpu")
    config = yaml.safe_load((ROOT / "vllm.yaml").read_text("utf-8"))
    env = {k: v for k, v in gateway_env(docs).items() if not v.startswith("<")}
    settings = settings_from(env, monkeypatch)
    vllm_deployments = [d for d in objects(docs, "Deployment") if d is not gateway(docs)]
    services = {s["metadata"]["name"]: s for s in objects(docs, "Service")}
    assert len(vllm_deployments) == 2
    assert settings.device == "cuda" and settings.model_name == config["served-model-name"]
    assert container(gateway(docs))["image"].endswith(":cuda")
    assert gpus(gateway(docs)) == 1
    # TTS_API lists every vLLM Service, on the port vllm.yaml serves and the Service exposes.
    targets = [(u.hostname, u.port) for u in map(urlsplit, settings.backend_urls)]
    assert sorted(targets) == sorted(
        (name, s["spec"]["ports"][0]["port"]) for name, s in services.items() if "vllm" in name
    )
    for deployment in vllm_deployments:
        name = deployment["metadata"]["name"]
        service = services[name]
        pod = deployment["spec"]["template"]
        assert matches(service["spec"]["selector"], pod["metadata"]["labels"])
        # The Service selects this replica's pods only.
        others = [d for d in vllm_deployments if d is not deployment]
        assert not any(
            matches(service["spec"]["selector"], o["spec"]["template"]["metadata"]["labels"])
            for o in others
        )
        main = container(deployment)
        assert {p["containerPort"] for p in main["ports"]} == {config["port"]}
        assert gpus(deployment) == 1
        # vLLM reads its settings from the mounted ConfigMap, which holds vllm.yaml as is.
        path = Path(main["args"][main["args"].index("--config") + 1])
        mount = next(m for m in main["volumeMounts"] if m["mountPath"] == str(path.parent))
        volume = next(v for v in pod["spec"]["volumes"] if v["name"] == mount["name"])
        config_map = one(docs, "ConfigMap", volume["configMap"]["name"])
        assert config_map["data"][path.name] == (ROOT / "vllm.yaml").read_text("utf-8")


def test_the_vllm_config_copy_equals_the_repository_file() -> None:
    # kustomize reads nothing outside its folder, so deploy/k8s/vllm holds a copy.
    assert (K8S / "vllm" / "vllm.yaml").read_bytes() == (ROOT / "vllm.yaml").read_bytes()


@needs_kubectl
def test_cpu_demo_overlay_serves_the_demo_without_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = overlay("cpu-demo")
    env = {k: v for k, v in gateway_env(docs).items() if not v.startswith("<")}
    settings = settings_from(env, monkeypatch)
    assert settings.tts_demo and settings.device == "cpu" and not settings.backend_urls
    assert [d["metadata"]["name"] for d in objects(docs, "Deployment")] == ["demo-gateway"]
    assert gpus(gateway(docs)) == 0
    assert container(gateway(docs))["image"].endswith(":cpu")
    assert all(d["metadata"]["name"].startswith("demo-") for d in docs)


# --- the probes against a live gateway ------------------------------------------------------
@needs_kubectl
def test_the_probe_paths_answer_on_a_live_gateway(tmp_path: Path) -> None:
    main = container(gateway(overlay("gpu")))
    paths = {main[kind]["httpGet"]["path"] for kind in ("startupProbe", "livenessProbe",
                                                        "readinessProbe")}  # fmt: skip
    with gateway_with_test_backend(tmp_path) as url:
        assert {path: httpx.get(url + path, timeout=10).status_code for path in paths} == {
            path: 200 for path in paths
        }


def test_kubernetes_examples_in_the_docs_follow_the_schemas() -> None:
    text = (ROOT / "docs" / "deployment.md").read_text("utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    examples = [b for b in blocks if isinstance(b, dict) and "apiVersion" in b and "kind" in b]
    assert examples
    for example in examples:
        assert schema_errors(example) == []
