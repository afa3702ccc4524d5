"""Mask personal data in free text: e-mail addresses, phone numbers, configured patterns.

Phone numbers are found by Google's libphonenumber matcher (`phonenumbers`) at
`STRICT_GROUPING` leniency: a candidate must be a valid number for its country (national
numbers are read in the default region; `+CC` and `00CC` numbers in any region) and, when
written with separators, grouped as that country groups its numbers. That rejects dates
(2026-11-22), item ids (20261122-10), versions, prices and most order numbers, which a digit-run
regex cannot tell from phone numbers. What it cannot reject is a bare run of digits that is a
valid number (an order number 2025550173 is a valid US number): masking those is the safe side.

The matcher is pure Python (about 10k texts/s), so it only runs on texts that contain a run of
at least `PHONE_MIN_DIGITS` digits (separators allowed) — a vectorized Polars prefilter; text
without such a run cannot hold a phone number. E-mail addresses and configured patterns are
Polars regex replacements over the whole column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import phonenumbers
import polars as pl

MASK = "[redacted]"

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


def mask_phone_numbers(text: str, *, region: str) -> str:
    """`text` with every phone number the matcher finds replaced by MASK."""
    matches = list(phonenumbers.PhoneNumberMatcher(text, region, leniency=PHONE_LENIENCY))
    for match in reversed(matches):
        text = text[: match.start] + MASK + text[match.end :]
    return text


def _mask_phones_in(series: pl.Series, *, region: str) -> pl.Series:
    candidates = series.str.contains(PHONE_CANDIDATE).fill_null(False)
    positions = candidates.arg_true()
    if positions.len() == 0:
        return series
    masked = [mask_phone_numbers(text, region=region) for text in series.gather(positions)]
    # scatter writes in place: work on a copy, the caller compares before and after.
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


def mask_personal_data(
    frame: pl.DataFrame,
    *,
    columns: Sequence[str],
    phone_region: str,
    patterns: Sequence[str] = (),
) -> tuple[pl.DataFrame, MaskCounts]:
    """Mask e-mail addresses, phone numbers (read in `phone_region` when they have no country
    code) and every match of the extra regex `patterns` in the text `columns`.

    Returns the masked frame and the number of rows masked per kind.
    """
    if phone_region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"phone region {phone_region!r} is not a known region code (e.g. US)")
    custom = _combined(patterns)
    present = [c for c in columns if c in frame.columns]
    hit = {
        kind: pl.Series([False] * frame.height, dtype=pl.Boolean)
        for kind in ("email", "phone", "custom")
    }
    out = frame
    for column in present:
        text = out[column]
        emails = text.str.replace_all(EMAIL_PATTERN, MASK)
        phones = _mask_phones_in(emails, region=phone_region)
        final = phones.str.replace_all(custom, MASK) if custom else phones
        changed = {
            "email": emails != text,
            "phone": phones != emails,
            "custom": final != phones,
        }
        for kind, flags in changed.items():
            hit[kind] = hit[kind] | flags.fill_null(False)
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
