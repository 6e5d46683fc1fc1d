"""A saved run (`results.json`) read back: its requests, and for a sweep its levels, so that
`python -m stress_test report` can judge it again under another SLO without re-running it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from stress_test.load import Level
from stress_test.measure import RequestResult
from stress_test.results import RESULTS_FILE
from stress_test.slo import Slo
from stress_test.stats import summarize

_FIELDS = {f.name for f in dataclasses.fields(RequestResult)}


@dataclasses.dataclass(frozen=True)
class SavedRun:
    mode: str
    slo: Slo
    results: list[RequestResult]
    """The measured requests (warm-ups left out)."""
    durations: dict[int, float]
    """sweep: seconds each level was held."""

    def levels(self, slo: Slo) -> list[Level]:
        by_level: dict[int, list[RequestResult]] = {}
        for result in self.results:
            by_level.setdefault(int(result.phase.removeprefix("c=")), []).append(result)
        return [
            Level(c, self.durations.get(c, 0.0), rs, summarize(rs, slo))
            for c, rs in sorted(by_level.items())
        ]


def _result(data: dict[str, Any]) -> RequestResult:
    values = {k: v for k, v in data.items() if k in _FIELDS}
    values["timeline"] = [tuple(point) for point in values.get("timeline", [])]
    values["stalls"] = [tuple(span) for span in values.get("stalls", [])]
    return RequestResult(**values)


def load_run(path: Path) -> SavedRun:
    """`path`: a results.json or the folder holding it."""
    file = path / RESULTS_FILE if path.is_dir() else path
    document = json.loads(file.read_text("utf-8"))
    results = [_result(r) for r in document["requests"] if r["phase"] != "warmup"]
    levels = (document.get("sweep") or {}).get("levels", [])
    return SavedRun(
        mode=document["mode"],
        slo=Slo(dict(document["settings"]["slo"])),
        results=results,
        durations={level["concurrency"]: level["duration"] for level in levels},
    )
