"""Clock times, dates, years and decades in words.

- Times: "10:30" -> "ten thirty", "9:05" -> "nine oh five", "10:00" -> "ten o'clock",
  "3pm" / "3 p.m." -> "three PM", "3:45 p.m." -> "three forty-five PM".
- Dates, month first as in the US: "2024-01-15", "01/15/2024" and "Jan. 15, 2024" ->
  "January fifteenth, twenty twenty-four"; "15 January 2024" -> "the fifteenth of
  January, twenty twenty-four"; "Jan. 5" -> "January fifth"; "March 2024" -> "March
  twenty twenty-four".
- Years where the context says so ("in 1999", "since 2005", "1999's", "300 BC",
  "1990–1995", "1990 and 1995") -> "nineteen ninety-nine", "two thousand five";
  decades: "1990s" -> "nineteen nineties", "the '80s" -> "the eighties". A bare
  four-digit number stays a number ("2000 people").
"""

from __future__ import annotations

import re

from app.text.abbreviations import keeps_stop
from app.text.spelling import cardinal, ordinal, plural, year

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_MONTH_BY_NAME = {name.lower(): i for i, name in enumerate(MONTHS, 1)} | {
    name[:3].lower(): i for i, name in enumerate(MONTHS, 1)
}
_MONTH_BY_NAME["sept"] = 9
_MONTH = (
    r"(?P<month>(?:January|February|March|April|May|June|July|August|September|October"
    r"|November|December)\b|(?:Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\b\.?)"
)
_DAY = r"(?P<day>[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?(?!\d)"
_YEAR = r"(?P<year>\d{4})(?!\d)"

_ISO_DATE = re.compile(
    r"(?<![\d-])(?P<year>\d{4})-(?P<month>0[1-9]|1[0-2])-(?P<day>[0-2]\d|3[01])(?![\d-])"
)
_US_DATE = re.compile(
    r"(?<![\d/])(?P<month>0?[1-9]|1[0-2])/(?P<day>[12]\d|3[01]|0?[1-9])/(?P<year>\d{4}|\d{2})(?![\d/])"
)
_MONTH_DAY = re.compile(rf"\b{_MONTH}\s+{_DAY}(?:,?\s+{_YEAR})?")
_DAY_MONTH = re.compile(rf"(?<![\d.,])\b{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?")
_MONTH_YEAR = re.compile(rf"\b{_MONTH}\s+{_YEAR}")
_MONTH_ABBREVIATION = re.compile(
    r"\b(?P<month>Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.(?=\s|$)"
)

# "p.m." takes its final stop along; in "3pm." the stop is the sentence's.
_MERIDIEM = r"(?P<meridiem>[ap])(?:\.m\.|\.?m\b)"
_CLOCK = re.compile(
    rf"(?<![\d:.])(?P<hour>[01]?\d|2[0-4]):(?P<minute>[0-5]\d)(?::(?P<second>[0-5]\d))?"
    rf"(?![\d:])(?:\s?{_MERIDIEM})?",
    re.IGNORECASE,
)
_HOUR_MERIDIEM = re.compile(rf"(?<![\d:.,])(?P<hour>1[0-2]|0?[1-9])\s?{_MERIDIEM}", re.IGNORECASE)

_DECADE = re.compile(r"(?<![\d'’])(?P<century>1[1-9]|20)(?P<decade>\d)0[’']?s\b")
_SHORT_DECADE = re.compile(r"(?:(?<=\s)|^)[’']?(?P<decade>[2-9])0s\b")
# "of" alone is no year context ("a total of 1999 votes"), "the summer of 1969" is.
_YEARS = r"1[1-9]\d\d|20\d\d"
# Two years in a row, the second later: "1990–1995", "1990 to 1995", "1990 and 1995".
_YEAR_PAIR = re.compile(
    rf"(?<![\d,.])(?P<first>{_YEARS})(?P<between>\s?[–—-]\s?|\s+(?:to|and|or|through|until)\s+)"
    rf"(?P<second>{_YEARS})(?![\d,.]\d|\s?%)"
)
_YEAR_CONTEXT = re.compile(
    r"(?P<context>(?i:\b(?:in|since|by|from|until|till|through|between|year|circa|around|before"
    r"|after|during|early|late|mid|(?:summer|winter|spring|autumn|fall|end|start|beginning"
    r"|middle|class) of)[\s-]+))"
    rf"(?P<year>{_YEARS})(?![\d,.]\d|\s?%)"
)
_ERA_YEAR = re.compile(r"(?<![\d,.])(?P<year>\d{1,4})\s?(?P<era>BC|AD|BCE|CE)\b")
_POSSESSIVE_YEAR = re.compile(rf"(?<![\d,.])(?P<year>{_YEARS})(?P<s>[’']s)\b")


