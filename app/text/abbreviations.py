"""Titles and common abbreviations, written out as they are said.

"Dr. Smith" -> "Doctor Smith", "St. Louis" -> "Saint Louis", "Elm St." -> "Elm Street",
"e.g." -> "for example", "vs." -> "versus", "No. 5" -> "number 5". An abbreviation that
can end a sentence ("etc.", "Inc.", "Jr.") keeps its full stop when a sentence
evidently ends there (a capital letter or the end of the text follows).
"""

from __future__ import annotations

import re

# What may follow the last word of a sentence: a capitalized word, an opening quote or
# bracket, or the end of the text.
_SENTENCE_FOLLOWS = re.compile(r"\s+[A-Z\"“(]|\s*$")

_TITLES = {
    "Mr": "Mister",
    "Mrs": "Missus",
    "Ms": "Miz",
    "Prof": "Professor",
    "Gen": "General",
    "Sen": "Senator",
    "Rep": "Representative",
    "Gov": "Governor",
    "Capt": "Captain",
    "Lt": "Lieutenant",
    "Col": "Colonel",
    "Sgt": "Sergeant",
    "Rev": "Reverend",
    "Hon": "Honorable",
    "Mt": "Mount",
    "Ft": "Fort",
}
_TITLE = re.compile(r"\b(?P<word>" + "|".join(_TITLES) + r")\.(?=\s)")
# British style writes Mr, Mrs, Ms and Dr without a stop.
_BARE_TITLE = re.compile(r"\b(?P<word>Mr|Mrs|Ms|Dr)(?=\s+[A-Z])")
_DOCTOR_OR_DRIVE = re.compile(r"\bDr\.")
_SAINT_OR_STREET = re.compile(r"\bSt\.")
_FINAL = {
    "etc": "et cetera",
    "Inc": "Incorporated",
    "Ltd": "Limited",
    "Co": "Company",
    "Corp": "Corporation",
    "Jr": "Junior",
    "Sr": "Senior",
    "Ave": "Avenue",
    "Blvd": "Boulevard",
    "Rd": "Road",
    "Dept": "Department",
    "Bros": "Brothers",
    "approx": "approximately",
}
_FINAL_ABBREVIATION = re.compile(r"\b(?P<word>" + "|".join(_FINAL) + r")\.")
_INLINE = [
    (re.compile(r"\be\.\s?g\.(?=[\s,:;])", re.IGNORECASE), "for example"),
    (re.compile(r"\bi\.\s?e\.(?=[\s,:;])", re.IGNORECASE), "that is"),
    (re.compile(r"\bvs\.?(?=\s)"), "versus"),
    (re.compile(r"\bcf\.(?=\s)"), "compare"),
    (re.compile(r"\b[Nn]o\.(?=\s?\d)"), "number"),
    (re.compile(r"\b[Ff]ig\.(?=\s?\d)"), "figure"),
    (re.compile(r"(?<!\w)w/o(?=\s)"), "without"),
    (re.compile(r"(?<!\w)w/(?=\s)"), "with"),
]
_MERIDIEM = re.compile(r"\b(?P<letter>[ap])\.m\.", re.IGNORECASE)


def keeps_stop(text: str, end: int) -> bool:
    """True when a sentence evidently ends at `end` in `text`."""
    return _SENTENCE_FOLLOWS.match(text, end) is not None


def expand_abbreviations(text: str) -> str:
    """Write out the titles and abbreviations in `text` (see the module doc)."""
    text = _TITLE.sub(lambda m: _TITLES[m["word"]], text)
    text = _BARE_TITLE.sub(lambda m: "Doctor" if m["word"] == "Dr" else _TITLES[m["word"]], text)
    text = _DOCTOR_OR_DRIVE.sub(_doctor_or_drive, text)
    text = _SAINT_OR_STREET.sub(_saint_or_street, text)
    text = _FINAL_ABBREVIATION.sub(lambda m: _with_stop(m, _FINAL[m["word"]]), text)
    for pattern, words in _INLINE:
        text = pattern.sub(words, text)
    return _MERIDIEM.sub(lambda m: _with_stop(m, m["letter"].upper() + "M"), text)


def _with_stop(match: re.Match[str], words: str) -> str:
    return words + "." if keeps_stop(match.string, match.end()) else words


def _doctor_or_drive(match: re.Match[str]) -> str:
    text, start = match.string, match.start()
    if re.match(r"\s+[A-Z]", text[match.end() :]):
        return "Doctor"
    # "Mulholland Dr." names a road: a capitalized word stands before it.
    if re.search(r"\b[A-Z][a-z]+\s+$", text[max(0, start - 40) : start]):
        return _with_stop(match, "Drive")
    return _with_stop(match, "Doctor")


def _saint_or_street(match: re.Match[str]) -> str:
    if re.match(r"\s+[A-Z]", match.string[match.end() :]):
        return "Saint"
    return _with_stop(match, "Street")
