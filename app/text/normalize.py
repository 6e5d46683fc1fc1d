"""English text normalization: what is written, rewritten as it is said.

    normalize_text(text: str) -> str

Orpheus models read raw digits, symbols and abbreviations badly ("$5.20", "Dr.",
"10:30"), so the gateway speaks them out before segmentation. In order:

1. control and format characters removed, markdown and HTML markup stripped
   (app/text/markdown.py);
2. Orpheus emotion tags (`<laugh>`, app/text/tags.py) set aside, untouched, and each
   run of text between them normalized on its own;
3. angle-bracket spans removed, so no output can spell a control token such as
   `<|eot_id|>` or `<custom_token_3>`, and emoji dropped;
4. URLs and e-mail addresses spoken (app/text/web.py);
5. dates, times, years and decades (app/text/datetimes.py);
6. titles and abbreviations (app/text/abbreviations.py);
7. symbols, then phone numbers, money, percentages, units, ranges, ordinals and every
   other number (app/text/numerals.py, spelled by num2words), then the symbols left.

Paragraphs stay separated by a blank line; other whitespace collapses to one space.
The function is pure and total: any string in, a string out, never an exception.
"""

from __future__ import annotations

import re
import unicodedata

import emoji

from app.text.abbreviations import expand_abbreviations
from app.text.datetimes import speak_dates_and_times
from app.text.markdown import strip_markdown
from app.text.numerals import speak_quantities
from app.text.symbols import speak_symbols_after, speak_symbols_before, strip_angle_brackets
from app.text.tags import EMOTION_TAG
from app.text.web import speak_web_addresses

_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+(?=[.,;:!?)\]])")


def normalize_text(text: str) -> str:
    """`text` as it should be spoken (see the module doc); blank text gives ""."""
    # re.split with one group: even items are text, odd items the tag names. Tags are
    # never handed to the rules, so no rule can rewrite or remove one.
    runs = EMOTION_TAG.split(strip_markdown(_visible(text)))
    spoken = "".join(
        f" <{run.lower()}> " if i % 2 else _normalize_run(run) for i, run in enumerate(runs)
    )
    paragraphs = (" ".join(paragraph.split()) for paragraph in spoken.split("\n\n"))
    return "\n\n".join(_SPACE_BEFORE_PUNCTUATION.sub("", p) for p in paragraphs if p)


def _visible(text: str) -> str:
    """Control and format characters out: soft hyphens and zero-width joiners vanish,
    line and paragraph separators become line breaks, other controls spaces."""
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cf":
            continue
        if category in ("Zl", "Zp"):
            ch = "\n"
        elif category == "Cc" and ch not in "\n\t":
            ch = " "
        out.append(ch)
    return "".join(out)


def _normalize_run(text: str) -> str:
    text = strip_angle_brackets(text)
    if not text.isascii():  # the emoji scan is a quarter of the cost: skip it when it can
        # The emoji data lists ©, ® and ™ as emoji: the first is worth saying.
        text = emoji.replace_emoji(text.replace("©", " copyright "), replace=" ")
    text = speak_web_addresses(text)
    text = speak_dates_and_times(text)
    text = expand_abbreviations(text)
    text = speak_symbols_before(text)
    text = speak_quantities(text)
    return speak_symbols_after(text)
