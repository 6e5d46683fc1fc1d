"""`--save DIR`: PNG plots (matplotlib, no display needed): TTFA and RTF CDFs (and for
WebSocket runs the first sentence's TTFA), per-stream timelines (audio received vs what a
player starting at the first audio had played), and for `sweep` the p99 figures and goodput
against concurrency."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from stress_test.load import Level
from stress_test.measure import RequestResult
from stress_test.slo import Slo

TIMELINE_STREAMS = 8


def _cdf(
    path: Path,
    groups: dict[str, list[float]],
    *,
    xlabel: str,
    limit: float | None,
    scale: float = 1.0,
) -> Path:
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    ax = figure.subplots()
    for label, values in groups.items():
        ordered = sorted(v * scale for v in values if math.isfinite(v))
        if ordered:
            ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
            ax.step(ordered, ys, where="post", label=f"{label} (n={len(ordered)})")
    if limit is not None:
        ax.axvline(limit * scale, color="red", linestyle="--", label="SLO")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("share of requests")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    figure.savefig(path, dpi=100)
    return path


def _played(result: RequestResult) -> tuple[list[float], list[float]]:
    """The player's position over time: from the first audio, flat while it stalls."""
    if result.ttfa is None:
        return [], []
    xs, ys = [result.ttfa], [0.0]
    shift = 0.0
    for start, end in result.stalls:
        xs += [start, end]
        position = start - result.ttfa - shift
        ys += [position, position]
        shift += end - start
    xs.append(result.ttfa + shift + result.audio_seconds)
    ys.append(result.audio_seconds)
    return xs, ys


def _timeline(ax: Axes, result: RequestResult) -> None:
    if result.timeline:
        xs = [0.0] + [t for t, _ in result.timeline]
        ys = [0.0] + [a for _, a in result.timeline]
        ax.step(xs, ys, where="post", label="received")
    px, py = _played(result)
    if px:
        ax.plot(px, py, linestyle="--", label="played")
    for start, end in result.stalls:
        ax.axvspan(start, end, color="red", alpha=0.2)
    state = "ok" if result.ok else f"failed: {result.cause}"
    ax.set_title(f"#{result.index} {result.phase} {result.text_kind} ({state})", fontsize="small")
    ax.grid(alpha=0.3)


def timelines(path: Path, results: Sequence[RequestResult]) -> Path:
    """The streams that stalled most (then the slowest to start), one panel each."""
    chosen = sorted(results, key=lambda r: (-r.stall_seconds, -(r.ttfa or 0.0), r.index))
    chosen = sorted(chosen[:TIMELINE_STREAMS], key=lambda r: r.index)
    columns = min(4, max(1, len(chosen)))
    rows = max(1, math.ceil(len(chosen) / columns))
    figure = Figure(figsize=(3.6 * columns, 2.8 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for ax, result in zip(axes.flat, chosen, strict=False):
        _timeline(ax, result)
    for ax in list(axes.flat)[len(chosen) :]:
        ax.set_visible(False)
    if chosen:
        axes.flat[0].legend(fontsize="x-small", loc="upper left")
    figure.supxlabel("seconds since the request was sent")
    figure.supylabel("audio seconds")
    figure.suptitle(
        "audio received vs played by a player starting at the first audio (red: stalls)"
    )
    figure.savefig(path, dpi=100)
    return path


def sweep_curves(path: Path, levels: Sequence[Level], slo: Slo) -> Path:
    figure = Figure(figsize=(10, 7), layout="constrained")
    axes = figure.subplots(2, 2)
    x = [level.concurrency for level in levels]
    panels = (
        ("ttfa", "TTFA p99 (ms)", 1000.0),
        ("rtf", "RTF p99", 1.0),
        ("stall_seconds", "stall p99 (s)", 1.0),
    )
    limits = {"ttfa": slo.limits.get("ttfa"), "rtf": slo.limits.get("rtf")}
    limits["stall_seconds"] = slo.limits.get("stall")
    for ax, (metric, label, scale) in zip(axes.flat, panels, strict=False):
        ys = [level.summary.metrics[metric].p99 * scale for level in levels]
        ax.plot(x, ys, marker="o")
        limit = limits[metric]
        if limit is not None:
            ax.axhline(limit * scale, color="red", linestyle="--", label="SLO")
            ax.legend(fontsize="small")
        ax.set_ylabel(label)
    goodput = axes.flat[3]
    goodput.plot(x, [level.summary.goodput * 100 for level in levels], marker="o")
    goodput.set_ylabel("goodput (% of requests meeting the SLO)")
    goodput.set_ylim(0, 105)
    for ax in axes.flat:
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(c) for c in x])
        ax.set_xlabel("concurrent streams")
        ax.grid(alpha=0.3)
    figure.suptitle(f"sweep (SLO: {slo.describe()})")
    figure.savefig(path, dpi=100)
    return path


def _of(groups: dict[str, list[RequestResult]], metric: str) -> dict[str, list[float]]:
    """Each group's values of `metric` over its successful requests."""
    return {
        label: [float(v) for r in results if r.ok and (v := getattr(r, metric)) is not None]
        for label, results in groups.items()
    }


def write_plots(
    directory: Path, results: Sequence[RequestResult], slo: Slo, levels: Sequence[Level] = ()
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    if levels:
        groups = {f"c={level.concurrency}": level.results for level in levels}
    else:
        groups = {"all": list(results)}
    written = [
        _cdf(
            directory / "ttfa_cdf.png",
            _of(groups, "ttfa"),
            xlabel="TTFA (ms)",
            limit=slo.limits.get("ttfa"),
            scale=1000.0,
        ),
        _cdf(
            directory / "rtf_cdf.png",
            _of(groups, "rtf"),
            xlabel="RTF (latency / audio seconds)",
            limit=slo.limits.get("rtf"),
        ),
        timelines(directory / "timelines.png", results),
    ]
    sentence = _of(groups, "sentence_ttfa")
    if any(sentence.values()):
        written.append(
            _cdf(
                directory / "sentence_ttfa_cdf.png",
                sentence,
                xlabel="first sentence's last word sent → its first audio (ms)",
                limit=None,
                scale=1000.0,
            )
        )
    if levels:
        written.append(sweep_curves(directory / "sweep.png", levels, slo))
    return written
