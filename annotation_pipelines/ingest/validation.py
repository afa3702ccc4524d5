"""Row validation shared by every source: one vectorized pass sorts rows into good or quarantined.

Every parser (Label Studio, SageMaker Ground Truth, plain tables, the annotation database)
first *stages* what it read: one row per submission with the raw text of each field, the line
it came from and, where the parser already knows the row is bad (malformed JSON, non-UTF-8
bytes, a truncated tail), a preset reason. `validate` then applies the same checks in the
same order to every source, so a row is judged identically whether it arrived as a Label
Studio export or as a CSV:

1. preset parser reason; 2. missing required field (a missing annotator has its own reason);
3. oversized field; 4. NUL byte in an id, label or project; 5. project name that is not a safe
identifier (it becomes a path segment in the lake); 6. wrong type; 7. timestamp without a
timezone; 8. timestamp in the future; 9. label outside the project's label set, or a numeric value
outside the project's declared scale (`annotation_pipelines.scale`), the field naming the scale;
10. duplicate submission.

Kinds: when the staged rows carry a `kind` column, a required `label` means "the kind's
value": each row must have its own kind's value column(s) (`labels`, `value`, `spans`, ...),
and a label set applies to categorical labels and to each of a multilabel row's labels. A
parser that found a value of the wrong shape sets `label_error` and, for a column other than
`label`, `error_field`, and for a reason other than ``wrong_type`` (a blank label is
``missing_field``, a box with no area ``empty_box``: `values.ValueShapeError`) `error_reason`.
A blank value (empty, or only whitespace and zero-width characters: `kinds.blank`) is missing,
a text answer's as a label's. Rows of one annotation tool control (`control`) are distinct
submissions: the duplicate key includes it when present.

What a quarantine row keeps of the record is capped (`MAX_RAW_CHARS`): a longer record keeps
its head plus its size in bytes and SHA-256, enough to find it again without storing it twice.

Duplicate rule: among rows that passed 1-7, rows sharing the duplicate key (task and annotator
for judgments, task for gold) are one submission made more than once; the latest
`submitted_at` wins (ties: the later line in the file), every other copy is quarantined with
reason ``duplicate``. So the reconciliation `rows_read == rows_loaded + rows_quarantined`
holds exactly, and `duplicates` is the number of quarantined copies.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from annotation_pipelines.kinds import (
    COORDINATE_UNITS,
    DEFAULT_KIND,
    KINDS,
    VALUE_COLUMNS,
    blank_text,
)
from annotation_pipelines.numbers import finite
from annotation_pipelines.scale import RatingScale
from annotation_pipelines.schema import QUARANTINE, UTC_TIMESTAMP

MALFORMED_JSON = "malformed_json"
TRUNCATED_FILE = "truncated_file"
NON_UTF8 = "non_utf8"
# A CSV/TSV row with text in more fields than its header names: an unquoted separator inside a
# value (`New York, NY`) shifts or cuts the row, so no field of it can be trusted.
EXTRA_FIELDS = "extra_fields"
MISSING_FIELD = "missing_field"
MISSING_ANNOTATOR = "missing_annotator"
OVERSIZED_FIELD = "oversized_field"
WRONG_TYPE = "wrong_type"
TIMESTAMP_WITHOUT_TIMEZONE = "timestamp_without_timezone"
TIMESTAMP_IN_FUTURE = "timestamp_in_future"
UNKNOWN_LABEL = "unknown_label"
# A span whose offsets reach past the end of the task's text: it marks characters that are not
# there (an offset counted in another text, or a hand-edited export).
OUTSIDE_TEXT = "outside_text"
# A box reaching past the image it is drawn on (a percent coordinate above 100, a negative one):
# it marks pixels that are not there (a coordinate in another unit, a hand-edited export).
OUTSIDE_IMAGE = "outside_image"
DUPLICATE = "duplicate"
CANCELLED = "cancelled"
# A label no person gave: SageMaker Ground Truth's automated labeling (`human-annotated: no`),
# as Label Studio's model `predictions` are never judgments.
MACHINE_LABEL = "machine_label"
NUL_BYTE = "nul_byte"
INVALID_PROJECT = "invalid_project"
NESTING_TOO_DEEP = "nesting_too_deep"
OVERSIZED_RECORD = "oversized_record"
UNSUPPORTED_KIND = "unsupported_kind"
OUTSIDE_SCALE = "outside_scale"
EMPTY_BOX = "empty_box"

REASONS = (
    MALFORMED_JSON,
    TRUNCATED_FILE,
    NON_UTF8,
    EXTRA_FIELDS,
    MISSING_FIELD,
    MISSING_ANNOTATOR,
    OVERSIZED_FIELD,
    WRONG_TYPE,
    TIMESTAMP_WITHOUT_TIMEZONE,
    TIMESTAMP_IN_FUTURE,
    UNKNOWN_LABEL,
    OUTSIDE_TEXT,
    OUTSIDE_IMAGE,
    DUPLICATE,
    CANCELLED,
    MACHINE_LABEL,
    NUL_BYTE,
    INVALID_PROJECT,
    NESTING_TOO_DEEP,
    OVERSIZED_RECORD,
    UNSUPPORTED_KIND,
    OUTSIDE_SCALE,
    EMPTY_BOX,
)

# A project name becomes a path segment (lake keys, exports): no separators, no `..`.
PROJECT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
# Nor a name Windows keeps for a device (`CON`, `aux.v2`: with any extension) or strips a
# trailing dot from (`p.` is `p`): a lake or dataset copied to a Windows disk could not hold
# that project's folder, or would hold it in another project's.
WINDOWS_UNSAFE_NAME = r"(?i)^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$|\.$"
# The rule above in words, for the messages that refuse a name.
PROJECT_NAME_RULE = (
    "a project name starts with a letter or digit and holds only letters, digits, '.', '_' "
    "and '-' (at most 128 characters), with no '..', no trailing '.' and no name Windows "
    "keeps for a device (con, nul, com1, ...): it names the project's folders in the lake"
)
# A record (a line, a task) larger than this is quarantined unparsed: parsing it would cost
# many times its size in memory, and no real submission is anywhere near it.
MAX_RECORD_BYTES = 16 * 1024 * 1024
# How much of a quarantined record is kept as text; longer ones keep a head, size and hash.
MAX_RAW_CHARS = 64 * 1024

DEFAULT_MAX_FIELD_BYTES = 4096
# Clocks of annotators' browsers and of the tool's servers drift; a submission a few minutes
# "in the future" is skew, not bad data.
DEFAULT_FUTURE_TOLERANCE = timedelta(minutes=5)

_TIMEZONE_SUFFIX = r"(?i)(z|[+-]\d{2}(:?\d{2})?)$"
_ISO_WITH_OFFSET = "%Y-%m-%dT%H:%M:%S%.f%z"
_ISO_NAIVE = "%Y-%m-%dT%H:%M:%S%.f"
_ISO_MINUTES_WITH_OFFSET = "%Y-%m-%dT%H:%M%z"
_ISO_MINUTES_NAIVE = "%Y-%m-%dT%H:%M"


def project_label_set(settings: Mapping[str, object], *, source: str) -> list[str] | None:
    """The labels a project's settings allow (their `label_set` list), each as text the way a
    CSV cell spells it (1 and 2.0 are "1" and "2"); None without one. ValueError in one line
    naming `source` (the file) and the field otherwise: every reader of project.json goes
    through here, so a malformed set is refused alike rather than read as each reader
    guesses (a string read as its characters would quarantine every label)."""
    given = settings.get("label_set")
    if given is None:
        return None
    if not isinstance(given, list):
        raise ValueError(
            f'{source}: label_set: expected a list of labels like ["pos", "neg"], '
            f"got {type(given).__name__}"
        )
    if not given:
        # An empty set allows no label: every judgment would be quarantined as unknown_label.
        raise ValueError(
            f'{source}: label_set: expected at least one label like ["pos", "neg"], got []'
        )
    labels = []
    for index, label in enumerate(given):
        number = finite(label)
        if isinstance(label, str):
            text: str | None = label
        elif number is not None:
            text = str(int(number)) if number.is_integer() else repr(number)
        else:
            text = None
        if text is None or not text.strip():
            raise ValueError(
                f"{source}: label_set[{index}]: expected a label (text or a number), "
                f"got {label!r:.80}"
            )
        labels.append(text)
    return labels


def project_label_order(settings: Mapping[str, object], *, source: str) -> list[str] | None:
    """The project's labels lowest first when its settings declare them ordinal
    (`"ordinal": true`, the order being the `label_set`'s); None when they do not (`false` or
    absent: nominal labels, whose order means nothing). ValueError in one line naming
    `source` and the field for an `ordinal` that is not true or false, one without a label
    set, or a set that lists a label twice."""
    ordinal = settings.get("ordinal")
    if ordinal is None or ordinal is False:
        return None
    if ordinal is not True:
        raise ValueError(f"{source}: ordinal: expected true or false, got {ordinal!r:.80}")
    labels = project_label_set(settings, source=source)
    if labels is None:
        raise ValueError(
            f"{source}: ordinal: true needs a label_set listing the labels lowest first, "
            'like ["bad", "ok", "good"]'
        )
    seen: set[str] = set()
    for index, label in enumerate(labels):
        if label in seen:
            raise ValueError(
                f"{source}: label_set[{index}]: {label!r} is listed twice; an ordinal set "
                "ranks each label once"
            )
        seen.add(label)
    return labels


def project_coordinates(settings: Mapping[str, object], *, source: str) -> str | None:
    """The unit a project's settings declare for its boxes (`coordinates`: "pixel" or
    "percent"), None without one. It measures each box row of the project's tables that gives
    no unit of its own (`values.declared_unit`). ValueError in one line naming `source` and
    the field otherwise: a unit spelt another way ("pixels", "Percent") is refused, not read
    as none, since a project that meant to declare one would keep every box unchecked."""
    given = settings.get("coordinates")
    if given is None:
        return None
    if not isinstance(given, str) or given not in COORDINATE_UNITS:
        expected = " or ".join(f'"{unit}"' for unit in COORDINATE_UNITS)
        raise ValueError(
            f"{source}: coordinates: expected {expected}, got {given!r:.80}; the unit of "
            "every box row that gives none: pixel (0 to its image_width and image_height) "
            "or percent (0 to 100 of the image)"
        )
    return given


# A plain decimal number, as a CSV cell, `repr` of a JSON float or a Parquet float cast to text
# spells one: no padding (kept as written, " 1" is its own label), no "nan" or "inf".
_DECIMAL_LABEL = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"


def label_set_spellings(labels: pl.Series, label_set: Sequence[str]) -> dict[str, str]:
    """For each distinct label of `labels` (text) that `label_set` does not hold as written
    but that is a number equal to one label of the set that is a number: that label, as the
    set spells it ("1.0" is "1" against [1, 2]; "1.5" is not mapped). A float class code is
    spelled "1.0" by every reader (`ids.number_text`), a project.json `label_set` of [1] reads
    "1": unmapped, every such label would be unknown. A number two labels of the set equal
    ("1" and "01") is not mapped: which one it meant cannot be told. Worked out on the
    distinct labels, so a million rows of a few classes cost one `unique`."""
    numbers: dict[float, str | None] = {}
    for text in label_set:
        value = _decimal(text)
        if value is not None:
            numbers[value] = None if value in numbers else text
    known = {value: text for value, text in numbers.items() if text is not None}
    if not known:
        return {}
    allowed = pl.Series(list(label_set), dtype=pl.String).implode()
    others = labels.cast(pl.String).drop_nulls().unique()
    others = others.filter(~others.is_in(allowed))
    spellings = {}
    for text in others.to_list():
        value = _decimal(text)
        if value is not None and value in known:
            spellings[text] = known[value]
    return spellings


def _decimal(text: str) -> float | None:
    """`text` as a finite number when it is a plain decimal (`_DECIMAL_LABEL`), else None."""
    if re.fullmatch(_DECIMAL_LABEL, text) is None:
        return None
    value = float(text) + 0.0  # -0.0 and 0.0 are one number
    return value if math.isfinite(value) else None


def safe_project(project: pl.Expr) -> pl.Expr:
    """Whether each `project` (text) may name a lake folder; false for a missing one."""
    return (
        project.str.contains(PROJECT_NAME)
        & ~project.str.contains("..", literal=True)
        & ~project.str.contains(WINDOWS_UNSAFE_NAME)
    ).fill_null(False)


def is_safe_project(project: str) -> bool:
    """`safe_project` of one name."""
    return (
        re.match(PROJECT_NAME, project) is not None
        and ".." not in project
        and re.search(WINDOWS_UNSAFE_NAME, project) is None
    )


def parse_utc(
    frame: pl.DataFrame, column: str, *, parsed: str, has_timezone: str, naive: str
) -> pl.DataFrame:
    """`frame` with three columns for the ISO-8601 text in `column`: `parsed` (the UTC
    timestamp), `has_timezone` and `naive` (parses as a time without a timezone).

    `Z`, `+hh`, `+hhmm` and `+hh:mm` offsets are accepted; a space may replace the `T`; the
    seconds may be left out.
    """
    text = pl.col(column).cast(pl.String).str.strip_chars()
    normalized = _normalized(text)
    has_tz = text.str.contains(_TIMEZONE_SUFFIX)
    # Each format is only tried where it can match: parsing is most of validation's cost.
    frame = frame.with_columns(
        pl.when(has_tz)
        .then(normalized)
        .str.to_datetime(_ISO_WITH_OFFSET, strict=False, time_zone="UTC")
        .cast(UTC_TIMESTAMP)
        .alias(parsed),
        has_tz.alias(has_timezone),
        pl.when(~has_tz)
        .then(normalized)
        .str.to_datetime(_ISO_NAIVE, strict=False)
        .is_not_null()
        .alias(naive),
    )
    # Times given to the minute are tried only on the values the formats with seconds did not
    # read, in a second pass over the first one's result: an export written with seconds (the
    # usual case) pays one null count, not another parse of every value.
    missed = pl.col(column).is_not_null() & pl.col(parsed).is_null() & ~pl.col(naive)
    if not frame.select(missed.any()).item():
        return frame
    retried = _normalized(pl.when(missed).then(text))
    return frame.with_columns(
        pl.coalesce(
            pl.col(parsed),
            pl.when(pl.col(has_timezone))
            .then(retried)
            .str.to_datetime(_ISO_MINUTES_WITH_OFFSET, strict=False, time_zone="UTC")
            .cast(UTC_TIMESTAMP),
        ).alias(parsed),
        (
            pl.col(naive)
            | pl.when(~pl.col(has_timezone))
            .then(retried)
            .str.to_datetime(_ISO_MINUTES_NAIVE, strict=False)
            .is_not_null()
        ).alias(naive),
    )


def _normalized(text: pl.Expr) -> pl.Expr:
    """`text` with a `T` between date and time and a `+hh:mm` offset for `Z` and `+hh`."""
    return (
        text.str.replace(r"^(\d{4}-\d{2}-\d{2}) ", "${1}T")
        .str.replace(r"(?i)z$", "+00:00")
        .str.replace(r"([+-]\d{2})$", "${1}:00")
    )


def validate(
    staged: pl.DataFrame,
    *,
    label_set: Sequence[str] | None,
    scale: RatingScale | None = None,
    now: datetime | None = None,
    max_field_bytes: int = DEFAULT_MAX_FIELD_BYTES,
    duplicate_key: Sequence[str] = ("task_id", "annotator_id"),
    required: Sequence[str] = ("task_id", "annotator_id", "label", "submitted_at"),
    table: str = "judgments",
    source: str,
    source_file: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split `staged` into (good rows with typed columns, quarantine rows).

    `staged` has `source_line`, `reason`, `field` (preset by the parser, null when unknown),
    `record` (the row as written: a String or a Struct, encoded only for quarantined rows),
    and the raw text of `task_id`, `label`, `submitted_at` and optionally `annotator_id`,
    `duration_s`. `submitted_at` may already be a Datetime (Parquet, Postgres): a naive one is
    then a timestamp without a timezone. `scale`: the project's declared rating scale; a numeric
    row's `value` outside it is `outside_scale`, its field `value (scale [1, 5] step 1)`.
    """
    now = now or datetime.now(UTC)
    horizon = now + DEFAULT_FUTURE_TOLERANCE
    frame = staged.with_row_index("_order")
    checks: list[tuple[pl.Expr, str | pl.Expr, str | pl.Expr]] = []
    has_kind = "kind" in frame.columns
    if has_kind:
        frame = frame.with_columns(pl.col("kind").fill_null(DEFAULT_KIND))
    for name in required:
        reason = MISSING_ANNOTATOR if name == "annotator_id" else MISSING_FIELD
        if name == "label" and has_kind:
            checks.extend(_value_checks(frame))
            continue
        value = pl.col(name)
        empty = value.is_null()
        if frame.schema[name] == pl.String:
            spaces = value.str.strip_chars() == ""
            empty = empty | (blank_text(value) if name == "label" else spaces)
        checks.append((empty, name, reason))
    for name in ("task_id", "annotator_id", "label", "payload"):
        if name in frame.columns and frame.schema[name] == pl.String:
            checks.append((pl.col(name).str.len_bytes() > max_field_bytes, name, OVERSIZED_FIELD))
    for name in ("judgment_id", "task_id", "annotator_id", "label", "project"):
        if name in frame.columns and frame.schema[name] == pl.String:
            checks.append((pl.col(name).str.contains("\x00", literal=True), name, NUL_BYTE))
    if "project" in frame.columns:
        unsafe = ~safe_project(pl.col("project").cast(pl.String))
        checks.append((unsafe, "project", INVALID_PROJECT))
    if "label_error" in frame.columns:
        error_field: str | pl.Expr = "label"
        if "error_field" in frame.columns:
            error_field = pl.coalesce(pl.col("error_field"), pl.lit("label"))
        error_reason: str | pl.Expr = WRONG_TYPE
        if "error_reason" in frame.columns:
            error_reason = pl.coalesce(pl.col("error_reason"), pl.lit(WRONG_TYPE))
        checks.append((pl.col("label_error").is_not_null(), error_field, error_reason))
    if "duration_s" in frame.columns:
        duration = pl.col("duration_s").cast(pl.Float64, strict=False)
        if frame.schema["duration_s"] == pl.String:
            duration = pl.col("duration_s").str.strip_chars().cast(pl.Float64, strict=False)
        frame = frame.with_columns(_duration=duration)
        checks.append(
            (
                # NaN and infinity are numbers to a parser but not a time anyone worked: kept,
                # they made the workforce hours NaN or infinite and the staffing plan divide by 0.
                pl.col("duration_s").is_not_null()
                & (
                    pl.col("_duration").is_null()
                    | ~pl.col("_duration").is_finite()
                    | (pl.col("_duration") < 0)
                ),
                "duration_s",
                WRONG_TYPE,
            )
        )
    else:
        frame = frame.with_columns(_duration=pl.lit(None, pl.Float64))
    submitted_dtype = frame.schema["submitted_at"]
    if isinstance(submitted_dtype, pl.Datetime):
        if submitted_dtype.time_zone is None:
            frame = frame.with_columns(
                _submitted=pl.lit(None, UTC_TIMESTAMP), _tz=pl.lit(False), _naive=pl.lit(True)
            )
        else:
            frame = frame.with_columns(
                _submitted=pl.col("submitted_at").dt.convert_time_zone("UTC").cast(UTC_TIMESTAMP),
                _tz=pl.lit(True),
                _naive=pl.lit(False),
            )
    else:
        frame = parse_utc(
            frame, "submitted_at", parsed="_submitted", has_timezone="_tz", naive="_naive"
        )
    present = pl.col("submitted_at").is_not_null()
    checks.append(
        (present & ~pl.col("_tz") & pl.col("_naive"), "submitted_at", TIMESTAMP_WITHOUT_TIMEZONE)
    )
    checks.append((present & pl.col("_submitted").is_null(), "submitted_at", WRONG_TYPE))
    checks.append(
        (
            pl.col("_submitted") > pl.lit(horizon).cast(UTC_TIMESTAMP),
            "submitted_at",
            TIMESTAMP_IN_FUTURE,
        )
    )
    if label_set is not None:
        allowed = pl.Series(list(label_set), dtype=pl.String)
        categorical = pl.col("kind") == DEFAULT_KIND if has_kind else pl.lit(True)
        frame = spelled_as_label_set(
            frame, label_set, categorical=categorical, multilabel=pl.col("kind") == "multilabel"
        )
        checks.append(
            (
                categorical & ~pl.col("label").cast(pl.String).is_in(allowed.implode()),
                "label",
                UNKNOWN_LABEL,
            )
        )
        if has_kind and "labels" in frame.columns:
            outside = pl.col("labels").list.eval(~pl.element().is_in(allowed.implode())).list.any()
            checks.append(((pl.col("kind") == "multilabel") & outside, "labels", UNKNOWN_LABEL))
    if scale is not None and has_kind and "value" in frame.columns:
        checks.append(
            (
                (pl.col("kind") == "numeric") & scale.outside(pl.col("value")),
                f"value ({scale.describe()})",
                OUTSIDE_SCALE,
            )
        )

    reason_expr = pl.col("reason")
    field_expr = pl.col("field")
    # Later checks are wrapped first so that the earliest failing check in the list wins.
    for condition, checked, why in reversed(checks):
        hit = condition.fill_null(False)
        named = pl.lit(checked) if isinstance(checked, str) else checked
        failed = pl.col("reason").is_null() & hit
        because = pl.lit(why) if isinstance(why, str) else why
        reason_expr = pl.when(failed).then(because).otherwise(reason_expr)
        field_expr = pl.when(failed).then(named).otherwise(field_expr)
    frame = frame.with_columns(reason=reason_expr, field=field_expr)

    key = list(duplicate_key)
    if "control" in frame.columns and "control" not in key:
        key.append("control")
    ok = pl.col("reason").is_null()
    # Latest submission wins; among equal timestamps the later line of the file.
    # One sort and a hash pass, not a window per key: with one key per row (the usual case)
    # a per-group sort costs more than the rest of validation together.
    candidates = frame.filter(ok).select("_order", "_submitted", *key).sort("_submitted", "_order")
    losers = candidates.filter(~pl.struct(key).is_last_distinct()).get_column("_order")
    loser = pl.col("_order").is_in(losers.implode())
    frame = frame.with_columns(
        reason=pl.when(loser).then(pl.lit(DUPLICATE)).otherwise(pl.col("reason")),
        field=pl.when(loser).then(pl.lit(",".join(key))).otherwise(pl.col("field")),
    )
    if "judgment_id" in frame.columns:
        # The daily layers keep one row per project and judgment id: an id left on two
        # judgments (another task or annotator) would keep one of them there and drop the
        # other unsaid. Which one the id names is unknown, so both are set aside.
        identity = [c for c in ("project", "judgment_id") if c in frame.columns]
        shared = (
            frame.filter(pl.col("reason").is_null() & pl.col("judgment_id").is_not_null())
            .filter(pl.struct(identity).is_duplicated())
            .get_column("_order")
        )
        clash = pl.col("_order").is_in(shared.implode())
        frame = frame.with_columns(
            reason=pl.when(clash).then(pl.lit(DUPLICATE)).otherwise(pl.col("reason")),
            field=pl.when(clash)
            .then(pl.lit("judgment_id (also the id of another judgment in the file)"))
            .otherwise(pl.col("field")),
        )
    good = frame.filter(pl.col("reason").is_null())
    bad = frame.filter(pl.col("reason").is_not_null())
    quarantine = quarantine_rows(bad, table=table, source=source, source_file=source_file)
    return good, quarantine


