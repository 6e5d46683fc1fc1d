"""stress-test.yaml and the Dockerfile's `stress` target: valid Compose, wired to the gateway
service of both compose files, and its command, with Compose's defaults or with settings from
.env, is one the tool accepts and runs for real against a live gateway."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from stress_test.options import build_parser
from tests.api.conftest import gateway_settings
from tests.stress_test.test_cli import saved, stress
from tests.support.gateway import running_gateway
from tests.support.vllm_server import VLLMServer
from tests.test_deployment import (
    ROOT,
    compose,
    dockerfile,
    env_of,
    exec_form,
    gateways,
    schema_errors,
)

STRESS_FILE = "stress-test.yaml"
GATEWAY_FILES = ("docker-compose.yaml", "docker-compose-cpu.yaml")
_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}` / `${VAR:-default}` (an empty value takes the default too)."""
    return _VARIABLE.sub(lambda m: env.get(m.group(1)) or m.group(2) or "", value)


def stress_service() -> dict[str, Any]:
    service: dict[str, Any] = compose(STRESS_FILE)["services"]["stress-test"]
    return service


def command(env: dict[str, str] | None = None) -> list[str]:
    return [interpolate(str(arg), env or {}) for arg in stress_service()["command"]]


def stage(name: str) -> list[Any]:
    (found,) = [s for s in dockerfile()[1:] if s[0].args.endswith(f" AS {name}")]
    return found


def test_stress_file_follows_the_compose_specification() -> None:
    assert schema_errors(compose(STRESS_FILE)) == []


def test_it_builds_the_stress_target_with_the_tool_and_its_extra() -> None:
    build = stress_service()["build"]
    assert (ROOT / build["context"]).resolve() == ROOT
    instructions = stage(build["target"])
    assert instructions[0].args.startswith("build ")  # the gateway's build stage
    copies = [i.args.split() for i in instructions if i.keyword == "COPY"]
    assert ["stress_test", "./stress_test"] in copies
    assert any('pip install ".[stress]"' in i.args for i in instructions if i.keyword == "RUN")
    (entry,) = [i for i in instructions if i.keyword == "ENTRYPOINT"]
    assert exec_form(entry) == ["python", "-m", "stress_test"]
    # The gateway's image is still the last stage, so a plain `docker build .` is the gateway.
    (cmd,) = [i for i in dockerfile()[-1] if i.keyword == "CMD"]
    assert exec_form(cmd) == ["python", "-m", "app"]


@pytest.mark.parametrize("gateway_file", GATEWAY_FILES)
def test_it_reaches_the_gateway_service_on_that_files_network(
    gateway_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    document = compose(gateway_file)
    (gateway,) = gateways(document)
    (gateway_name,) = [name for name, s in document["services"].items() if s is gateway]
    network = f"{document['name']}_default"
    env = {"GATEWAY_NETWORK": network} if gateway_file != "docker-compose.yaml" else {}
    (attached,) = stress_service()["networks"]
    declared = compose(STRESS_FILE)["networks"][attached]
    assert declared["external"] is True
    assert interpolate(declared["name"], env) == network
    url = urlsplit(build_parser().parse_args(command()).url)
    port = int(env_of(dockerfile()[-1])["PORT"])
    assert (url.hostname, url.port) == (gateway_name, port)
    published = [str(p).rsplit(":", 1)[1] for p in gateway["ports"]]
    assert published == [str(port)]


def test_results_land_in_a_mounted_folder() -> None:
    args = build_parser().parse_args(command())
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in stress_service()["volumes"]}
    assert str(args.save) in mounts
    assert mounts[str(args.save)].startswith("./")
    local = mounts[str(args.save)].removeprefix("./")
    ignored = (ROOT / ".gitignore").read_text("utf-8").splitlines()
    assert f"/{local}/" in ignored


def test_defaults_are_the_documented_burst() -> None:
    args = build_parser().parse_args(command())
    assert args.mode == "burst"
    assert (args.requests, args.concurrency, args.warmup) == (50, 50, 3)
    assert (args.format, args.stream, args.stream_format) == ("pcm", True, "audio")
    assert args.api_key == "" and args.extra == {}
    assert (args.endpoint, args.words_per_second) == ("speech", 40.0)
    assert args.slo.limits == {"ttfa": 0.5, "rtf": 1.0, "stall": 0.0}
    assert args.wait_ready > 0


def test_settings_from_env_reach_the_tool() -> None:
    env = {
        "STRESS_MODE": "sweep",
        "STRESS_URL": "http://gateway.internal:9000",
        "STRESS_API_KEY": "k1",
        "STRESS_VOICES": "tara,leo",
        "STRESS_EXTRA": '{"max_tokens": 600}',
        "STRESS_FORMAT": "mp3",
        "STRESS_STREAM_FORMAT": "sse",
        "STRESS_SLO": "ttfa=1s,rtf=1.0,stall=0",
        "STRESS_ENDPOINT": "ws",
        "STRESS_WORDS_PER_SECOND": "0",
    }
    args = build_parser().parse_args(command(env))
    assert (args.mode, args.url, args.api_key) == ("sweep", env["STRESS_URL"], "k1")
    assert (args.endpoint, args.words_per_second) == ("ws", 0.0)
    assert (args.voice, args.extra) == (["tara,leo"], {"max_tokens": 600})
    assert (args.format, args.stream_format, args.slo.limits["ttfa"]) == ("mp3", "sse", 1.0)


def test_every_setting_is_documented() -> None:
    text = (ROOT / STRESS_FILE).read_text("utf-8")
    names = set(_VARIABLE.findall(text))
    variables = {name for name, _ in names}
    example = (ROOT / ".env_example").read_text("utf-8")
    docs = (ROOT / "docs" / "stress-test.md").read_text("utf-8")
    assert variables and all(f"{v}=" in example for v in variables), variables
    assert all(v in docs for v in variables)


@pytest.mark.parametrize("endpoint", ["speech", "deepgram"])
def test_the_compose_command_runs_against_a_live_gateway(
    tiny_snac_dir: Path, tmp_path: Path, endpoint: str
) -> None:
    """The command exactly as Compose would give it (settings as a .env would set them),
    with the URL and the results folder moved to this machine."""
    with (
        VLLMServer(frames=6) as backend,
        running_gateway(gateway_settings(backend.url, tiny_snac_dir)) as url,
    ):
        env = {
            "STRESS_URL": url,
            "STRESS_REQUESTS": "3",
            "STRESS_CONCURRENCY": "3",
            "STRESS_WARMUP": "1",
            "STRESS_WAIT_READY": "30",
            "STRESS_ENDPOINT": endpoint,
        }
        args = command(env)
        save = args.index("--save") + 1
        args[save] = str(tmp_path)
        done = stress(*args)
    assert done.returncode == 0, done.stderr
    assert "=== SLO LATENCY REPORT ===" in done.stdout
    document = saved(tmp_path)
    assert document["summary"]["requests"] == 3 and document["summary"]["succeeded"] == 3
    statuses = {r["status"] for r in document["requests"]}
    assert statuses == ({101} if endpoint == "deepgram" else {200})
