"""`--save DIR`: the run as JSON (every request, the summary, the exact command, the
gateway's `/v1/models` answer), written next to the plots."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stress_test.load import Level, capacity
from stress_test.measure import RequestResult
from stress_test.stats import Summary

RESULTS_FILE = "results.json"


def plain(value: Any) -> Any:
    """JSON-ready: dataclasses as objects, tuples as lists, NaN and infinity as null."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def summary_document(summary: Summary) -> dict[str, Any]:
    document: dict[str, Any] = plain(summary)
    document["failed"] = summary.failed
    return document


def run_document(
    *,
    mode: str,
    command: Sequence[str],
    settings: dict[str, Any],
    models: dict[str, Any],
    started_at: str,
    warmup: Sequence[RequestResult],
    results: Sequence[RequestResult],
    summary: Summary | None,
    levels: Sequence[Level] = (),
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "mode": mode,
        "command": list(command),
        "settings": plain(settings),
        "started_at": started_at,
        "gateway_models": models,
        "summary": summary_document(summary) if summary is not None else None,
    }
    if mode == "sweep":
        held, broke = capacity(levels)
        document["sweep"] = {
            "capacity": held,
            "breaks_at": broke,
            "levels": [
                {
                    "concurrency": level.concurrency,
                    "duration": level.duration,
                    "summary": summary_document(level.summary),
                }
                for level in levels
            ],
        }
    document["requests"] = [plain(r) for r in [*warmup, *results]]
    return document


def write_json(directory: Path, document: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / RESULTS_FILE
    path.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", "utf-8")
    return path
