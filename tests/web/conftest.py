"""The page in real headless Chromium (Debian's package) against the real demo gateway.

Playwright drives the browser through its bundled driver; the browser is the system's
/usr/bin/chromium, never a download. Each test gets a fresh browser context (its own
profile: storage, cache) and a page that records console errors and every request.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app.config import Settings
from tests.support.demo import running_demo
from tests.support.gateway import running_gateway
from tests.support.vllm_server import Script, VLLMServer

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "Debian's chromium is not installed (/usr/bin/chromium): "
        "`apt-get install -y chromium chromium-driver` (.ci/run does)",
        allow_module_level=True,
    )

from playwright.sync_api import (  # noqa: E402
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

# A stream or a stress run on a busy 2-core runner takes seconds, not milliseconds.
expect.set_options(timeout=60_000)

API_KEY = "page-test-key"
# Admission is tight so a stress run meets 503s as a busy gateway gives them.
MAX_CONCURRENT_STREAMS = 2
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    # A fake microphone (a beeping tone) that needs no permission prompt.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "images"


@pytest.fixture(scope="session")
def demo_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("web-demo")
    env = {"API_KEYS": API_KEY, "MAX_CONCURRENT_STREAMS": str(MAX_CONCURRENT_STREAMS)}
    with running_demo(root, **env) as url:
        yield url


@pytest.fixture(scope="module")
def open_gateway(tiny_snac_dir: Path) -> Iterator[str]:
    """A gateway without keys or demo models, fed at about real-time pace (82 tokens/s)."""
    with VLLMServer(frames=30) as backend:
        backend.default_script = lambda body: Script(delay=0.012)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            tts_api=backend.url,
            model_name="tinyorpheus",
            snac_model=str(tiny_snac_dir),
            device="cpu",
            snac_noise=False,
        )
        with running_gateway(settings) as url:
            yield url


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@dataclass
class PageRecord:
    page: Page
    base: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def open(self, key: str | None = API_KEY) -> None:
        """Load the page, save `key` in its key field, and wait until it is ready."""
        self.page.goto(self.base + "/")
        self.page.wait_for_selector("body[data-ready=true]")
        if key is not None:
            self.page.fill("#api-key", key)
            self.page.click("#key-form button[type=submit]")

    def screenshot(self, name: str, tmp_path: Path) -> Path:
        """Into docs/images with WRITE_SCREENSHOTS=1, else into the test's tmp dir."""
        folder = SCREENSHOTS if os.environ.get("WRITE_SCREENSHOTS") == "1" else tmp_path
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


def new_page(browser: Browser, base: str, **context_options: object) -> Iterator[PageRecord]:
    options: dict[str, object] = {"viewport": {"width": 1280, "height": 900}, **context_options}
    context = browser.new_context(accept_downloads=True, **options)  # type: ignore[arg-type]
    context.set_default_timeout(60_000)
    page = context.new_page()
    record = PageRecord(page, base)
    page.on("console", record.console)
    page.on("pageerror", lambda exc: record.errors.append(f"uncaught: {exc}"))
    page.on("request", lambda request: record.requests.append(request.url))
    try:
        yield record
    finally:
        context.close()


@pytest.fixture
def web(browser: Browser, demo_gateway: str) -> Iterator[PageRecord]:
    yield from new_page(browser, demo_gateway)


@pytest.fixture
def open_web(browser: Browser, open_gateway: str) -> Iterator[PageRecord]:
    yield from new_page(browser, open_gateway)


@pytest.fixture
def phone(browser: Browser, demo_gateway: str) -> Iterator[PageRecord]:
    """The page on a phone-sized screen (CSS pixels of a common phone)."""
    yield from new_page(browser, demo_gateway, viewport={"width": 390, "height": 844})
