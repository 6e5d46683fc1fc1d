"""How the gateway serves its browser page (`/`, `/web/*`, `/web/config`), over real sockets.

What the page does in a browser is tested in tests/web; here: which files are
served, with which headers, to whom (API keys, PROTECT_HEALTH), and WEB_UI=false.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.api.web import WEB_DIR, asset_names, public_paths
from tests.api.conftest import gateway_settings
from tests.support.gateway import running_gateway
from tests.support.vllm_server import VLLMServer

KEY = "web-key"


@pytest.fixture(scope="module")
def keyed(api_vllm: VLLMServer, tiny_snac_dir: Path) -> Iterator[str]:
    with running_gateway(gateway_settings(api_vllm.url, tiny_snac_dir, api_keys=KEY)) as url:
        yield url


def referenced_files() -> set[str]:
    """Every /web/ file the page names: in index.html and in the modules' imports."""
    names = set(re.findall(r'(?:href|src)="/web/([^"]+)"', (WEB_DIR / "index.html").read_text()))
    for module in WEB_DIR.glob("*.js"):
        names |= set(re.findall(r'from "\./([^"]+)"', module.read_text()))
    return names


def test_the_page_and_everything_it_loads_are_served(gateway_url: str) -> None:
    page = httpx.get(f"{gateway_url}/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert page.headers["x-request-id"]
    names = referenced_files()
    assert {"app.js", "style.css", "speak.js", "player.js"} <= names
    assert names <= set(asset_names())
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for name in names:
        response = httpx.get(f"{gateway_url}/web/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(types[Path(name).suffix]), name
        assert response.content == (WEB_DIR / name).read_bytes()
    assert httpx.head(f"{gateway_url}/").status_code == 200


def test_nothing_is_loaded_from_elsewhere() -> None:
    for path in WEB_DIR.iterdir():
        # An XML namespace names a URL but loads nothing.
        text = re.sub(r'xmlns="[^"]*"', "", path.read_text())
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text), path.name


@pytest.mark.parametrize("path", ["/web/nope.js", "/web/..%2Fmain.py", "/web/index.html"])
def test_only_the_page_files_are_served(gateway_url: str, path: str) -> None:
    response = httpx.get(f"{gateway_url}{path}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_config_tells_what_the_api_does_not(gateway_url: str) -> None:
    config = httpx.get(f"{gateway_url}/web/config").json()
    assert config == {
        "demo": False,
        "api_key_required": False,
        "sample_rate": 24_000,
        "formats": ["mp3", "opus", "aac", "flac", "wav", "pcm"],
        "max_input_chars": 4096,
        "defaults": {
            "temperature": 0.6,
            "top_p": 0.9,
            "repetition_penalty": 1.1,
            "max_tokens": 2048,
        },
    }


def test_with_api_keys_the_page_is_open_and_the_api_is_not(keyed: str) -> None:
    for path in public_paths():
        assert httpx.get(f"{keyed}{path}").status_code == 200, path
    assert httpx.get(f"{keyed}/web/config").json()["api_key_required"] is True
    assert httpx.get(f"{keyed}/v1/audio/speaker").status_code == 401
    speakers = httpx.get(f"{keyed}/v1/audio/speaker", headers={"Authorization": f"Bearer {KEY}"})
    assert speakers.status_code == 200


def test_protect_health_puts_the_page_behind_the_key(
    api_vllm: VLLMServer, tiny_snac_dir: Path
) -> None:
    settings = gateway_settings(api_vllm.url, tiny_snac_dir, api_keys=KEY, protect_health=True)
    with running_gateway(settings) as url:
        for path in ("/", "/web/app.js", "/web/config"):
            response = httpx.get(f"{url}{path}")
            assert response.status_code == 401, path
            assert response.json()["error"]["code"] == "missing_api_key"
        page = httpx.get(f"{url}/", headers={"Authorization": f"Bearer {KEY}"})
        assert page.status_code == 200 and "<title>" in page.text


def test_web_ui_false_serves_no_page(api_vllm: VLLMServer, tiny_snac_dir: Path) -> None:
    with running_gateway(gateway_settings(api_vllm.url, tiny_snac_dir, web_ui=False)) as url:
        for path in ("/", "/web/app.js", "/web/config"):
            response = httpx.get(f"{url}{path}")
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
        assert httpx.get(f"{url}/docs").status_code == 200


def test_the_page_stays_out_of_the_api_schema(gateway_url: str) -> None:
    paths = httpx.get(f"{gateway_url}/openapi.json").json()["paths"]
    assert not [path for path in paths if path == "/" or path.startswith("/web")]
    assert httpx.get(f"{gateway_url}/docs").status_code == 200
