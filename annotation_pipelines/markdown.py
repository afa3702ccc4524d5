"""Frames as markdown tables, for Dagster metadata and dataset cards.

Cells hold what annotators, export files and telemetry wrote: labels, ids, file names, free
text. Each is shown as its text: markdown and HTML syntax in it is escaped, so a `|` stays in
its cell and `![](https://…)` is no image the viewer's browser fetches; a line break, which no
table cell can hold, is shown as `↵`. A GFM renderer (the Dagster UI's remark-gfm, GitHub's
cmark-gfm) also makes links of bare addresses in text, escaped or not (`https://…`, `www.…`,
`a@b.c`): a zero-width word joiner before the `://` of those schemes, after `www` and after `@`
keeps each from matching, and the text reads as it did.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable

import polars as pl

MISSING = "—"
LINE_BREAK = "↵"
# Every sequence `str.splitlines` breaks a line on: a markdown renderer ends a row on some of them.
_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
# The ASCII punctuation that opens or closes inline markdown or HTML (CommonMark lets a
# backslash escape any of it); `_` only where it can, not inside a word (`n_judgments`).
_SYNTAX = re.compile(r"[\\`*~\[\]<>|&]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
# U+2060 is drawn as nothing and joins, so no line breaks there. remark-gfm finds autolink
# literals in the parsed text, after escapes and entities are decoded, so only a character that
# stays in the text can break them: before the `:` of `http://`, `https://` and `ftp://` (the
# schemes GFM links; `s3://` and `file://` locations stay as they are, to be copied), between
# `www` and its `.`, and after an email's `@` (which also covers `mailto:` and `xmpp:`).
WORD_JOINER = "\u2060"
_AUTOLINK = re.compile(r"(?i:(?<=http)|(?<=https)|(?<=ftp))(?=://)|(?i:(?<=www)(?=\.))|(?<=@)")


def markdown_text(text: str) -> str:
    """`text` as inline markdown that renders as `text`, on one line."""
    escaped = _SYNTAX.sub(r"\\\g<0>", _LINE_BREAK.sub(LINE_BREAK, text))
    return _AUTOLINK.sub(WORD_JOINER, escaped)


def frame_to_markdown(
    frame: pl.DataFrame,
    *,
    rows: int = 20,
    text_width: int = 400,
    cell: Callable[[object], str] | None = None,
) -> str:
    """The first `rows` rows of `frame` as a GitHub-flavoured markdown table, every column,
    thousands grouped, missing values as "—", text longer than `text_width` cut with "…",
    and a note counting the rows left out. `cell`, when given, writes each cell instead (its
    text is put in the table as it is: it escapes what it must)."""
    if not frame.columns:
        return "_none_"
    written = cell or (lambda value: _cell(value, text_width))
    lines = [
        "| " + " | ".join(markdown_text(name) for name in frame.columns) + " |",
        "|" + "|".join("---" for _ in frame.columns) + "|",
    ]
    for row in frame.head(rows).iter_rows():
        lines.append("| " + " | ".join(written(value) for value in row) + " |")
    hidden = frame.height - rows
    return "\n".join(lines) + (f"\n\n_{hidden:,} more rows_" if hidden > 0 else "")


def _cell(value: object, text_width: int) -> str:
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        # Four decimals tell shares and scores apart; scientific where fixed point would show
        # only zeros or run to twenty digits.
        if value and not 1e-4 <= abs(value) < 1e15:
            return f"{value:.4e}"
        return f"{value:,.4f}"
    if isinstance(value, str):
        text = value
    elif isinstance(value, dt.datetime):
        text = f"{value:%Y-%m-%d %H:%M:%S}"
        if value.microsecond:
            text += f".{value.microsecond:06d}"
        if value.tzinfo:
            text += f" {value.tzname()}"
    elif isinstance(value, list | dict):
        text = json.dumps(value, default=str, ensure_ascii=False)
    else:
        text = str(value)
    if len(text) > text_width:
        text = text[:text_width] + "…"
    return markdown_text(text)
