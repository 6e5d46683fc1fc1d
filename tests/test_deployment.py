"""The deployment files agree with the Compose Specification, with each other and with the app.

Compose files are checked against the official compose-spec JSON schema (the copy that
check-jsonschema ships and keeps current) with `jsonschema`; the Dockerfile's and the compose
files' health checks are run for real against live HTTP servers on loopback.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import importlib.metadata
import importlib.resources
import json
import re
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from app.config import Settings
from tests.support.gateway import gateway_with_test_backend
from tests.support.vllm_server import VLLMServer

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = ("docker-compose.yaml", "docker-compose-cpu.yaml")
SETTING_NAMES = frozenset(name.upper() for name in Settings.model_fields)
# Read by huggingface_hub, the NVIDIA container runtime and vLLM itself, not by the gateway.
VLLM_ENV_PREFIXES = ("HF_", "NVIDIA_", "VLLM_")
BASE_IMAGE = "python:3.11-slim"
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


# --- loading ---------------------------------------------------------------------------
@functools.cache
def compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text("utf-8"))
    return schema


def schema_errors(document: object) -> list[str]:
    """One `path: message` line per violation of the Compose Specification."""
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.path)))
    return [f"{'.'.join(map(str, e.path)) or '<root>'}: {e.message}" for e in errors]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text("utf-8"))


def compose(name: str) -> dict[str, Any]:
    document: dict[str, Any] = load_yaml(ROOT / name)
    return document


def interpolate(value: str) -> str:
    """Compose's `${VAR}` / `${VAR:-default}` with no variable set: the defaults."""
    return _VARIABLE.sub(lambda m: m.group(2) or "", value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def is_gateway(service: dict[str, Any]) -> bool:
    build = service.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    return context is not None and (ROOT / context).resolve() == ROOT


def gateways(document: dict[str, Any]) -> list[dict[str, Any]]:
    found = [s for s in document["services"].values() if is_gateway(s)]
    assert len(found) == 1, "exactly one service builds the gateway from this repository"
    return found


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile_stages(text: str) -> list[list[Instruction]]:
    """Instructions per build stage (continuations joined, comments dropped); [0]: pre-FROM."""
    stages: list[list[Instruction]] = [[]]
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, args = pending.strip().partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    assert not pending, "Dockerfile ends inside a line continuation"
    return stages


def dockerfile() -> list[list[Instruction]]:
    return dockerfile_stages((ROOT / "Dockerfile").read_text("utf-8"))


def arg_defaults(instructions: list[Instruction]) -> dict[str, str]:
    pairs = (i.args.split("=", 1) for i in instructions if i.keyword == "ARG" and "=" in i.args)
    return {name: value for name, value in pairs}


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for i in instructions:
        if i.keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(i.args))
    return env


def exec_form(instruction: Instruction) -> list[str]:
    args = instruction.args
    if instruction.keyword == "HEALTHCHECK":
        args = args.split(" CMD ", 1)[1]
    form = json.loads(args)
    assert isinstance(form, list), f"{instruction.keyword} must use the exec (JSON) form"
    return form


def run_probe(command: list[str], env: dict[str, str] | None = None) -> int:
    """Exit status of a health check command; the image's `python` is this interpreter."""
    argv = [sys.executable if command[0] in ("python", "python3") else command[0], *command[1:]]
    return subprocess.run(argv, capture_output=True, timeout=30, check=False, env=env).returncode


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- compose files -----------------------------------------------------------------------
@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_compose_file_follows_the_compose_specification(name: str) -> None:
    assert schema_errors(compose(name)) == []


def _breakages() -> list[Any]:
    """Broken variants of docker-compose.yaml, each with the error it must produce."""

    def put(path: list[str], value: Any) -> Any:
        def apply(document: dict[str, Any]) -> None:
            node = document
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value

        return apply

    gateway, vllm = ["services", "gateway"], ["services", "vllm"]
    device = [*vllm, "deploy", "resources", "reservations", "devices"]
    cases = [
        ("unknown service key", [*gateway, "port"], ["8000:8000"], r"services\.gateway: .*'port'"),
        ("device without capabilities", device, [{"driver": "nvidia"}], r".*devices\.0: "),
        ("env_file without path", [*gateway, "env_file"], [{"required": False}], r".*env_file: "),
        ("interval as a number", [*vllm, "healthcheck", "interval"], 15, r".*interval: "),
        ("command as a mapping", [*vllm, "command"], {"config": "x"}, r"services\.vllm\.command: "),
        ("services as a list", ["services"], ["gateway"], r"services: "),
    ]
    return [pytest.param(put(path, value), error, id=what) for what, path, value, error in cases]


