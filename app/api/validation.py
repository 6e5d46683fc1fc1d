"""Request validation errors in words a client's user can act on.

Pydantic's messages name its own types ("Value error, ...", "Input should be a valid
dictionary or instance of VoiceRef") and FastAPI's location carries union members;
each problem here becomes one sentence about the field as the client sent it, with a
stable `code`: `missing_required_parameter`, `unknown_field`, `string_above_max_length`
(as the gateway's own length checks), `invalid_json`, else `invalid_value`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any, Final


def describe_validation(raw: Sequence[Any]) -> tuple[str, str | None, str]:
    """Pydantic's errors as (message, param, code): one readable sentence per problem,
    the first problem's field and its code."""
    errors = _without_union_type_errors(list(raw))
    parts: list[str] = []
    first: tuple[str | None, str] | None = None
    for err in errors:
        param = _param(err)
        message, code = _describe(err, param)
        first = first or (param, code)
        parts.append(message)
    if first is None:
        return "Invalid request.", None, "invalid_value"
    return " ".join(dict.fromkeys(parts)), first[0], first[1]


def _param(err: Mapping[str, Any]) -> str | None:
    if err.get("type") == "json_invalid":
        return None  # its location is a character offset
    loc = [str(p) for p in err.get("loc", ()) if p not in _LOCATIONS]
    # Union members add their type name to the location; users know only the field.
    loc = [p for p in loc if not _is_member_tag(p)]
    return ".".join(loc) or None


def _without_union_type_errors(errors: list[Any]) -> list[Any]:
    """Of a union field's errors, drop the members that failed only on the type when
    another member got further (`voice: {"idx": 1}` is a bad object, not a bad string)."""
    splits = [_union_split(e) for e in errors]
    deeper = {split[0] for split in splits if split is not None and split[1]}
    return [
        e
        for e, split in zip(errors, splits, strict=True)
        if split is None or split[1] or split[0] not in deeper
    ]


def _union_split(err: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(the union field, the location inside the member) when a member tag is in `loc`."""
    loc = [str(p) for p in err.get("loc", ()) if p not in _LOCATIONS]
    for i, part in enumerate(loc):
        if _is_member_tag(part):
            return tuple(loc[:i]), tuple(loc[i + 1 :])
    return None


def _is_member_tag(part: str) -> bool:
    return part[:1].isupper() or part in _UNION_TAGS


def _describe(err: Mapping[str, Any], param: str | None) -> tuple[str, str]:
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    name = param or "The request body"
    if kind == "missing":
        return f"{name} is required.", "missing_required_parameter"
    if kind == "extra_forbidden":
        return f"Unknown field {param!r}.", "unknown_field"
    if kind == "json_invalid":
        return f"The request body is not valid JSON ({ctx.get('error', 'syntax error')}).", (
            "invalid_json"
        )
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        # Our validators' own sentences, without pydantic's "Value error, " prefix.
        return _sentence(str(ctx["error"])), "invalid_value"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return f"{name} must not be empty.", "invalid_value"
    if kind == "string_too_long":
        return f"{name} exceeds {ctx.get('max_length')} characters.", "string_above_max_length"
    if kind in ("model_attributes_type", "dict_type", "model_type") and param is None:
        return "The request body must be a JSON object.", "invalid_value"
    template = _TEMPLATES.get(kind)
    if template is not None:
        with contextlib.suppress(KeyError, IndexError, ValueError):
            return _sentence(template.format(name=name, **ctx)), "invalid_value"
    message = str(err.get("msg", "invalid value"))
    return _sentence(f"{param}: {message}" if param else message), "invalid_value"


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "?", "!")) else f"{text}."


_LOCATIONS: Final = frozenset({"body", "query", "path", "form"})
_UNION_TAGS: Final = frozenset({"str", "int", "float", "bool"})
_TEMPLATES: Final = {
    "string_type": "{name} must be a string",
    "int_type": "{name} must be an integer",
    "int_parsing": "{name} must be an integer",
    "int_from_float": "{name} must be a whole number",
    "float_type": "{name} must be a number",
    "float_parsing": "{name} must be a number",
    "bool_type": "{name} must be true or false",
    "bool_parsing": "{name} must be true or false",
    "literal_error": "{name} must be one of {expected}",
    "enum": "{name} must be one of {expected}",
    "greater_than": "{name} must be greater than {gt}",
    "greater_than_equal": "{name} must be at least {ge}",
    "less_than": "{name} must be less than {lt}",
    "less_than_equal": "{name} must be at most {le}",
    "string_too_short": "{name} must have at least {min_length} characters",
    "finite_number": "{name} must be a finite number",
    "list_type": "{name} must be a list",
}
