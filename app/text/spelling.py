"""Numbers in words, American style, spelled by num2words.

num2words was chosen over inflect by measurement (`bench/number_words.py`,
docs/benchmarks.md): all 24 forms right against 20, and 2.4–3.4 times faster; inflect
has no year reading ("twenty zero five" for 2005). The British "and" and the commas
num2words writes ("one thousand, nine hundred and ninety-nine") are dropped: a comma
makes the model pause mid-number.
"""

from __future__ import annotations

from num2words import num2words

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Beyond this many digits a number is an identifier, not a quantity: read digit by digit.
MAX_CARDINAL_DIGITS = 15


def _clean(words: str) -> str:
    return " ".join(words.replace(",", " ").replace(" and ", " ").split())


def digits(text: str) -> str:
    """Each digit of `text` in words, other characters dropped: "0123" -> "zero one two three"."""
    return " ".join(DIGIT_WORDS[int(ch)] for ch in text if ch.isdigit())


def cardinal(value: int) -> str:
    """`1999` -> "one thousand nine hundred ninety-nine"; negatives say "minus"."""
    if value < 0:
        return "minus " + cardinal(-value)
    if len(str(value)) > MAX_CARDINAL_DIGITS:
        return digits(str(value))
    return _clean(num2words(value))


def ordinal(value: int) -> str:
    """`22` -> "twenty-second"."""
    if len(str(value)) > MAX_CARDINAL_DIGITS:
        return digits(str(value))
    return _clean(num2words(value, to="ordinal"))


def year(value: int) -> str:
    """`1999` -> "nineteen ninety-nine", `2005` -> "two thousand five", `2024` -> "twenty
    twenty-four"."""
    return _clean(num2words(value, to="year"))


def number(text: str) -> str:
    """A written number in words: "1,234.5" -> "one thousand two hundred thirty-four point five".

    Accepts an optional sign (`-`, `−`, `+`), thousands commas and a decimal part; the
    digits after the point are read one by one ("3.14" -> "three point one four").
    """
    sign = ""
    if text[:1] in "-−":
        sign, text = "minus ", text[1:]
    elif text[:1] == "+":
        sign, text = "plus ", text[1:]
    whole, _, fraction = text.replace(",", "").partition(".")
    spoken = cardinal(int(whole)) if whole else ""
    if fraction:
        spoken = f"{spoken} point {digits(fraction)}".strip()
    return sign + spoken


def plural(words: str) -> str:
    """The plural of a spelled number's last word: "nineteen ninety" -> "nineteen nineties"."""
    head, _, last = words.rpartition(" ")
    if last.endswith("y"):
        last = last[:-1] + "ies"
    elif last.endswith("x"):
        last += "es"
    else:
        last += "s"
    return f"{head} {last}".strip()
