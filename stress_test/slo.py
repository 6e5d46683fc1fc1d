"""The service level objective: `--slo ttfa=500ms,rtf=1.0,stall=0`."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from stress_test.measure import RequestResult

METRICS: dict[str, str] = {
    "ttfa": "ttfa",
    "latency": "latency",
    "rtf": "rtf",
    "stall": "stall_seconds",
}
"""SLO key -> RequestResult attribute."""
DURATIONS = frozenset({"ttfa", "latency", "stall"})
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s)?\s*$")


def parse_duration(text: str) -> float:
    """Seconds from `500ms`, `0.5s` or `0.5` (seconds)."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 500ms, 1.5s)")
    value = float(match.group(1))
    return value / 1000.0 if match.group(2) == "ms" else value


@dataclass(frozen=True)
class Slo:
    limits: dict[str, float]
    """SLO key (ttfa, latency, rtf, stall) -> the largest acceptable value."""

    @classmethod
    def parse(cls, text: str) -> Slo:
        limits: dict[str, float] = {}
        for item in filter(None, (part.strip() for part in text.split(","))):
            key, sep, value = item.partition("=")
            key = key.strip().lower()
            if not sep or key not in METRICS:
                raise ValueError(
                    f"SLO items are key=value with keys {', '.join(METRICS)}: {item!r}"
                )
            try:
                limits[key] = parse_duration(value) if key in DURATIONS else float(value)
            except ValueError as exc:
                raise ValueError(f"bad SLO value for {key}: {value!r}") from exc
        if not limits:
            raise ValueError("the SLO names no limit")
        return cls(limits)

    def meets(self, result: RequestResult) -> bool:
        return all(value_of(result, key) <= limit for key, limit in self.limits.items())

    def describe(self) -> str:
        return ", ".join(f"{key} ≤ {format_limit(key, v)}" for key, v in self.limits.items())


def value_of(result: RequestResult, key: str) -> float:
    """A request's figure for an SLO key; a failed request misses every limit."""
    value = getattr(result, METRICS[key])
    if not result.ok or value is None:
        return math.inf
    return float(value)


def format_limit(key: str, value: float) -> str:
    if key in DURATIONS:
        return f"{value * 1000:g} ms"
    return f"{value:g}"
