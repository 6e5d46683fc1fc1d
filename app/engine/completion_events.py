"""What the SSE events of one streaming completion say: token ids, finish, usage, errors.

Pure: fed the ``data`` of each event (vLLM's wire format, shared/reference/
vllm-completions-stream.txt), it collects the token ids (``token_ids`` when the
backend sends them, else the ``<custom_token_N>`` spellings of ``text``), the finish
reason, the usage-only chunk that follows it, and the first error, in-band or of
the framing. `feed` says when a consumer should look: each time the count of ids
received reaches a multiple of ``wake_tokens`` (for Orpheus, a frame completes), or the
generation finished, ended or failed. Counted from the start, not from the last take:
a consumer that took 8 ids of a burst is woken at 14, when the second frame is whole,
not at 15, and a frame completed just before the backend pauses is not held for the pause.

`feed_body` takes a read's body as bytes as far as it is a run of events shaped like a
token event already parsed (`app.engine.event_template`): vLLM's steady state, without a
JSON parse per token; only what follows the run (the finish, usage, anything else) is
parsed.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from app.engine.backend_errors import MAX_DETAIL_CHARS, client_message, inband_error
from app.engine.base import EngineUsage, FinishReason
from app.engine.event_template import EventTemplate
from app.engine.token_text import TokenTextParser
from app.errors import BackendError, GatewayError

_LEARN_ATTEMPTS: Final = 3
_MAX_MISSES: Final = 8
"""Reads in a row that did not match the template before it is dropped."""


class CompletionEvents:
    def __init__(self, model: str, stop_token_ids: frozenset[int], *, wake_tokens: int = 1):
        self._model = model
        self._stop = stop_token_ids
        self._wake_tokens = max(1, wake_tokens)
        self._text = TokenTextParser()
        self.ids: list[int] = []
        """Ids not yet taken by the consumer (stop ids removed)."""
        self._received = 0
        self._taken = 0
        """Ids received in all, and received when the consumer last took them."""
        self.finish: FinishReason | None = None
        self.usage: EngineUsage | None = None
        self.done = False
        """``data: [DONE]`` arrived."""
        self.error: GatewayError | None = None
        self._template: EventTemplate | None = None
        self._learning = _LEARN_ATTEMPTS
        """Plain token events left to learn a template from (each costs two JSON parses)."""
        self._misses = 0

    def feed_body(self, body: bytes) -> tuple[bool, int]:
        """Take the run of whole events of the learnt template that ``body`` (whole SSE
        events up to its end) starts with, as `feed` would: whether the consumer should
        look, and the bytes taken (0: none; the SSE parser reads what is left)."""
        template = self._template
        if template is None or self._text.pending or not self._open:
            return False, 0
        ids, taken = template.leading(body)
        if not taken:
            self._misses += 1
            if self._misses >= _MAX_MISSES:  # the backend's shape moved on: stop trying
                self._template = None
            return False, 0
        self._misses = 0
        self._text.token_arrived()
        self._keep(ids)
        return self._should_look(), taken

    @property
    def _open(self) -> bool:
        return self.error is None and not self.done and self.finish is None

    def feed(self, events: list[str]) -> bool:
        """Take events in order; True when the consumer should look now."""
        for data in events:
            if self.error is not None or self.done:
                break
            # A JSON object starts with "{": only anything else can be the sentinel.
            if data[:1] != "{" and data.strip() == "[DONE]":
                self.done = True
                break
            try:
                self._event(data)
            except GatewayError as exc:
                self.error = exc
        return self._should_look()

    def _should_look(self) -> bool:
        return (
            not self._open or self._received // self._wake_tokens > self._taken // self._wake_tokens
        )

    @property
    def backlog(self) -> int:
        return len(self.ids)

    @property
    def wanted(self) -> int:
        """Ids still to come before `feed` asks for the consumer; 1 once the generation
        finished or failed (what follows must not wait)."""
        if not self._open:
            return 1
        return self._wake_tokens - self._received % self._wake_tokens

    def take(self) -> list[int]:
        ids, self.ids = self.ids, []
        self._taken = self._received
        return ids

    def _event(self, data: str) -> None:
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise BackendError("token backend sent malformed JSON", detail=_excerpt(data)) from None
        if type(chunk) is not dict:
            raise BackendError("token backend sent an unexpected event", detail=_excerpt(data))
        if "error" in chunk:
            raise inband_error(chunk["error"], self._model)
        usage = chunk.get("usage")
        if usage is not None:
            self.usage = _usage(usage) or self.usage
        choices = chunk.get("choices")
        if not choices or self.finish is not None:
            return  # the usage-only chunk, or anything after the finish
        choice = choices[0]
        if not isinstance(choice, dict):
            raise BackendError("token backend sent an unexpected choice", detail=_excerpt(data))
        token_ids = choice.get("token_ids")
        if token_ids is not None:
            if not isinstance(token_ids, list) or not all(isinstance(i, int) for i in token_ids):
                raise BackendError(
                    "token backend sent invalid token_ids", detail=_excerpt(repr(token_ids))
                )
            ids = list(token_ids)
        else:
            delta = choice.get("text")
            ids = self._text.feed(delta) if isinstance(delta, str) else []
        finish = choice.get("finish_reason")
        if finish is not None:
            self.finish = _finish_reason(finish)
            ids.extend(self._text.close())
        elif self._learning and token_ids is None and usage is None and len(ids) == 1:
            self._learning -= 1
            self._template = EventTemplate.learn(data)
            if self._template is not None:
                self._learning = 0
        self._keep(ids)

    def _keep(self, ids: list[int]) -> None:
        stop = self._stop
        if len(ids) == 1:  # one token per event, as vLLM streams
            if ids[0] not in stop:
                self.ids.append(ids[0])
                self._received += 1
        else:
            kept = [i for i in ids if i not in stop]
            self.ids.extend(kept)
            self._received += len(kept)


def _finish_reason(value: Any) -> FinishReason:
    if value == "stop":
        return "stop"
    if value == "length":
        return "length"
    raise BackendError(
        f"token backend ended the generation with finish_reason {client_message(repr(value))}"
    )


def _usage(value: Any) -> EngineUsage | None:
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if not (isinstance(prompt, int) and isinstance(completion, int)):
        return None
    return EngineUsage(prompt_tokens=prompt, completion_tokens=completion)


def _excerpt(data: str) -> str:
    return f"event: {data[:MAX_DETAIL_CHARS]!r}"
