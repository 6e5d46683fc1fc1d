"""URLs, bare domains and e-mail addresses as they are said aloud.

"https://www.example.com/docs/a_b" -> "example dot com slash docs slash a underscore b",
"jane.doe@example.org" -> "jane dot doe at example dot org". The scheme, "www.", query
strings, fragments and a trailing slash are not read.
"""

from __future__ import annotations

import re

_TRAILING = ".,;:!?)]}'\"”’"
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_URL = re.compile(r"(?<![\w@])(?:(?:https?|ftp)://|www\.)[^\s<>\"]+", re.IGNORECASE)
_DOMAIN = re.compile(
    r"(?<![\w@./-])(?:[A-Za-z0-9-]+\.)+"
    r"(?:com|org|net|edu|gov|io|ai|dev|app|co|uk|de|fr|info|biz|tv|me)"
    r"(?:/[^\s<>\"]*)?(?![\w@-])",
    re.IGNORECASE,
)
_SCHEME = re.compile(r"^(?:(?:https?|ftp)://)?(?:www\.)?", re.IGNORECASE)
_SPOKEN = {".": " dot ", "-": " dash ", "_": " underscore ", "+": " plus ", ":": " colon "}


def speak_web_addresses(text: str) -> str:
    """Every e-mail address, URL and bare domain (common top-level domains) in words."""
    text = _EMAIL.sub(lambda m: _spoken_email(m.group()), text)
    text = _URL.sub(_spoken_url, text)
    return _DOMAIN.sub(_spoken_url, text)


def _spell(part: str) -> str:
    return "".join(_SPOKEN.get(ch, ch) for ch in part)


def _spoken_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{_spell(local)} at {_spell(domain)}"


def _spoken_url(match: re.Match[str]) -> str:
    raw = match.group()
    url = raw.rstrip(_TRAILING)
    trailing = raw[len(url) :]
    address = _SCHEME.sub("", url)
    address = re.split(r"[?#]", address, maxsplit=1)[0].rstrip("/")
    spoken = " slash ".join(_spell(part) for part in address.split("/") if part)
    return " ".join(spoken.split()) + trailing