@pytest.mark.parametrize(("breaks", "expected"), _breakages())
def test_validator_rejects_broken_compose_files(breaks: Any, expected: str) -> None:
    document = copy.deepcopy(compose("docker-compose.yaml"))
    breaks(document)
    errors = schema_errors(document)
    assert any(re.match(expected, error) for error in errors), errors


def test_a_broken_copy_on_disk_is_rejected(tmp_path: Path) -> None:
    text = (ROOT / "docker-compose.yaml").read_text("utf-8")
    assert text.count("    restart: unless-stopped") >= 1
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text(text.replace("    restart: unless-stopped", "    restarts: unless-stopped"))
    assert schema_errors(load_yaml(broken))


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_service_environment_names_are_known(name: str) -> None:
    for service_name, service in compose(name)["services"].items():
        names = set(environment(service))
        if is_gateway(service):
            unknown = names - SETTING_NAMES
        else:
            assert str(service["image"]).startswith("vllm/vllm-openai:"), service_name
            unknown = {n for n in names if not n.startswith(VLLM_ENV_PREFIXES)}
        assert not unknown, f"{name}: {service_name} sets variables nothing reads: {unknown}"


@pytest.mark.parametrize("name", COMPOSE_FILES)
def test_gateway_settings_are_valid_and_published(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    (gateway,) = gateways(compose(name))
    image_env = {k: v for k, v in env_of(dockerfile()[-1]).items() if k in SETTING_NAMES}
    settings = settings_from({**image_env, **environment(gateway)}, monkeypatch)
    published = [str(p).rsplit(":", 1) for p in gateway["ports"]]
    assert [container for _, container in published] == [str(settings.port)]
    expose = [i.args for i in dockerfile()[-1] if i.keyword == "EXPOSE"]
    assert expose == [str(settings.port)]
    assert gateway["restart"] == "unless-stopped"
    assert gateway["env_file"] == [{"path": ".env", "required": False}]
    mounts = {str(v).split(":")[1] for v in gateway["volumes"]}
    assert {str(settings.data_dir), str(settings.cache_dir)} <= mounts
    # Time for the SIGTERM drain, the abort of what is left and uvicorn's own shutdown.
    stop = gateway["stop_grace_period"]
    assert stop.endswith("s") and float(stop[:-1]) >= settings.shutdown_grace_seconds + 10


def test_cpu_compose_serves_the_offline_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    (gateway,) = gateways(compose("docker-compose-cpu.yaml"))
    settings = settings_from(environment(gateway), monkeypatch)
    assert settings.tts_demo
    assert settings.device == "cpu"
    assert gateway["build"]["args"]["TORCH_VARIANT"] == "cpu"
    assert "deploy" not in gateway


def gpu_reservations(service: dict[str, Any]) -> list[dict[str, Any]]:
    devices: list[dict[str, Any]] = service["deploy"]["resources"]["reservations"]["devices"]
    return [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d["capabilities"]]


def test_gpu_compose_wires_the_gateway_to_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    document = compose("docker-compose.yaml")
    vllm = document["services"]["vllm"]
    (gateway,) = gateways(document)
    config = load_yaml(ROOT / "vllm.yaml")
    settings = settings_from(environment(gateway), monkeypatch)

    # The gateway reaches the vllm service on the port vllm.yaml makes it listen on.
    assert [(u.hostname, u.port) for u in map(urlsplit, settings.backend_urls)] == [
        ("vllm", config["port"])
    ]
    assert settings.model_name == config["served-model-name"]
    assert settings.device == "cuda"
    assert gateway["build"]["args"]["TORCH_VARIANT"] == "cuda"
    assert gateway["depends_on"]["vllm"]["condition"] == "service_healthy"

    # vllm reads the mounted vllm.yaml through --config.
    command = vllm["command"]
    config_path = command[command.index("--config") + 1]
    assert f"./vllm.yaml:{config_path}:ro" in vllm["volumes"]
    assert environment(vllm) == {"HF_TOKEN": ""}
    assert any(str(v).endswith(":/root/.cache/huggingface") for v in vllm["volumes"])
    for service in (vllm, gateway):
        assert [d["count"] for d in gpu_reservations(service)] == [1]


def test_vllm_healthcheck_probes_vllm_health_endpoint() -> None:
    vllm = compose("docker-compose.yaml")["services"]["vllm"]
    kind, *probe = vllm["healthcheck"]["test"]
    assert kind == "CMD"
    port = load_yaml(ROOT / "vllm.yaml")["port"]
    target = f"127.0.0.1:{port}/"
    assert sum(target in arg for arg in probe) == 1
    with VLLMServer() as server:
        live = [arg.replace(target, f"127.0.0.1:{server.port}/") for arg in probe]
        assert run_probe(live) == 0
        assert server.requests[-1].path == "/health"
        assert run_probe([a.replace("/health", "/missing") for a in live]) != 0


# --- vllm.yaml ---------------------------------------------------------------------------
def test_vllm_config_matches_the_gateway_defaults() -> None:
    config = load_yaml(ROOT / "vllm.yaml")
    defaults = Settings.model_fields
    assert config["max-model-len"] == defaults["max_model_len"].default
    assert config["served-model-name"] == defaults["model_name"].default
    assert config["model"] == defaults["tts_model"].default
    assert config["dtype"] == "bfloat16"
    assert config["enable-prefix-caching"] is True
    assert 0 < config["gpu-memory-utilization"] < 1
    assert config["max-num-seqs"] >= 1
    # vLLM turns each key into `--key`: a key with underscores or dashes in front breaks that.
    assert all(re.fullmatch(r"[a-z][a-z0-9-]*", key) for key in config)


# --- Dockerfile --------------------------------------------------------------------------
def test_dockerfile_builds_on_python_slim_with_torch_first() -> None:
    preamble, *stages = dockerfile()
    names: set[str] = set()
    for stage in stages:
        image, _, alias = stage[0].args.partition(" AS ")
        resolved = _VARIABLE.sub(lambda m: arg_defaults(preamble)[m.group(1)], image)
        assert resolved in names or resolved == BASE_IMAGE
        names.add(alias)
    build = next(s for s in stages if any("pip install ." in i.args for i in s))
    runs = [i.args for i in build if i.keyword == "RUN"]
    torch_step = next(n for n, run in enumerate(runs) if "torch==" in run)
    package_step = next(n for n, run in enumerate(runs) if "pip install ." in run)
    assert torch_step < package_step
    args = arg_defaults(build)
    assert args["TORCH_VARIANT"] == "cpu"
    # The image pins the torch the test suite runs on.
    assert args["TORCH_VERSION"] == importlib.metadata.version("torch").split("+")[0]


def test_dockerfile_runs_the_gateway_as_a_non_root_user() -> None:
    final = dockerfile()[-1]
    (cmd,) = [i for i in final if i.keyword == "CMD"]
    assert exec_form(cmd) == ["python", "-m", "app"]
    users = [i.args for i in final if i.keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    env = env_of(final)
    (volumes,) = [json.loads(i.args) for i in final if i.keyword == "VOLUME"]
    assert {env["DATA_DIR"], env["CACHE_DIR"]} <= set(volumes)
    assert {name for name in env if not name.startswith(("PATH", "PYTHON", "HF_"))} <= (
        SETTING_NAMES
    )


def test_dockerfile_healthcheck_probes_the_real_gateway(tmp_path: Path) -> None:
    (check,) = [i for i in dockerfile()[-1] if i.keyword == "HEALTHCHECK"]
    probe = exec_form(check)
    assert probe[0] == "python"
    with gateway_with_test_backend(tmp_path) as url:
        assert run_probe(probe, env={"PORT": str(urlsplit(url).port)}) == 0
    assert run_probe(probe, env={"PORT": str(closed_port())}) != 0


def dockerignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics: root-relative patterns, `*` within one path segment,
    a leading `**/` for any depth, a matched directory takes its contents, last match wins."""

    def match(candidate: list[str], pattern: list[str]) -> bool:
        return len(candidate) == len(pattern) and all(
            fnmatch.fnmatchcase(part, glob) for part, glob in zip(candidate, pattern, strict=True)
        )

    parts = path.split("/")
    verdict = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.removeprefix("!").strip("/")
        anywhere = pattern.startswith("**/")
        globs = pattern.removeprefix("**/").split("/")
        starts = range(len(parts)) if anywhere else range(1)
        if any(
            match(parts[start:end], globs)
            for start in starts
            for end in range(start + 1, len(parts) + 1)
        ):
            verdict = not negate
    return verdict


def test_dockerignore_keeps_the_build_inputs_and_drops_local_state() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text("utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    copied = [
        source
        for stage in dockerfile()
        for i in stage
        if i.keyword == "COPY" and not i.args.startswith("--from")
        for source in i.args.split()[:-1]
    ]
    assert copied
    assert [path for path in copied if dockerignored(path, patterns)] == []
    assert not dockerignored("app/main.py", patterns)
    for local in (".venv/bin/python", ".git/HEAD", ".env", "app/__pycache__/main.pyc", "tests"):
        assert dockerignored(local, patterns), local


# --- docs --------------------------------------------------------------------------------
def test_compose_examples_in_the_docs_follow_the_specification() -> None:
    text = (ROOT / "docs" / "deployment.md").read_text("utf-8")
    blocks = [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]
    examples = [b for b in blocks if isinstance(b, dict) and "services" in b]
    assert examples
    for example in examples:
        assert schema_errors(example) == []