def speak_dates_and_times(text: str) -> str:
    """Rewrite the times, dates, years and decades in `text` (see the module doc)."""
    text = _ISO_DATE.sub(_numeric_date, text)
    text = _US_DATE.sub(_numeric_date, text)
    text = _MONTH_DAY.sub(_month_day, text)
    text = _DAY_MONTH.sub(_day_month, text)
    text = _MONTH_YEAR.sub(lambda m: f"{_month_name(m)} {_year(m['year'])}", text)
    text = _MONTH_ABBREVIATION.sub(_month_abbreviation, text)
    text = _CLOCK.sub(_clock, text)
    text = _HOUR_MERIDIEM.sub(_hour_meridiem, text)
    text = _DECADE.sub(lambda m: plural(year(int(m["century"] + m["decade"] + "0"))), text)
    text = _SHORT_DECADE.sub(lambda m: plural(cardinal(int(m["decade"]) * 10)), text)
    text = _ERA_YEAR.sub(_era_year, text)
    text = _YEAR_PAIR.sub(_year_pair, text)
    text = _POSSESSIVE_YEAR.sub(lambda m: year(int(m["year"])) + "'s", text)
    return _YEAR_CONTEXT.sub(lambda m: m["context"] + _year(m["year"]), text)


def _year(digits: str) -> str:
    value = int(digits)
    if len(digits) == 2:
        return cardinal(value) if value >= 10 else "oh " + cardinal(value)
    return year(value)


def _month_name(match: re.Match[str]) -> str:
    return MONTHS[_MONTH_BY_NAME[match["month"].rstrip(".").lower()] - 1]


def _month_abbreviation(match: re.Match[str]) -> str:
    return _month_name(match) + ("." if keeps_stop(match.string, match.end()) else "")


def _date(month: int, day: int, year_digits: str | None) -> str:
    spoken = f"{MONTHS[month - 1]} {ordinal(day)}"
    return f"{spoken}, {_year(year_digits)}" if year_digits else spoken


def _numeric_date(match: re.Match[str]) -> str:
    return _date(int(match["month"]), int(match["day"]), match["year"])


def _month_day(match: re.Match[str]) -> str:
    month = _MONTH_BY_NAME[match["month"].rstrip(".").lower()]
    return _date(month, int(match["day"]), match["year"])


def _day_month(match: re.Match[str]) -> str:
    before = match.string[max(0, match.start() - 8) : match.start()]
    article = "" if re.search(r"\bthe\s+$", before, re.IGNORECASE) else "the "
    spoken = f"{article}{ordinal(int(match['day']))} of {_month_name(match)}"
    return f"{spoken}, {_year(match['year'])}" if match["year"] else spoken


def _meridiem(match: re.Match[str]) -> str:
    spoken = " " + match["meridiem"].upper() + "M"
    # A sentence may end right after the abbreviation ("... at 5 p.m. Then"): keep its stop.
    if match.group().endswith(".") and keeps_stop(match.string, match.end()):
        spoken += "."
    return spoken


def _clock(match: re.Match[str]) -> str:
    hour, minute = int(match["hour"]), int(match["minute"])
    if minute == 0:
        spoken = cardinal(hour) + ("" if match["meridiem"] else " o'clock")
    elif minute < 10:
        spoken = f"{cardinal(hour)} oh {cardinal(minute)}"
    else:
        spoken = f"{cardinal(hour)} {cardinal(minute)}"
    if match["second"]:
        spoken += f" and {cardinal(int(match['second']))} seconds"
    return spoken + (_meridiem(match) if match["meridiem"] else "")


def _hour_meridiem(match: re.Match[str]) -> str:
    return cardinal(int(match["hour"])) + _meridiem(match)


def _year_pair(match: re.Match[str]) -> str:
    first, second = int(match["first"]), int(match["second"])
    if second <= first:
        return match.group()
    between = match["between"].strip()
    between = "to" if between in "–—-" else between
    return f"{year(first)} {between} {year(second)}"


def _era_year(match: re.Match[str]) -> str:
    value = int(match["year"])
    spoken = year(value) if value >= 1000 else cardinal(value)
    return f"{spoken} {match['era']}"
