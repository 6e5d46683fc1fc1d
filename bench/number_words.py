"""Which library should spell numbers for the normalizer: num2words or inflect?

Each library spells a table of the forms the normalizer needs (cardinals, ordinals,
years, decimals, negatives) through its most direct API; both get the same clean-up
the normalizer applies (no commas, no British "and"), then the result is compared with
the expected American reading. Speed: best of ``--repeat`` passes over the table, in
microseconds per number.

    python bench/number_words.py [--repeat 50] [--verbose]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

Kind = str
Speller = Callable[[Kind, str], str]

CASES: list[tuple[Kind, str, str]] = [
    ("cardinal", "0", "zero"),
    ("cardinal", "21", "twenty-one"),
    ("cardinal", "101", "one hundred one"),
    ("cardinal", "1999", "one thousand nine hundred ninety-nine"),
    (
        "cardinal",
        "1234567",
        "one million two hundred thirty-four thousand five hundred sixty-seven",
    ),
    ("cardinal", "1000000000", "one billion"),
    ("ordinal", "1", "first"),
    ("ordinal", "2", "second"),
    ("ordinal", "11", "eleventh"),
    ("ordinal", "12", "twelfth"),
    ("ordinal", "22", "twenty-second"),
    ("ordinal", "103", "one hundred third"),
    ("year", "1066", "ten sixty-six"),
    ("year", "1900", "nineteen hundred"),
    ("year", "1905", "nineteen oh-five"),
    ("year", "1999", "nineteen ninety-nine"),
    ("year", "2000", "two thousand"),
    ("year", "2005", "two thousand five"),
    ("year", "2010", "twenty ten"),
    ("year", "2024", "twenty twenty-four"),
    ("decimal", "3.14", "three point one four"),
    ("decimal", "0.05", "zero point zero five"),
    ("negative", "-5", "minus five"),
    ("negative", "-2.5", "minus two point five"),
]


def _clean(words: str) -> str:
    return " ".join(words.replace(",", "").replace(" and ", " ").split())


def num2words_speller() -> Speller:
    from num2words import num2words

    def spell(kind: Kind, text: str) -> str:
        if kind == "ordinal":
            return _clean(num2words(int(text), to="ordinal"))
        if kind == "year":
            return _clean(num2words(int(text), to="year"))
        number = float(text) if "." in text else int(text)
        return _clean(num2words(number))

    return spell


def inflect_speller() -> Speller:
    import inflect

    engine = inflect.engine()

    def spell(kind: Kind, text: str) -> str:
        if kind == "ordinal":
            return _clean(engine.ordinal(engine.number_to_words(int(text))))
        if kind == "year":
            return _clean(engine.number_to_words(int(text), group=2))
        if text.startswith("-"):
            return _clean("minus " + str(engine.number_to_words(text[1:])))
        return _clean(str(engine.number_to_words(text)))

    return spell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--verbose", action="store_true", help="print each wrong spelling")
    args = parser.parse_args()
    from importlib.metadata import version

    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}; {len(CASES)} cases"
    )
    print(f"{'library':<20} {'right':>7} {'us/number':>10}")
    for name, make in (("num2words", num2words_speller), ("inflect", inflect_speller)):
        spell = make()
        wrong = [
            (text, got, want) for kind, text, want in CASES if (got := spell(kind, text)) != want
        ]
        best = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            for kind, text, _want in CASES:
                spell(kind, text)
            best = min(best, time.perf_counter() - started)
        label = f"{name} {version(name)}"
        right = len(CASES) - len(wrong)
        print(f"{label:<20} {right:>3}/{len(CASES):<3} {best * 1e6 / len(CASES):>10.1f}")
        if args.verbose:
            for text, got, want in wrong:
                print(f"    {text}: {got!r} (want {want!r})")


if __name__ == "__main__":
    main()
