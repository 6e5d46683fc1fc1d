"""What does the text front-end cost before the first segment can be generated?

Times `prepare_text` (normalize_text, then split_segments with the default limits) on
one sentence and on a full 4,096-character input that starts with the same sentence,
and on adversarial 4,096-character inputs (the slowest is reported): the difference is
what a long input adds to the time to first audio. Best of ``--repeat`` runs.

    python bench/text_frontend.py [--repeat 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import Settings
from app.text.frontend import prepare_text

FIRST = "Dr. Smith paid $5.20 at 10:30 on Jan. 5, 2024 <laugh> for 3 kg of apples."
FILLER = (
    "The committee met again on 2024-03-15, e.g. to discuss the 40–60% rise; "
    "see https://example.com/report.v2 or call 555-123-4567. Nobody was surprised. "
    "**Prices** rose by $1,250.75 in the U.S. since 1999, about 12 km from St. Louis. "
)
LONG = (FIRST + " " + FILLER * 20)[:4096]
ADVERSARIAL = {
    "digits": "1" * 4096,
    "digit groups": "1,2.3:4-5/6 " * 341,
    "URLs": "https://a.b/" * 341,
    "short lines": "a\n" * 2048,
    "list": "".join(f"{i}. item\n" for i in range(500))[:4096],
    "emphasis": "**a** " * 682,
    "brackets": "<" * 2048 + ">" * 2048,
    "emoji": "😀" * 4096,
    "titles": "Dr. " * 1024,
    "money": "$1.00 " * 682,
    "dates": "Jan 5, 2024 " * 341,
    "tags": "<laugh> " * 512,
}


def best_ms(text: str, repeat: int, settings: Settings) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        prepare_text(
            text,
            normalize=True,
            max_chars=settings.segment_max_chars,
            first_max_chars=settings.segment_first_max_chars,
        )
        best = min(best, time.perf_counter() - started)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}; SEGMENT_MAX_CHARS={settings.segment_max_chars}, "
        f"SEGMENT_FIRST_MAX_CHARS={settings.segment_first_max_chars}"
    )
    spoken = prepare_text(
        LONG,
        normalize=True,
        max_chars=settings.segment_max_chars,
        first_max_chars=settings.segment_first_max_chars,
    )
    short_ms = best_ms(FIRST, args.repeat, settings)
    long_ms = best_ms(LONG, args.repeat, settings)
    print(f"one sentence ({len(FIRST)} chars): {short_ms:.2f} ms")
    print(
        f"long input ({len(LONG)} chars -> {len(spoken.normalized)} normalized, "
        f"{len(spoken.segments)} segments): {long_ms:.2f} ms (+{long_ms - short_ms:.2f} ms)"
    )
    worst = max((best_ms(text, 3, settings), name) for name, text in ADVERSARIAL.items())
    print(f"slowest adversarial 4,096-char input: {worst[0]:.2f} ms ({worst[1]})")


if __name__ == "__main__":
    main()
