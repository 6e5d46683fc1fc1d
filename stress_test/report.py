"""The console report: a rich table of percentiles, errors by cause, goodput and throughput,
and the two plain-text blocks of the Scicom streaming TTS API's stress test (same labels,
so figures can be set side by side; note their percentiles index `sorted[int(q*n)-1]`,
ours are nearest-rank, which differ only near the top of small samples)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from stress_test.load import Level, capacity
from stress_test.slo import DURATIONS, format_limit
from stress_test.stats import METRICS, OPTIONAL, Distribution, Summary

MILLISECONDS = frozenset({"ttfa", "sentence_ttfa", "largest_gap"})
SECONDS = frozenset({"latency", "stall_seconds", "audio_seconds"})


def _value(metric: str, value: float) -> str:
    if math.isnan(value):
        return "–"
    if math.isinf(value):
        return "∞"
    if metric in MILLISECONDS:
        return f"{value * 1000:.0f} ms"
    if metric in SECONDS:
        return f"{value:.3f} s"
    if metric == "stall_count":
        return f"{value:.3g}"
    return f"{value:.3f}"


def percentiles_table(summary: Summary, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for column in ("min", "avg", "p50", "p90", "p95", "p99", "max"):
        table.add_column(column, justify="right")
    for metric, label in METRICS.items():
        d: Distribution = summary.metrics[metric]
        if metric in OPTIONAL and d.n == 0:
            continue
        row = (d.min, d.avg, d.p50, d.p90, d.p95, d.p99, d.max)
        table.add_row(label, *(_value(metric, v) for v in row))
    return table


def errors_table(summary: Summary) -> Table:
    table = Table(title="errors by cause", title_justify="left")
    table.add_column("cause")
    table.add_column("HTTP status", justify="right")
    table.add_column("when")
    closes = any(error.close_code is not None for error in summary.errors)
    if closes:
        table.add_column("close", justify="right")
    table.add_column("requests", justify="right")
    for error in summary.errors:
        when = "in-band, in the stream or session" if error.in_band else "response"
        status = str(error.status) if error.status is not None else "–"
        close = [str(error.close_code) if error.close_code is not None else "–"] if closes else []
        table.add_row(error.cause, status, when, *close, str(error.count))
    return table


def slo_lines(summary: Summary) -> list[str]:
    slo = summary.slo
    p99 = ", ".join(
        f"{key} {_slo_value(key, summary.slo_p99[key])} (≤ {format_limit(key, limit)})"
        for key, limit in slo.limits.items()
    )
    verdict = "meets" if summary.meets_slo else "MISSES"
    return [
        f"goodput: {summary.goodput:.1%} of {summary.requests} requests meet {slo.describe()}",
        f"p99 over all requests (a failure counts as a miss): {p99} → {verdict} the SLO",
    ]


def _slo_value(key: str, value: float) -> str:
    if math.isinf(value) or math.isnan(value):
        return "∞" if math.isinf(value) else "–"
    return f"{value * 1000:.0f} ms" if key in DURATIONS else f"{value:.3f}"


def print_summary(console: Console, summary: Summary, title: str) -> None:
    console.print(percentiles_table(summary, title))
    console.print(
        f"requests: {summary.requests}, succeeded {summary.succeeded}, failed {summary.failed}"
    )
    if summary.errors:
        console.print(errors_table(summary))
    for line in slo_lines(summary):
        console.print(line)
    console.print(
        f"throughput: {summary.audio_seconds:.1f} audio s in {summary.wall_seconds:.1f} wall s"
        f" = {summary.audio_per_wall:.2f} audio s per wall s"
    )


def scicom_blocks(summary: Summary) -> str:
    """`=== SLO LATENCY REPORT ===` and `=== AUDIO & REAL-TIME FACTOR (RTF) REPORT ===`."""
    latency, rtf = summary.metrics["latency"], summary.metrics["rtf"]
    audio = summary.metrics["audio_seconds"]
    lines = [
        "=== SLO LATENCY REPORT ===",
        f"Total Requests: {summary.requests}",
        f"Failed Requests: {summary.failed}",
        f"Min Time: {latency.min:.3f}s",
        f"Max Time: {latency.max:.3f}s",
        f"Avg Time: {latency.avg:.3f}s",
        f"P50 (Median): {latency.p50:.3f}s",
        f"P90: {latency.p90:.3f}s",
        f"P95: {latency.p95:.3f}s",
        f"P99: {latency.p99:.3f}s",
        "",
        "=== AUDIO & REAL-TIME FACTOR (RTF) REPORT ===",
        f"Avg Audio Duration: {audio.avg:.3f}s",
        "",
        "--- RTF Percentiles ---",
        f"Min RTF: {rtf.min:.3f}",
        f"Max RTF: {rtf.max:.3f}",
        f"Avg RTF: {rtf.avg:.3f}",
        f"P50 RTF: {rtf.p50:.3f}",
        f"P90 RTF: {rtf.p90:.3f}",
        f"P95 RTF: {rtf.p95:.3f}",
        f"P99 RTF: {rtf.p99:.3f}",
        "==========================",
    ]
    return "\n".join(lines)


def missed(summary: Summary) -> list[str]:
    """The SLO keys whose p99 (failures counted as misses) is over the limit."""
    return [key for key, limit in summary.slo.limits.items() if summary.slo_p99[key] > limit]


def sweep_table(levels: Sequence[Level]) -> Table:
    table = Table(
        title="sweep: p99 of the successful requests; the SLO verdict counts failures as misses"
    )
    for column in ("streams", "requests", "failed", "TTFA p99", "RTF p99", "stall p99"):
        table.add_column(column, justify="right")
    for column in ("goodput", "audio s / s", "SLO"):
        table.add_column(column, justify="right")
    for level in levels:
        s, m = level.summary, level.summary.metrics
        table.add_row(
            str(level.concurrency),
            str(s.requests),
            str(s.failed),
            _value("ttfa", m["ttfa"].p99),
            _value("rtf", m["rtf"].p99),
            _value("stall_seconds", m["stall_seconds"].p99),
            f"{s.goodput:.0%}",
            f"{s.audio_per_wall:.2f}",
            "meets" if s.meets_slo else "misses " + ", ".join(missed(s)),
        )
    return table


def capacity_line(levels: Sequence[Level]) -> str:
    held, broke = capacity(levels)
    slo = levels[0].summary.slo.describe() if levels else ""
    if held is None and broke is not None:
        return f"capacity: none: the SLO ({slo}) breaks at {broke} stream(s)"
    if broke is None:
        top = levels[-1].concurrency if levels else 0
        return f"capacity: at least {top} stream(s) meet the SLO ({slo}); it did not break"
    return f"capacity: {held} stream(s) meet the SLO ({slo}); it breaks at {broke}"


def print_sweep(console: Console, levels: Sequence[Level]) -> None:
    console.print(sweep_table(levels))
    console.print(capacity_line(levels))