def spelled_as_label_set(
    frame: pl.DataFrame, label_set: Sequence[str], *, categorical: pl.Expr, multilabel: pl.Expr
) -> pl.DataFrame:
    """`frame` with the `label` of its `categorical` rows and each of the `labels` of its
    `multilabel` rows (when it has `labels` and `kind` columns) spelled as `label_set` spells
    them (`label_set_spellings`)."""
    has_labels = "labels" in frame.columns and "kind" in frame.columns
    found = [frame.select(pl.col("label").cast(pl.String).filter(categorical)).to_series()]
    if has_labels:
        chosen = frame.select(pl.col("labels").filter(multilabel).explode()).to_series()
        found.append(chosen.cast(pl.String))
    spellings = label_set_spellings(pl.concat(found), label_set)
    if not spellings:
        return frame
    frame = frame.with_columns(
        label=pl.when(categorical)
        .then(pl.col("label").cast(pl.String).replace(spellings))
        .otherwise(pl.col("label"))
    )
    if has_labels:
        frame = frame.with_columns(
            labels=pl.when(multilabel)
            .then(pl.col("labels").list.eval(pl.element().replace(spellings)))
            .otherwise(pl.col("labels"))
        )
    return frame


def _value_checks(frame: pl.DataFrame) -> list[tuple[pl.Expr, str | pl.Expr, str | pl.Expr]]:
    """Each row has its own kind's value; an unknown kind is a wrong type of `kind`."""
    checks: list[tuple[pl.Expr, str | pl.Expr, str | pl.Expr]] = [
        (~pl.col("kind").is_in(list(KINDS)), "kind", WRONG_TYPE)
    ]
    # A value the parser refused is null but not missing: its wrong type is reported instead.
    refused = (
        pl.col("label_error").is_not_null() if "label_error" in frame.columns else pl.lit(False)
    )
    for kind, columns in VALUE_COLUMNS.items():
        for column in columns:
            is_kind = (pl.col("kind") == kind) & ~refused
            if column not in frame.columns:
                checks.append((is_kind, column, MISSING_FIELD))
                continue
            empty = pl.col(column).is_null()
            if frame.schema[column] == pl.String:
                empty = empty | blank_text(pl.col(column))
            checks.append((is_kind & empty, column, MISSING_FIELD))
    return checks


