"""create_app(settings): the one place where the gateway's parts are wired together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.routing import BaseRoute

from app.api import (
    deepgram,
    health,
    metrics,
    normalize,
    saved_voices,
    speech,
    vc,
    voices,
    web,
    ws_native,
)
from app.api.auth import HEALTH_PATHS, ApiKeyMiddleware, load_api_keys
from app.api.draining import Drain, install_sigterm_drain
from app.api.errors import install_error_handlers
from app.api.limits import RateLimiter, RateLimitMiddleware, StreamSlots
from app.api.metrics import GatewayMetrics
from app.api.middleware import RequestContextMiddleware
from app.audio.ffmpeg_threads import single_threaded_ffmpeg
from app.audio.pcm import SAMPLE_RATE
from app.codec.accelerated import Accelerated, accelerate, bucket_plan
from app.codec.service import CPU_BATCH_FRAMES, CodecService
from app.codec.snac import RECEPTIVE_FIELD_FRAMES, CodecLoadError, SnacCodec, load_codec
from app.collector import frozen_startup
from app.config import Settings, load_settings
from app.engine.base import EngineLoadError, TokenEngine
from app.heap import HeapTrimmer
from app.service.decoding import PipelineConfig
from app.service.gateway import Gateway
from app.service.jobs import JobBuilder
from app.service.prompts import OrpheusAdapter
from app.service.speech import SpeechPipeline
from app.service.voice_store import open_voice_store
from app.service.voices import VoiceCatalog, Voices
from app.vocab import TOKENS_PER_FRAME

log = logging.getLogger("app")

SEGMENT_FADE_SECONDS = 0.01
"""Where two segments meet, each edge fades over this long: no click, nothing audible lost."""

EXPOSED_HEADERS = [
    "X-Request-ID",
    "X-TTFA-Ms",
    "X-Processing-Time-Ms",
    "X-Audio-Duration-Seconds",
    "Retry-After",
    "x-should-retry",
]
"""Response headers a browser page may read (the SDKs' retry advice among them)."""


@dataclass(frozen=True)
class ModelSources:
    snac: str
    llm: str


def _model_sources(settings: Settings) -> ModelSources:
    if settings.tts_demo:
        from app.demo.models import ensure_demo_models

        demo = ensure_demo_models(settings.cache_dir)
        return ModelSources(snac=str(demo.snac_dir), llm=str(demo.llm_dir))
    return ModelSources(snac=settings.snac_model, llm=settings.tts_model)


async def _build_engine(settings: Settings, sources: ModelSources) -> TokenEngine:
    if settings.backend_urls and not settings.tts_demo:
        from app.engine.http import HttpCompletionsEngine
        from app.engine.replicas import BreakerPolicy

        return HttpCompletionsEngine(
            settings.backend_urls,
            settings.model_name,
            api_key=settings.tts_api_key,
            connect_timeout=settings.backend_connect_timeout,
            first_token_timeout=settings.first_token_timeout,
            inter_token_timeout=settings.inter_token_timeout,
            # Tokens are of use a frame at a time: wake the pipeline once per frame, not
            # once per token event.
            batch_tokens=TOKENS_PER_FRAME,
            breaker=BreakerPolicy(
                failures=settings.backend_failure_threshold,
                backoff=settings.backend_backoff_seconds,
                max_backoff=settings.backend_max_backoff_seconds,
            ),
        )
    from app.engine.local import LocalEngine

    return await asyncio.to_thread(
        LocalEngine.load,
        sources.llm,
        device=settings.device,
        max_streams=settings.engine_max_streams,
    )


def _pipeline_config(settings: Settings) -> PipelineConfig:
    # Crossfading mixes in context samples, which are close to but not exactly the
    # offline decode: only worth it when noise makes window decodes differ anyway.
    crossfade = round(settings.crossfade_ms * SAMPLE_RATE / 1000) if settings.snac_noise else 0
    return PipelineConfig(
        context_frames=settings.decode_context_frames,
        first_frames=settings.chunk_first_frames,
        max_frames=settings.chunk_max_frames,
        schedule=settings.chunk_schedule,
        crossfade_samples=crossfade,
        invalid_token_policy=settings.invalid_token_policy,
        max_invalid_tokens=settings.max_invalid_tokens,
        segment_lookahead=settings.segment_lookahead,
        segment_pause_samples=round(settings.segment_pause_ms * SAMPLE_RATE / 1000),
        segment_fade_samples=round(SEGMENT_FADE_SECONDS * SAMPLE_RATE),
    )


def _accelerate(settings: Settings, codec: SnacCodec, *, batching: bool) -> Accelerated:
    if not (settings.cuda_graphs or settings.torch_compile):
        return Accelerated(codec, None, "eager")
    seconds = None if settings.cuda_graph_batch == "auto" else settings.cuda_graph_batch
    plan = bucket_plan(
        seconds,
        max_window=settings.chunk_max_frames + 2 * settings.decode_context_frames,
        max_batch=settings.max_batch_size if batching else 1,
        context=settings.decode_context_frames,
        pad=_pipeline_config(settings).crossfade_samples,
    )
    return accelerate(
        codec, plan, cuda_graphs=settings.cuda_graphs, torch_compile=settings.torch_compile
    )


def _startup_failed(exc: BaseException) -> None:
    # The message names the setting and the remedy: say it plainly before the
    # server's traceback.
    detail = getattr(exc, "detail", None)
    log.error("start-up failed: %s%s", exc, f" ({detail})" if detail else "")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    await asyncio.to_thread(single_threaded_ffmpeg)
    sources = await asyncio.to_thread(_model_sources, settings)
    log.info("loading SNAC from %s", sources.snac)
    try:
        codec = await asyncio.to_thread(
            load_codec,
            sources.snac,
            device=settings.device,
            noise=settings.snac_noise,
            dtype=settings.decode_dtype,
        )
    except CodecLoadError as exc:
        _startup_failed(exc)
        raise
    # On a CPU a batch pays only while its windows are short (docs/benchmarks.md, "What one
    # decode window costs"): "auto" batches an eager CPU decoder too, up to CPU_BATCH_FRAMES
    # kept frames a call (a compiled one keeps its one-window shapes).
    cuda = str(codec.device).startswith("cuda")
    batching = settings.dynamic_batching
    if batching == "auto":
        batching = cuda or not settings.torch_compile
    frame_budget: int | None
    if settings.max_batch_frames == "auto":
        frame_budget = None if cuda else CPU_BATCH_FRAMES
    else:
        frame_budget = settings.max_batch_frames
    decoder = _accelerate(settings, codec, batching=batching)
    service = CodecService(
        decoder.codec,
        dynamic_batching=batching,
        max_batch_size=settings.max_batch_size,
        max_batch_frames=frame_budget,
        microsleep=settings.microsleep,
        queue_size=settings.decode_queue_size,
        # Batch padding must stay outside SNAC's receptive field (3 frames), whatever
        # context the windows themselves carry.
        receptive_field=RECEPTIVE_FIELD_FRAMES,
        warm_up=decoder.warm_up,
        max_encodes=settings.max_reference_encodes,
    )
    service.start()
    app.state.metrics.watch_codec(service.stats)
    try:
        engine = await _build_engine(settings, sources)
    except BaseException as exc:
        if isinstance(exc, EngineLoadError):
            _startup_failed(exc)
        await asyncio.to_thread(service.close)
        raise
    _watch_engine(app.state.metrics, engine)
    # SQLite: a gateway that never saves a voice writes no file. Either store brings an
    # existing schema up to date now, so a replica never serves from an old one.
    try:
        store = open_voice_store(settings.voice_store_url, settings.data_dir)
        try:
            await asyncio.to_thread(store.migrate)
        except BaseException:
            store.close()
            raise
    except BaseException as exc:
        _startup_failed(exc)
        await engine.aclose()
        await asyncio.to_thread(service.close)
        raise
    catalog = VoiceCatalog(settings.speakers, settings.voice_aliases, settings.default_speaker)
    app.state.gateway = Gateway(
        settings=settings,
        engine=engine,
        codec=service,
        pipeline=SpeechPipeline(engine, service, _pipeline_config(settings)),
        jobs=JobBuilder(settings, OrpheusAdapter()),
        voices=Voices(catalog, store),
    )
    log.info(
        "gateway up: engine=%s codec=%s decoder=%s %s%s",
        engine.name,
        codec.device,
        decoder.mode,
        settings.decode_dtype,
        " (warming up: /ready answers 503 until done)" if service.warming else "",
    )
    metrics: GatewayMetrics = app.state.metrics
    publisher = None
    if metrics.multiprocess_dir is not None:
        publisher = asyncio.create_task(metrics.publish())
    uninstall = install_sigterm_drain(app.state.drain)
    # Freed tensors and buffers stay in malloc's arenas unless trimmed (app/heap.py).
    trimmer = HeapTrimmer(settings.memory_trim_interval)
    trimmer.start()
    try:
        with frozen_startup():
            yield
    finally:
        await asyncio.to_thread(trimmer.close)
        if uninstall is not None:
            uninstall()
        if publisher is not None:
            publisher.cancel()
        await engine.aclose()
        await asyncio.to_thread(service.close)
        await asyncio.to_thread(store.close)
        metrics.close()


def _watch_engine(metrics: GatewayMetrics, engine: TokenEngine) -> None:
    from app.engine.http import HttpCompletionsEngine

    if isinstance(engine, HttpCompletionsEngine):
        metrics.watch_backends(engine.replica_health, lambda: engine.replicas.retries)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    app = FastAPI(
        title="Orpheus streaming TTS gateway",
        version="0.1.0",
        description="OpenAI-compatible streaming text-to-speech for Orpheus-style models.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    routers = [
        speech.router,
        ws_native.router,
        deepgram.router,
        voices.router,
        vc.router,
        saved_voices.router,
        normalize.router,
        health.router,
        metrics.router,
    ]
    if settings.web_ui:
        routers.append(web.build_router())
    _install_protection(app, settings, [route for r in routers for route in r.routes])
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    return app


def _install_protection(app: FastAPI, settings: Settings, routes: list[BaseRoute]) -> None:
    """Metrics, request ids, CORS, API keys, rate limits and stream admission."""
    gateway_metrics = GatewayMetrics(settings.prometheus_multiproc_dir)
    slots = StreamSlots(settings.max_concurrent_streams)
    gateway_metrics.track(gateway_metrics.active_streams, lambda: slots.in_use)
    app.state.metrics = gateway_metrics
    app.state.stream_slots = slots
    app.state.drain = Drain(settings.shutdown_grace_seconds, lambda: slots.in_use)
    public: tuple[str, ...] = () if settings.protect_health else HEALTH_PATHS
    if settings.web_ui and not settings.protect_health:
        public = (*public, *web.public_paths())
    public_paths = (*public, "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
    # Added innermost first: request context wraps CORS wraps auth wraps the rate limit.
    if settings.rate_limit_per_minute:
        limiter = RateLimiter(settings.rate_limit_per_minute)
        app.add_middleware(RateLimitMiddleware, limiter=limiter, public_paths=public_paths)
    keys = load_api_keys(settings)
    if keys:
        failures = settings.auth_failures_per_minute
        app.add_middleware(
            ApiKeyMiddleware,
            keys=keys,
            public_paths=public_paths,
            failures=RateLimiter(failures) if failures else None,
            admin_keys=[key.strip() for key in settings.admin_api_keys if key.strip()],
        )
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            # Any request header: SDKs add their own (openai-node: x-stainless-*), and a
            # fixed list turns their preflights into 400 "Disallowed CORS headers".
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
            # A page on a public origin calling a gateway on localhost or a LAN address
            # (Chrome's Private Network Access preflight).
            allow_private_network=True,
        )
    app.add_middleware(RequestContextMiddleware, metrics=gateway_metrics, routes=routes)
    if settings.sentry_dsn:
        _init_sentry(settings.sentry_dsn)


def _init_sentry(dsn: str) -> None:
    try:
        import sentry_sdk
    except ImportError:
        log.warning("SENTRY_DSN is set but sentry-sdk is not installed: errors are not reported")
        return
    sentry_sdk.init(dsn=dsn, send_default_pii=False)
