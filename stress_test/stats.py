"""Summaries of many requests: percentiles, error counts, goodput, throughput.

Percentiles are nearest-rank: pXX is the smallest measured value that at least XX % of the
requests do not exceed (so p99 of 50 requests is the slowest one). SLO percentiles count a
failed request as missing every limit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from stress_test.measure import RequestResult
from stress_test.slo import Slo, value_of

QUANTILES = (50, 90, 95, 99)
METRICS: dict[str, str] = {
    "ttfa": "TTFA",
    "sentence_ttfa": "sentence TTFA",
    "latency": "latency",
    "rtf": "RTF",
    "stall_seconds": "stall time",
    "stall_count": "stalls",
    "largest_gap": "largest gap",
    "audio_seconds": "audio",
}
"""RequestResult attribute -> label, in report order."""
OPTIONAL = frozenset({"sentence_ttfa"})
"""Figures only some endpoints have (WebSocket): left out of a report that has none."""


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Distribution:
    n: int
    min: float
    avg: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        if not values:
            return cls(0, *([math.nan] * 7))
        p50, p90, p95, p99 = (percentile(values, q) for q in QUANTILES)
        return cls(
            len(values), min(values), sum(values) / len(values), p50, p90, p95, p99, max(values)
        )


@dataclass(frozen=True)
class ErrorCount:
    cause: str
    status: int | None
    in_band: bool
    count: int
    close_code: int | None = None


@dataclass(frozen=True)
class Summary:
    requests: int
    succeeded: int
    errors: list[ErrorCount]
    metrics: dict[str, Distribution]
    """Over the successful requests."""
    slo: Slo
    goodput: float
    """Share of all requests that met every SLO limit."""
    slo_p99: dict[str, float]
    meets_slo: bool
    """Every SLO figure's p99 over all requests is within its limit."""
    wall_seconds: float
    audio_seconds: float
    audio_per_wall: float
    """Audio seconds delivered (successful requests) per wall-clock second."""

    @property
    def failed(self) -> int:
        return self.requests - self.succeeded


def summarize(results: Sequence[RequestResult], slo: Slo) -> Summary:
    ok = [r for r in results if r.ok]
    metrics: dict[str, Distribution] = {}
    for name in METRICS:
        values = [float(v) for r in ok if (v := getattr(r, name)) is not None]
        metrics[name] = Distribution.of(values)
    causes = Counter(
        (r.cause or "", r.status, r.in_band, r.close_code) for r in results if not r.ok
    )
    errors = [ErrorCount(c, s, b, n, code) for (c, s, b, code), n in causes.most_common()]
    slo_p99 = {key: percentile([value_of(r, key) for r in results], 99) for key in slo.limits}
    if results:
        first = min(r.sent_at for r in results)
        wall = max(r.sent_at + r.latency for r in results) - first
    else:
        wall = 0.0
    audio = sum(r.audio_seconds for r in ok)
    return Summary(
        requests=len(results),
        succeeded=len(ok),
        errors=errors,
        metrics=metrics,
        slo=slo,
        goodput=sum(slo.meets(r) for r in results) / len(results) if results else 0.0,
        slo_p99=slo_p99,
        meets_slo=bool(results) and all(slo_p99[k] <= v for k, v in slo.limits.items()),
        wall_seconds=wall,
        audio_seconds=audio,
        audio_per_wall=audio / wall if wall > 0 else 0.0,
    )
