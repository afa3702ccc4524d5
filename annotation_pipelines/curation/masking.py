"""Mask personal data in free text: e-mail addresses, phone numbers, configured patterns.

Phone numbers are found by Google's libphonenumber matcher (`phonenumbers`) at
`STRICT_GROUPING` leniency: a candidate must be a valid number for its country (national
numbers are read in the default region; `+CC` and `00CC` numbers in any region, and numbers
dialled with the region's own exit code, such as `011CC` in the US and Canada) and, when
written with separators, grouped as that country groups its numbers. That rejects dates
(2026-11-22), item ids (20261122-10), versions, prices and most order numbers, which a digit-run
regex cannot tell from phone numbers. What it cannot reject is a bare run of digits that is a
valid number (an order number 2025550173 is a valid US number): masking those is the safe side.

libphonenumber reads only the default region's exit code as international: in the US (011),
Japan (010) or Australia (0011), `0044 20 7946 0958` is read as an invalid national number. So
the matcher also reads the text with each `00` that opens a number written as `+`; a `00` after
a letter, a digit, a decimal point or an id's `-` or `/`, or a `00` group inside a number, is not
an exit code. A number found in either reading is masked.

The matcher is pure Python (about 10k texts/s), so it only runs on texts that contain a run of
at least `PHONE_MIN_DIGITS` digits (separators allowed) — a vectorized Polars prefilter; text
without such a run cannot hold a phone number. E-mail addresses and configured patterns are
Polars regex replacements over the whole column.

Two options serve the exported formats. `preserve_length` replaces each match by
`MASK_CHARACTER` once per character it covers, keeping the match's whitespace: a text whose
span labels are character offsets keeps every offset, and keeps its tokens (a masked
"(415) 555-0132" is "***** ********", two tokens as before), so token-level tags do not move.
`structured` masks a text that is a JSON object or array inside its string values, its object
keys and its integers: masking the JSON text itself could break it (in
`"line\\njane@example.com"` the address pattern starts at the `n` of the escape, leaving
`\\[redacted]`, an invalid escape) and misses values written with escapes
(`jane\\u0040example.com`). An integer is read as its digits, as the phone matcher reads a bare
run of digits in text (a rating or an id too short or not valid as a number is kept); one with a
match becomes the masked text, a JSON string. A masked key that collides with another key of its
object gets a ` (2)`, ` (3)`... suffix in key order. Numbers with a fraction or an exponent are
measurements and are not read. A text that is not a JSON object or array is masked as text. A
JSON text is re-encoded only when something in it was masked; every other text is kept byte for
byte.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import phonenumbers
import polars as pl

MASK = "[redacted]"
# ASCII, so a masked ASCII match keeps its length in bytes too; not a letter or digit, so a
# tokenizer does not read a masked run as a word of the language.
MASK_CHARACTER = "*"

# Strict: a local part that starts and ends with a letter or digit, a domain of valid labels
# (letters, digits, inner hyphens) and an alphabetic top-level domain of 2-24 letters.
EMAIL_PATTERN = (
    r"(?i)\b[a-z0-9](?:[a-z0-9._%+-]{0,62}[a-z0-9_%+-])?"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}\b"
)

# The shortest phone numbers written with their area code or country code have 7 digits
# (a few small territories have shorter local numbers: add a pattern for those).
PHONE_MIN_DIGITS = 7
PHONE_CANDIDATE = r"\d(?:[\s().\-/]{0,3}\d){" + str(PHONE_MIN_DIGITS - 1) + ",}"
PHONE_LENIENCY = phonenumbers.Leniency.STRICT_GROUPING
# `00` opening a number and followed by a country code (which starts 1-9), with at most one
# separator between them: `0044 20…`, `00 44 20…`, `(0049) 30…`. Not a `00` group inside a
# number (`01 42 68 00 53`), which the `+` would split.
_EXIT_CODE_00 = re.compile(r"(?<![\w.,+\-/])(?<!\d[ .\-/])00[ .\-]?(?=[1-9])")


@dataclass(frozen=True, kw_only=True)
class MaskCounts:
    """How many rows had something masked, in total and per kind (a row may count in several)."""

    rows: int
    rows_masked: int
    email: int
    phone: int
    custom: int

    @property
    def share(self) -> float:
        """The share of rows with anything masked (0 for no rows)."""
        return self.rows_masked / self.rows if self.rows else 0.0

    def by_kind(self) -> dict[str, int]:
        return {"email": self.email, "phone": self.phone, "custom": self.custom}


# Marks around each match while a length-preserving mask is computed: Unicode noncharacters,
# reserved for a program's internal use and never in interchanged text.
_OPEN, _CLOSE = "\ufdd0", "\ufdd1"
_MARKED = re.compile(f"{_OPEN}([^{_CLOSE}]*){_CLOSE}")
_KINDS = ("email", "phone", "custom")


def _same_length(matched: str) -> str:
    return "".join(ch if ch.isspace() else MASK_CHARACTER for ch in matched)


@functools.cache
def _exit_code_00_is_native(region: str) -> bool:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    prefix = metadata.international_prefix if metadata is not None else None
    return prefix is not None and re.fullmatch(prefix, "00") is not None


def _with_plus_for_00(text: str) -> tuple[str, dict[int, int]]:
    """`text` with each `00` exit code (and a separator after it) written as spaces and a `+`,
    so every other character keeps its position; and, per `+`, where its `00` starts."""
    starts: dict[int, int] = {}
    pieces: list[str] = []
    cursor = 0
    for match in _EXIT_CODE_00.finditer(text):
        plus = match.end() - 1
        starts[plus] = match.start()
        pieces += [text[cursor : match.start()], " " * (plus - match.start()), "+"]
        cursor = match.end()
    pieces.append(text[cursor:])
    return "".join(pieces), starts


def _phone_number_spans(text: str, *, region: str) -> list[tuple[int, int]]:
    """The (start, end) of each phone number in `text`, in order, overlapping ones joined."""
    found = [
        (match.start, match.end)
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=PHONE_LENIENCY)
    ]
    if not _exit_code_00_is_native(region):
        rewritten, starts = _with_plus_for_00(text)
        if starts:
            found += [
                (starts.get(match.start, match.start), match.end)
                for match in phonenumbers.PhoneNumberMatcher(
                    rewritten, region, leniency=PHONE_LENIENCY
                )
            ]
            found.sort()
    spans: list[tuple[int, int]] = []
    for start, end in found:
        if spans and start < spans[-1][1]:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    return spans


def mask_phone_numbers(text: str, *, region: str, preserve_length: bool = False) -> str:
    """`text` with every phone number the matcher finds replaced by MASK (with
    `preserve_length`: by MASK_CHARACTER for each character but whitespace)."""
    for start, end in reversed(_phone_number_spans(text, region=region)):
        replacement = _same_length(text[start:end]) if preserve_length else MASK
        text = text[:start] + replacement + text[end:]
    return text


def _mask_phones_in(series: pl.Series, *, region: str, preserve_length: bool) -> pl.Series:
    candidates = series.str.contains(PHONE_CANDIDATE).fill_null(False)
    positions = candidates.arg_true()
    if positions.len() == 0:
        return series
    masked = [
        mask_phone_numbers(text, region=region, preserve_length=preserve_length)
        for text in series.gather(positions)
    ]
    # scatter writes in place: work on a copy, the caller compares before and after.
    return series.clone().scatter(positions, pl.Series(masked, dtype=pl.String))


def _replace(series: pl.Series, pattern: str, *, preserve_length: bool) -> pl.Series:
    """Every match of `pattern` in `series` replaced by MASK, or by as many MASK_CHARACTERs."""
    if not preserve_length:
        return series.str.replace_all(pattern, MASK)
    # Polars finds the matches (the same engine and syntax as the MASK path); Python only
    # rewrites the marked ones, in the few texts that have any.
    marked = series.str.replace_all(pattern, f"{_OPEN}$0{_CLOSE}")
    positions = (marked != series).fill_null(False).arg_true()
    if positions.len() == 0:
        return series
    masked = [
        _MARKED.sub(lambda match: _same_length(match.group(1)), text)
        for text in marked.gather(positions)
    ]
    return series.clone().scatter(positions, pl.Series(masked, dtype=pl.String))


def _combined(patterns: Sequence[str]) -> str | None:
    if not patterns:
        return None
    probe = pl.Series([""], dtype=pl.String)
    for pattern in patterns:
        # Compiled by Polars, the engine that runs it (Rust regex syntax: no look-around).
        try:
            probe.str.contains(pattern)
        except pl.exceptions.ComputeError as error:
            reason = str(error).split("\n\nThis error occurred")[0]
            raise ValueError(f"mask pattern {pattern!r} is not a valid regex: {reason}") from None
    return "|".join(f"(?:{pattern})" for pattern in patterns)


def _mask_texts(
    text: pl.Series, *, region: str, custom: str | None, preserve_length: bool
) -> tuple[pl.Series, dict[str, pl.Series]]:
    """The masked texts and, per kind, which of them that kind changed."""
    emails = _replace(text, EMAIL_PATTERN, preserve_length=preserve_length)
    phones = _mask_phones_in(emails, region=region, preserve_length=preserve_length)
    final = _replace(phones, custom, preserve_length=preserve_length) if custom else phones
    changed = {
        "email": emails != text,
        "phone": phones != emails,
        "custom": final != phones,
    }
    return final, {kind: flags.fill_null(False) for kind, flags in changed.items()}


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strings_of(value: Any) -> Iterator[str]:
    """The texts of decoded JSON the detectors read, depth first: every string value, every
    object key (before its value) and the digits of every integer. A phone number stored as a
    JSON number is an integer; a number with a fraction or exponent is a measurement
    (coordinates, a score), not read."""
    if isinstance(value, str):
        yield value
    elif _is_integer(value):
        yield str(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings_of(item)


def _with_strings(value: Any, strings: Iterator[str]) -> Any:
    """`value` with the texts `_strings_of` reads replaced, in its order, from `strings`. An
    integer whose text changed becomes that (masked) text; a masked key that collides with
    another key of its object takes the first free ` (n)` suffix, in key order."""
    if isinstance(value, str):
        return next(strings)
    if _is_integer(value):
        text = next(strings)
        return value if text == str(value) else text
    if isinstance(value, dict):
        items = [(key, next(strings), _with_strings(item, strings)) for key, item in value.items()]
        taken = {key for key, new, _ in items if new == key}
        out = {}
        for key, new, item in items:
            if new != key:
                name, n = new, 1
                while name in taken:
                    n += 1
                    name = f"{new} ({n})"
                taken.add(name)
                new = name
            out[new] = item
        return out
    if isinstance(value, list):
        return [_with_strings(item, strings) for item in value]
    return value


def _decoded_container(text: str) -> dict[str, Any] | list[Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict | list) else None


def _mask_structured(
    text: pl.Series, *, region: str, custom: str | None, preserve_length: bool
) -> tuple[pl.Series, dict[str, pl.Series]]:
    """As `_mask_texts`, masking a JSON object or array inside its string values."""
    candidates = text.str.contains(r"^\s*[\[{]").fill_null(False).arg_true()
    if candidates.len() == 0:
        return _mask_texts(text, region=region, custom=custom, preserve_length=preserve_length)
    decoded = [_decoded_container(value) for value in text.gather(candidates)]
    structured = [row for row, value in zip(candidates, decoded, strict=True) if value is not None]
    values = [value for value in decoded if value is not None]
    # The other texts, JSON or not, are masked as text; the JSON ones are left out (null) here.
    plain = text.clone().scatter(structured, None) if structured else text
    masked, flags = _mask_texts(
        plain, region=region, custom=custom, preserve_length=preserve_length
    )
    owners: list[int] = []
    strings: list[str] = []
    sizes: list[int] = []
    for row, value in zip(structured, values, strict=True):
        found = list(_strings_of(value))
        owners += [row] * len(found)
        strings += found
        sizes.append(len(found))
    if not strings:
        return masked.clone().scatter(structured, text.gather(structured)), flags
    originals = pl.Series(strings, dtype=pl.String)
    leaves, leaf_flags = _mask_texts(
        originals, region=region, custom=custom, preserve_length=preserve_length
    )
    per_row = (
        pl.DataFrame({"row": owners, **leaf_flags})
        .group_by("row")
        .agg(pl.col(kind).any() for kind in _KINDS)
    )
    for kind in _KINDS:
        hit = per_row.filter(pl.col(kind))["row"]
        if hit.len():
            flags[kind] = flags[kind].clone().scatter(hit, True)
    new, changed = leaves.to_list(), (leaves != originals).to_list()
    rewritten: list[str] = []
    cursor = 0
    for row, value, size in zip(structured, values, sizes, strict=True):
        own = slice(cursor, cursor + size)
        cursor += size
        if any(changed[own]):
            rewritten.append(json.dumps(_with_strings(value, iter(new[own])), ensure_ascii=False))
        else:
            rewritten.append(text[row])
    return masked.clone().scatter(structured, pl.Series(rewritten, dtype=pl.String)), flags


def mask_personal_data(
    frame: pl.DataFrame,
    *,
    columns: Sequence[str],
    phone_region: str,
    patterns: Sequence[str] = (),
    preserve_length: bool = False,
    structured: bool = False,
) -> tuple[pl.DataFrame, MaskCounts]:
    """Mask e-mail addresses, phone numbers (read in `phone_region` when they have no country
    code) and every match of the extra regex `patterns` in the text `columns`.

    `preserve_length` masks each match with MASK_CHARACTER per character (whitespace kept), so
    character offsets into the text stay valid; `structured` masks a JSON object or array
    inside its string values. Returns the masked frame and the number of rows masked per kind.
    """
    if phone_region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"phone region {phone_region!r} is not a known region code (e.g. US)")
    custom = _combined(patterns)
    present = [c for c in columns if c in frame.columns]
    hit = {kind: pl.Series([False] * frame.height, dtype=pl.Boolean) for kind in _KINDS}
    mask = _mask_structured if structured else _mask_texts
    out = frame
    for column in present:
        text = out[column]
        if preserve_length:
            _refuse_marks(text, column=column)
        final, changed = mask(
            text, region=phone_region, custom=custom, preserve_length=preserve_length
        )
        for kind, flags in changed.items():
            hit[kind] = hit[kind] | flags
        out = out.with_columns(final.alias(column))
    any_hit = hit["email"] | hit["phone"] | hit["custom"]
    counts = MaskCounts(
        rows=frame.height,
        rows_masked=int(any_hit.sum()),
        email=int(hit["email"].sum()),
        phone=int(hit["phone"].sum()),
        custom=int(hit["custom"].sum()),
    )
    return out, counts


def _refuse_marks(text: pl.Series, *, column: str) -> None:
    rows = text.str.contains(f"[{_OPEN}{_CLOSE}]").fill_null(False).arg_true()
    if rows.len():
        raise ValueError(
            f"column {column!r}, row {rows[0]}: the text holds U+FDD0 or U+FDD1, Unicode "
            "noncharacters the length-preserving mask uses internally; remove them at ingest"
        )
