"""The browser page: `GET /`, its assets under `/web/`, and `GET /web/config`.

The page is plain HTML, CSS and ES modules kept in `app/web` (no build step) and
loads nothing from elsewhere; the Content-Security-Policy holds it to that. It
talks to the public API like any client, so it has no endpoint of its own except
`/web/config`: what the page cannot learn from the API (that the models are the
demo's, the sample rate of `pcm`, the sampling defaults).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel

from app.api import deps
from app.audio.formats import FORMATS
from app.audio.pcm import SAMPLE_RATE
from app.errors import NotFound

WEB_DIR = Path(__file__).resolve().parents[1] / "web"
INDEX = "index.html"
ASSET_PREFIX = "/web/"
CONFIG_PATH = "/web/config"

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Same origin only: everything the page loads or calls is this gateway.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Revalidated on each load (ETag), so an upgraded gateway never serves a stale page.
    "Cache-Control": "no-cache",
}


def asset_names() -> list[str]:
    """The files the page may load from `/web/` (everything in app/web but the index)."""
    return sorted(
        path.name
        for path in WEB_DIR.iterdir()
        if path.is_file() and path.suffix in _MEDIA_TYPES and path.name != INDEX
    )


def public_paths() -> tuple[str, ...]:
    """Paths of the page, open like `/health` unless PROTECT_HEALTH is on."""
    return ("/", CONFIG_PATH, *(ASSET_PREFIX + name for name in asset_names()))


class Defaults(BaseModel):
    temperature: float
    top_p: float
    repetition_penalty: float
    max_tokens: int


class PageConfig(BaseModel):
    demo: bool
    api_key_required: bool
    sample_rate: int
    formats: list[str]
    max_input_chars: int
    defaults: Defaults


def _file(name: str) -> FileResponse:
    path = WEB_DIR / name
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers=_PAGE_HEADERS)


def build_router() -> APIRouter:
    router = APIRouter(tags=["web page"], include_in_schema=False)
    # Fixed when the app is built: a request can only ever name one of these files.
    assets = frozenset(asset_names())

    @router.api_route("/", methods=["GET", "HEAD"])
    async def index() -> FileResponse:
        return _file(INDEX)

    @router.get(CONFIG_PATH)
    async def config(settings: deps.CurrentSettings) -> PageConfig:
        return PageConfig(
            demo=settings.tts_demo,
            api_key_required=bool(settings.api_keys or settings.api_keys_file),
            sample_rate=SAMPLE_RATE,
            formats=list(FORMATS),
            max_input_chars=settings.max_input_chars,
            defaults=Defaults(
                temperature=settings.default_temperature,
                top_p=settings.default_top_p,
                repetition_penalty=settings.default_repetition_penalty,
                max_tokens=settings.default_max_tokens,
            ),
        )

    @router.get(ASSET_PREFIX + "{name}")
    async def asset(name: str) -> FileResponse:
        if name not in assets:
            raise NotFound(f"The page has no file {name!r}.", param="name")
        return _file(name)

    return router
