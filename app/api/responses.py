"""One synthesis job as an HTTP response: streamed audio, SSE events, or a complete file.

Shared by every route that synthesizes (`/v1/audio/speech`, `/v1/audio/vc`), so they
stream, fail and report usage the same way. The stream is primed up to its first
bytes before anything is committed: until then every failure is a proper HTTP status.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping

from fastapi import Request
from fastapi.responses import Response

from app.api import deps
from app.api.cancellation import ClientDisconnected, unless_disconnected
from app.api.draining import Drain
from app.api.errors import log_failure
from app.api.streaming import GuardedStreamingResponse, StreamLease, admit
from app.audio.encoders import StreamingEncoder
from app.audio.formats import MEDIA_TYPES
from app.errors import GatewayError
from app.protocol import AudioDeltaEvent, AudioDoneEvent, ErrorEvent, SpeechUsage, StreamFormat
from app.service.speech import SpeechPipeline, SpeechStream, SynthesisJob

log = logging.getLogger(__name__)

AUDIO_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {media: {} for media in MEDIA_TYPES.values()} | {"text/event-stream": {}}},
}
"""OpenAPI `responses` of a synthesizing route."""


async def synthesis_response(
    request: Request,
    pipeline: SpeechPipeline,
    job: SynthesisJob,
    stream_format: StreamFormat,
    lease: StreamLease | None = None,
    *,
    encoder: Callable[[], StreamingEncoder] | None = None,
    media_type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Admission (unless the caller holds ``lease`` already) before any backend work; the
    lease frees the slot however the stream ends. ``encoder`` (with its ``media_type``)
    replaces the job's response_format; ``headers`` go with a streamed response."""
    if lease is None:
        lease = admit(request)
    try:
        slots = deps.stream_slots(request)
        stream = lease.stream = pipeline.open(job, extra_slot=slots.take_spare, encoder=encoder)
        await unless_disconnected(request, stream.prime())
    except ClientDisconnected:
        await lease.close()
        return Response(status_code=499)
    except BaseException:
        await lease.close()
        raise
    drain = deps.drain(request)
    if not job.streaming:
        try:
            return await complete_file(stream, drain)
        finally:
            await lease.close()
    stall_timeout = deps.settings(request).client_stall_timeout
    if stream_format == "sse":
        return GuardedStreamingResponse(
            sse_events(stream, drain),
            lease.close,
            media_type="text/event-stream",
            stall_timeout=stall_timeout,
        )
    return GuardedStreamingResponse(
        audio_bytes(stream, drain),
        lease.close,
        media_type=media_type or MEDIA_TYPES[job.response_format],
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no", **(headers or {})},
        stall_timeout=stall_timeout,
    )


def _chunks(stream: SpeechStream, drain: Drain | None) -> AsyncIterator[bytes]:
    """The stream's bytes; cut short with `ShuttingDown` if a shutdown drain aborts it."""
    return drain.abortable(aiter(stream)) if drain is not None else aiter(stream)


async def audio_bytes(stream: SpeechStream, drain: Drain | None = None) -> AsyncIterator[bytes]:
    # An error after the first bytes propagates: the server aborts the transfer,
    # so the client sees a broken stream rather than a short "successful" file.
    try:
        async for data in _chunks(stream, drain):
            yield data
    finally:
        await stream.aclose()


def _event(payload: str) -> bytes:
    return f"data: {payload}\n\n".encode()


async def sse_events(stream: SpeechStream, drain: Drain | None = None) -> AsyncIterator[bytes]:
    try:
        async for data in _chunks(stream, drain):
            yield _event(AudioDeltaEvent(audio=base64.b64encode(data).decode()).model_dump_json())
        stats = stream.stats
        usage = SpeechUsage(
            input_tokens=stats.prompt_tokens,
            output_tokens=stats.completion_tokens,
            total_tokens=stats.prompt_tokens + stats.completion_tokens,
        )
        yield _event(AudioDoneEvent(usage=usage).model_dump_json())
    except GatewayError as exc:
        log_failure(exc, "speech stream failed after commit", always=True)
        yield _event(ErrorEvent(error=exc.envelope()["error"]).model_dump_json())
    except Exception:
        log.exception("speech stream failed after commit")
        envelope = {"message": "Internal error during synthesis.", "type": "server_error"}
        yield _event(
            json.dumps({"type": "error", "error": envelope | {"param": None, "code": None}})
        )
    finally:
        await stream.aclose()


async def complete_file(stream: SpeechStream, drain: Drain | None = None) -> Response:
    try:
        data = b"".join([chunk async for chunk in _chunks(stream, drain)])
    finally:
        await stream.aclose()
    stats = stream.stats
    elapsed_ms = ((stats.finished or stats.started) - stats.started) * 1000.0
    headers = {
        "X-TTFA-Ms": f"{stats.ttfa_ms or 0.0:.1f}",
        "X-Processing-Time-Ms": f"{elapsed_ms:.1f}",
        "X-Audio-Duration-Seconds": f"{stats.output_seconds:.3f}",
    }
    return Response(data, media_type=MEDIA_TYPES[stream.job.response_format], headers=headers)
