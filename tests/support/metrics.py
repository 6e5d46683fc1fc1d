"""Read a gateway's `/metrics` the way Prometheus does (prometheus-client's own parser)."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                self.samples[key] = sample.value

    def get(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a labelled series that does not exist yet."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Sum over every series of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for (n, lab), v in self.samples.items() if n == name and want <= lab)


def scrape(base_url: str, headers: dict[str, str] | None = None) -> Scrape:
    response = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    response.raise_for_status()
    return Scrape(response.text)


def wait_idle(base_url: str, seconds: float = 5.0) -> Scrape:
    """Scrape until no stream holds a slot (cleanup runs after the response ends)."""
    deadline = time.monotonic() + seconds
    while True:
        current = scrape(base_url)
        if current.get("tts_active_streams") == 0 or time.monotonic() > deadline:
            return current
        time.sleep(0.02)
