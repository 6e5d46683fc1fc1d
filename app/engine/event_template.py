"""The bytes a backend repeats for every token event of one stream, matched in one pass.

vLLM's token events of one completion differ only in the token: the same ``id``,
``created``, ``model`` and nulls around one ``"text":"<custom_token_N>"``
(shared/reference/vllm-completions-stream.txt). Parsed one by one, each event costs a
JSON parse and a dozen Python calls on the event loop, 82 times a second per stream.
Once one plain token event has been parsed, its text before and after the token
spelling is the template: a read's run of events in that shape becomes ids through one
regular expression, with no Python work per event. The expression is the same for every
stream (compiling one per stream, its ``id`` in it, cost about 0.5 ms of loop time a
request); the read proves its shape by being equal to the template's events rebuilt
around the token spellings found in it.

Only an exact cover counts: every byte of the read must belong to a matching event, or
the read goes through the full SSE and JSON parsers (a finish, usage, an error, another
field, a CRLF line ending). The template is proven before use: the learnt event with
another token in the slot must parse to the same object but for ``choices[0].text``.
"""

from __future__ import annotations

import re
from typing import Final

import orjson

from app.engine.token_text import TOKEN_SPELLING
from app.vocab import CUSTOM_TOKEN_BASE

_FIELD: Final = '"text":"'
_PROBES: Final = ("<custom_token_0>", "<custom_token_1>")
_SPELLINGS: Final = re.compile(TOKEN_SPELLING.pattern.encode())
_OPEN, _CLOSE = b"<custom_token_", b">"
_DIGITS: Final = re.compile(_SPELLINGS.pattern.removeprefix(_OPEN).removesuffix(_CLOSE))
"""A spelling's number, as `_SPELLINGS` finds it."""


class EventTemplate:
    """One stream's token event as ``data: `` + prefix + spelling + suffix + blank line."""

    def __init__(self, prefix: str, suffix: str) -> None:
        head = b"data: " + prefix.encode() + _OPEN
        tail = _CLOSE + suffix.encode() + b"\n\n"
        self._head, self._tail, self._joint = head, tail, tail + head

    @classmethod
    def learn(cls, data: str) -> EventTemplate | None:
        """The template of ``data``, an event whose only content is one token in
        ``choices[0].text``; None when its text does not prove to be one."""
        at = data.find(_FIELD)
        if at < 0 or data.find(_FIELD, at + 1) >= 0:
            return None
        start = at + len(_FIELD)
        spelling = TOKEN_SPELLING.match(data, start)
        if spelling is None:
            return None
        prefix, suffix = data[:start], data[spelling.end() :]
        # Another token in the slot changes exactly choices[0].text, or it is not the slot.
        other = _PROBES[spelling.group() == _PROBES[0]]
        try:
            probe = orjson.loads(prefix + other + suffix)
            expected = orjson.loads(data)
            expected["choices"][0]["text"] = other
        except (orjson.JSONDecodeError, LookupError, TypeError):
            return None
        return cls(prefix, suffix) if probe == expected else None

    def leading(self, body: bytes) -> tuple[list[int], int]:
        """The token ids of the whole events of this shape that ``body`` starts with, and
        the bytes they take: a read that ends in the finish, or holds one stray event,
        still has its run of token events read here rather than parsed event by event."""
        head, tail = self._head, self._tail
        if body.endswith(tail):
            whole = self.ids(body)
            if whole is not None:
                return whole, len(body)
        # What ends a run is mostly the read's last events (the finish, usage, [DONE]),
        # and every token event ends in the tail: the run up to the last tail is tried in
        # one pass before event by event (a read held while the consumer was away can
        # carry hundreds of events).
        last = body.rfind(tail)
        end = last + len(tail)
        if last >= 0 and end < len(body):  # a run ending in the whole read was tried above
            run = self.ids(body[:end])
            if run is not None:
                return run, end
        ids: list[int] = []
        at = 0
        while body.startswith(head, at):
            digits = _DIGITS.match(body, at + len(head))
            if digits is None or not body.startswith(tail, digits.end()):
                break
            ids.append(CUSTOM_TOKEN_BASE + int(digits.group()))
            at = digits.end() + len(tail)
        return ids, at

    def ids(self, body: bytes) -> list[int] | None:
        """The token ids of ``body`` when all of it is whole events of this shape."""
        digits = _SPELLINGS.findall(body)
        if not digits:
            return None if body else []
        # Only a run of whole template events equals its own rebuild around its tokens.
        if body != self._head + self._joint.join(digits) + self._tail:
            return None
        return [CUSTOM_TOKEN_BASE + int(d) for d in digits]