class KeyGivenTwice(ValueError):
    """A JSON object that gives `key` twice: which value was meant is unknown."""

    def __init__(self, key: str) -> None:
        super().__init__(f"{key}: given twice in one object; keep one")
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        keys = [key for key, _ in pairs]
        raise KeyGivenTwice(next(key for key in keys if keys.count(key) > 1))
    return record


# Decodes a JSON Lines line, raising KeyGivenTwice for an object (at any depth) that gives a
# key twice: the standard library would keep the last value, Polars the first. Built once,
# it costs no more than `json.loads`; one built per call would double the read.
STRICT_JSON = json.JSONDecoder(object_pairs_hook=_unique_keys)


def cap_raw(text: str, *, size: int | None = None, digest: str | None = None) -> str:
    """`text` if short, else its head plus the full record's size in bytes and SHA-256.

    `size`/`digest` describe the original bytes when `text` is already a decoded excerpt.
    """
    if len(text) <= MAX_RAW_CHARS and size is None:
        return text
    data = text.encode("utf-8", "surrogatepass")
    size = len(data) if size is None else size
    digest = digest or hashlib.sha256(data).hexdigest()
    return f"{text[:MAX_RAW_CHARS]}…[truncated: {size} bytes, sha256={digest}]"


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def lone_surrogate(text: str | bytes, decoded: Any) -> bool:
    """Whether JSON `text` (decoded as `decoded`) escapes half a surrogate pair, `"\\ud800"`:
    valid JSON, but no Unicode text, so nothing downstream can write it as UTF-8. Checked in
    full only where the text has such an escape (a whole pair decodes to one character)."""
    if isinstance(text, bytes):
        if b"\\u" not in text or _SURROGATE_ESCAPE_BYTES.search(text) is None:
            return False
    elif "\\u" not in text or _SURROGATE_ESCAPE.search(text) is None:
        return False
    try:
        json.dumps(decoded, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def cap_raw_bytes(data: bytes) -> str:
    """A capped text excerpt of raw bytes (not necessarily UTF-8), with their size and hash."""
    if len(data) <= MAX_RAW_CHARS:
        return data.decode("utf-8", "replace")
    head = data[:MAX_RAW_CHARS].decode("utf-8", "replace")
    return cap_raw(head, size=len(data), digest=hashlib.sha256(data).hexdigest())


def _cap_series(series: pl.Series) -> pl.Series:
    return pl.Series([None if v is None else cap_raw(v) for v in series.to_list()], dtype=pl.String)


def encode_record(frame: pl.DataFrame) -> pl.Expr:
    """The quarantined row as written, as text (structs are re-encoded as JSON), capped."""
    if "record" not in frame.columns:
        return pl.lit(None, pl.String)
    dtype = frame.schema["record"]
    if isinstance(dtype, pl.Struct):
        record = pl.col("record")
        # Polars writes no bytes as JSON (it panics, naming no file): they go in as hex.
        binary = [field.name for field in dtype.fields if field.dtype == pl.Binary]
        if binary:
            record = record.struct.with_fields(
                *[pl.field(name).bin.encode("hex") for name in binary]
            )
        text = record.struct.json_encode()
    else:
        text = pl.col("record").cast(pl.String)
    # Only the rare long records go through Python; the rest stay vectorized. The margin
    # leaves an excerpt a parser already capped (head + size + hash) as it is.
    long = text.str.len_chars() > MAX_RAW_CHARS + 256
    return pl.when(long).then(text.map_batches(_cap_series, return_dtype=pl.String)).otherwise(text)


def quarantine_rows(
    bad: pl.DataFrame, *, table: str, source: str, source_file: str
) -> pl.DataFrame:
    """Quarantine rows in the canonical QUARANTINE layout."""
    return bad.select(
        table=pl.lit(table, pl.String),
        source=pl.lit(source, pl.String),
        source_file=pl.lit(source_file, pl.String),
        source_line=pl.col("source_line").cast(pl.Int64),
        field=pl.col("field").cast(pl.String),
        reason=pl.col("reason").cast(pl.String),
        raw=encode_record(bad),
    ).cast(pl.Schema(QUARANTINE))
