"""Markdown (and stray HTML) reduced to the text a listener should hear.

Parsed by markdown-it-py (CommonMark), so emphasis, links, code spans, escapes and
entities are read as a renderer would, not guessed by regular expressions. What stays:
the text of paragraphs, headings, list items, block quotes, link labels, image
descriptions and code (fence markers removed); ordered lists keep their numbers ("1.
..."). What goes: emphasis markers, bullets, heading hashes, link and image targets,
rules and HTML tags, except the
Orpheus emotion tags, which markdown-it sees as inline HTML and which are kept.
Headings and list items that end without punctuation get a full stop, so each is its
own sentence. Blocks are separated by a blank line.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.token import Token

from app.text.tags import EMOTION_TAG

_PARSER = MarkdownIt("commonmark")
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_ENDS_SENTENCE = re.compile(r"[.!?:;…][\"'”’)\]]*$")


def strip_markdown(text: str) -> str:
    """`text` without its markdown and HTML markup (see the module doc)."""
    blocks: list[str] = []
    item_prefix = ""
    depth = 0  # inside headings and list items, blocks end like sentences
    for token in _PARSER.parse(text):
        kind = token.type
        if kind in ("heading_open", "list_item_open"):
            depth += 1
            if kind == "list_item_open" and token.info:
                item_prefix = f"{token.info}{token.markup} "
        elif kind in ("heading_close", "list_item_close"):
            depth -= 1
        elif kind == "inline":
            line = _inline_text(token.children or [])
            if line.strip():
                if depth and not _ENDS_SENTENCE.search(line.rstrip()):
                    line = line.rstrip() + "."
                blocks.append(item_prefix + line.strip())
            item_prefix = ""
        elif kind in ("fence", "code_block"):
            blocks.append(token.content.strip())
        elif kind == "html_block":
            blocks.append(_strip_html(token.content).strip())
    return "\n\n".join(block for block in blocks if block)


def _inline_text(children: list[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "image":
            parts.append(_inline_text(child.children or []))
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "html_inline":
            parts.append(child.content if EMOTION_TAG.fullmatch(child.content) else " ")
    return "".join(parts)


def _strip_html(html: str) -> str:
    return _HTML_TAG.sub(lambda m: m.group() if EMOTION_TAG.fullmatch(m.group()) else " ", html)
