"""One curated, versioned dataset snapshot of a project, from all of its judged days.

The recipe, in order:
1. hold back every task judged on a (project, day) without a passing quality verdict: its
   gates failed, or it has no quality report (its quality step failed or has not run);
2. drop every judgment of an annotator flagged on any scored day (conservative: one bad day
   is enough to distrust the whole history), then re-aggregate the remaining votes;
3. keep tasks whose new label is confident and well supported, and gold tasks only on request;
4. collapse exact duplicate items (content hash) to one, keeping every task id as provenance;
5. assign a stable hash split (copies of one item share the split of their smallest task id);
   pseudonymize annotator ids; mask or drop personal free text;
6. derive the version id from the content, so the same inputs give the same id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NotRequired, TypedDict, cast

import polars as pl

from annotation_pipelines.aggregation import fit
from annotation_pipelines.curation.masking import MaskCounts, mask_personal_data
from annotation_pipelines.curation.privacy import pseudonymize
from annotation_pipelines.curation.selection import deduplicate, select_tasks
from annotation_pipelines.curation.splits import DEFAULT_RATIOS, assign_split
from annotation_pipelines.curation.versioning import content_version
from annotation_pipelines.ingest.result import sha256_text
from annotation_pipelines.markdown import markdown_text
from annotation_pipelines.settings import MAX_MASKED_SHARE

# Why a judged day without a quality report for its project is held back.
NO_QUALITY_REPORT = "no quality report"
# The day's rows changed after its report was made: the verdict is of other rows.
STALE_QUALITY_REPORT = "quality report older than the day's rows"

# The aggregated labels when no judgment is left to aggregate.
_NO_LABELS = pl.Schema(
    {"task_id": pl.String, "label": pl.String, "confidence": pl.Float64, "n_votes": pl.UInt32}
)


class MaskedShareError(ValueError):
    """More of a snapshot's payloads had personal data masked than the configured ceiling."""


class SnapshotStats(TypedDict):
    """What went into a snapshot: counts, the method's reasoning, the personal-data masking."""

    judgments_in: int
    judgments_used: int
    # Earlier submissions by the same annotator on the same task, on other days.
    resubmissions_superseded: int
    tasks_aggregated: int
    tasks_selected: int
    duplicates_collapsed: int
    tasks_held_back: int
    rows: int
    tie_share: float
    method_explanation: str
    masked_share: float
    masked_rows: int
    masked: dict[str, int]
    phone_region: str
    max_masked_share: float
    empty_reason: NotRequired[str]  # only when nothing was selected


@dataclass(frozen=True)
class Snapshot:
    """The rows of one snapshot, its version id, and what went into it.

    An empty snapshot (nothing selected) says why in `stats["empty_reason"]`.
    """

    rows: pl.DataFrame
    version_id: str
    method: str
    stats: SnapshotStats
    held_back_days: list[str] = field(default_factory=list)
    excluded_annotators: int = 0
    # Day → why it is held back (`held_back_reasons`); a day without one is shown bare.
    held_back_reasons: dict[str, str] = field(default_factory=dict)


def build_snapshot(
    judgments: pl.DataFrame,
    tasks: pl.DataFrame,
    *,
    gold: pl.DataFrame | None = None,
    flagged_annotators: Sequence[str] = (),
    held_back_days: Sequence[str] = (),
    held_back_reasons: Mapping[str, str] | None = None,
    method: str = "auto",
    min_confidence: float = 0.7,
    min_votes: int = 2,
    include_gold: bool = False,
    ratios: dict[str, float] | None = None,
    salt: str = "",
    pseudonym_key: bytes,
    phone_region: str,
    max_masked_share: float,
    mask_patterns: Sequence[str] = (),
    drop_fields: Sequence[str] = (),
) -> Snapshot:
    """Build a snapshot from a project's judgments (schema.JUDGMENTS) and tasks (RAW_TASKS).

    The tasks judged on `held_back_days` and on the days of `held_back_reasons` (day → why,
    as `held_back_reasons` gives it) are held back whole.

    Payloads are masked for e-mail addresses, phone numbers (`phone_region` reads numbers
    without a country code) and the extra regex `mask_patterns`, a JSON object or array inside
    its values and keys (`mask_personal_data(structured=True)`), other text as text; more than
    `max_masked_share` of rows masked raises MaskedShareError, since a dataset that is mostly
    "[redacted]" is either a masking fault or data that should not be exported as text.
    """
    project = judgments["project"][0] if judgments.height else ""
    reasons = dict(held_back_reasons or {})
    held_back_days = sorted({*held_back_days, *reasons})
    days = judgments.with_columns(day=pl.col("submitted_at").dt.date().cast(pl.String))
    held = days.filter(pl.col("day").is_in(list(held_back_days))).select("task_id").unique()
    kept = days.join(held, on="task_id", how="anti")
    flagged = pl.DataFrame(
        {"annotator_id": list(flagged_annotators)}, schema={"annotator_id": pl.String}
    )
    trusted = kept.join(flagged, on="annotator_id", how="anti")
    excluded_annotators = kept.join(flagged, on="annotator_id", how="semi")["annotator_id"]
    # One vote per task and annotator across days, the newest, as the raw layer keeps within a
    # day: a re-export whose times moved past midnight (ids named by its own lines) is a
    # resubmission, not a second vote that would inflate the task's confidence.
    voted = trusted.height
    order = ["submitted_at", "judgment_id"] if "judgment_id" in trusted.columns else "submitted_at"
    trusted = trusted.sort(order, maintain_order=True, nulls_last=False).unique(
        ["task_id", "annotator_id"], keep="last", maintain_order=True
    )
    gold_pairs = gold.select("task_id", "label") if gold is not None and gold.height else None
    if trusted.height:
        result = fit(
            trusted.select("task_id", "annotator_id", "label"), method=method, gold=gold_pairs
        )
        labels = result.labels.select("task_id", "label", "confidence", "n_votes")
        chosen, explanation, tie_share = result.method, result.explanation, result.tie_share
    else:
        labels = pl.DataFrame(schema=_NO_LABELS)
        chosen, explanation, tie_share = method, "no judgments to aggregate", 0.0
    selected = select_tasks(
        labels,
        min_confidence=min_confidence,
        min_votes=min_votes,
        gold=gold_pairs,
        include_gold=include_gold,
    )
    items = tasks.select("task_id", "payload", "payload_hash", "created_at").unique("task_id")
    joined = selected.join(items, on="task_id", how="inner")
    deduplicated = deduplicate(joined)
    # An item's copies share the split of the smallest task id among them, not the survivor's:
    # the most confident copy changes as votes arrive, and the item must not change split with
    # it. A task without copies is its own smallest id, so its split is its task id's.
    split = assign_split(
        deduplicated.with_columns(_split_by=pl.col("duplicate_task_ids").list.min()),
        ratios=ratios or dict(DEFAULT_RATIOS),
        salt=salt,
        by="_split_by",
    ).drop("_split_by")
    voters = (
        pseudonymize(trusted.select("task_id", "annotator_id"), key=pseudonym_key)
        .group_by("task_id")
        .agg(pl.col("annotator_id").unique().sort().alias("annotators"))
    )
    rows = (
        split.join(voters, on="task_id", how="left")
        .with_columns(project=pl.lit(project, pl.String))
        .select(
            "task_id",
            "project",
            "payload",
            "payload_hash",
            "label",
            "confidence",
            "n_votes",
            "split",
            "created_at",
            "duplicate_task_ids",
            "annotators",
        )
        .sort("task_id")
    )
    # A payload is JSON from Label Studio and SageMaker and any text from a table or Postgres:
    # JSON is masked inside its values, so it stays valid JSON and escaped addresses are found;
    # any other text is masked as text.
    ingested = rows["payload"]
    rows, masked = mask_personal_data(
        rows,
        columns=("payload",),
        phone_region=phone_region,
        patterns=mask_patterns,
        structured=True,
    )
    # The ingested payload's hash is unkeyed: beside a masked payload it would confirm a guess
    # of what was masked. A masked row carries the hash of the payload it exports; the others
    # keep theirs, and with them the snapshot's version id.
    changed = rows["payload"].ne_missing(ingested).arg_true()
    if changed.len():
        exported = rows.select(sha256_text(pl.col("payload").gather(changed)))
        rows = rows.with_columns(rows["payload_hash"].scatter(changed, exported.to_series()))
    check_masked_share(masked, project=project, ceiling=max_masked_share)
    rows = rows.drop([c for c in drop_fields if c in rows.columns])
    stats: SnapshotStats = {
        "judgments_in": judgments.height,
        "judgments_used": trusted.height,
        "resubmissions_superseded": voted - trusted.height,
        "tasks_aggregated": labels.height,
        "tasks_selected": selected.height,
        "duplicates_collapsed": joined.height - deduplicated.height,
        "tasks_held_back": held.height,
        "rows": rows.height,
        "tie_share": round(tie_share, 4),
        "method_explanation": explanation,
        "masked_share": round(masked.share, 6),
        "masked_rows": masked.rows_masked,
        "masked": masked.by_kind(),
        "phone_region": phone_region,
        "max_masked_share": max_masked_share,
    }
    if rows.height == 0:
        stats["empty_reason"] = _empty_reason(
            judgments=judgments.height,
            trusted=trusted.height,
            held_back_tasks=held.height,
            flagged=excluded_annotators.n_unique(),
            aggregated=labels.height,
            selected=selected.height,
            min_confidence=min_confidence,
            min_votes=min_votes,
            include_gold=include_gold,
        )
    return Snapshot(
        rows=rows,
        version_id=content_version(rows),
        method=chosen,
        stats=stats,
        held_back_days=held_back_days,
        excluded_annotators=excluded_annotators.n_unique(),
        held_back_reasons=reasons,
    )


class SourceDay(TypedDict):
    """One judged day of a snapshot's project: its quality-gate verdict, as the manifest says."""

    gates_passed: bool | None  # None: the day has no quality report (yet)
    failed_gates: list[str]
    gate_reasons: str | None


def source_days(
    days: Sequence[str],
    quality: pl.DataFrame | None,
    *,
    project: str,
    fingerprints: Mapping[str, str] | None = None,
) -> dict[str, SourceDay]:
    """Per judged day (sorted), the verdict of the project's quality report for that day.

    A day without a report has `gates_passed` None: nothing vouched for it, which a consumer
    must be able to tell from a day that passed. So has a day whose report was made from
    other rows than those the snapshot reads: `fingerprints` (day → `rows_fingerprint` of the
    rows read) against the report's `input_fingerprint` (reports without one are taken as
    they are); its `gate_reasons` is STALE_QUALITY_REPORT.
    """
    verdicts: dict[str, dict[str, object]] = {}
    if quality is not None and quality.height and "gates_passed" in quality.columns:
        own = quality.filter(pl.col("project") == project).with_columns(
            pl.col("day").cast(pl.String)
        )
        verdicts = {row["day"]: row for row in own.iter_rows(named=True)}
    result: dict[str, SourceDay] = {}
    for day in sorted(set(days)):
        row = verdicts.get(day)
        if row is None:
            result[day] = {"gates_passed": None, "failed_gates": [], "gate_reasons": None}
            continue
        made_from = row.get("input_fingerprint")
        if fingerprints is not None and made_from and fingerprints.get(day) != made_from:
            result[day] = {
                "gates_passed": None,
                "failed_gates": [],
                "gate_reasons": STALE_QUALITY_REPORT,
            }
            continue
        failed = str(row.get("failed_gates") or "")
        passed = row["gates_passed"]
        result[day] = {
            "gates_passed": None if passed is None else bool(passed),
            "failed_gates": [name for name in failed.split(",") if name],
            "gate_reasons": str(row.get("gate_reasons") or ""),
        }
    return result


def held_back_reasons(days: Mapping[str, SourceDay]) -> dict[str, str]:
    """Day → why it is held back, for each of `days` (as `source_days` gives them) without a
    passing verdict: the gates it failed ("agreement_floor, row_counts_sane"),
    STALE_QUALITY_REPORT, or NO_QUALITY_REPORT. A day nothing vouched for is held back as a
    failed one is: its quality step failed, has not run, or has not yet run on the day's
    current rows, and curating it would publish labels no gate has seen."""
    reasons = {}
    for day, verdict in sorted(days.items()):
        if verdict["gates_passed"] is None:
            reasons[day] = verdict["gate_reasons"] or NO_QUALITY_REPORT
        elif not verdict["gates_passed"]:
            reasons[day] = ", ".join(verdict["failed_gates"]) or "failed quality gates"
    return reasons


def shown_held_back(days: Sequence[str], reasons: Mapping[str, str]) -> str:
    """The held-back days as a card names them: "2026-11-03 (agreement_floor), 2026-11-04 (no
    quality report)"."""
    return ", ".join(f"{day} ({reasons[day]})" if day in reasons else day for day in days)


def current_pointer(version_id: str, run_id: str) -> bytes:
    """The body of a project's `current.json`: the version its last curation run produced."""
    return json.dumps({"version_id": version_id, "run_id": run_id}).encode("utf-8")


def column_schema(frame: pl.DataFrame) -> dict[str, str]:
    """Each column's Polars type, as a manifest records it (`List(String)`, `Float64`, …)."""
    return {name: str(dtype) for name, dtype in frame.schema.items()}


def check_masked_share(masked: MaskCounts, *, project: str, ceiling: float) -> None:
    """Raise MaskedShareError when more than `ceiling` of the rows had something masked."""
    if masked.share <= ceiling:
        return
    kinds = ", ".join(f"{kind}: {n:,}" for kind, n in masked.by_kind().items())
    raise MaskedShareError(
        f"project {project!r}: {masked.share:.1%} of payloads ({masked.rows_masked:,} of "
        f"{masked.rows:,}; {kinds}) had personal data masked, above the ceiling of "
        f"{ceiling:.1%}; no snapshot was written. Look at what was masked (a configured "
        f"mask pattern may be too broad); if this project's items really carry that much "
        f"personal data, raise the ceiling with {MAX_MASKED_SHARE} (a share in [0, 1])."
    )


def _empty_reason(
    *,
    judgments: int,
    trusted: int,
    held_back_tasks: int,
    flagged: int,
    aggregated: int,
    selected: int,
    min_confidence: float,
    min_votes: int,
    include_gold: bool,
) -> str:
    """Why a snapshot has no rows, in the terms of the filters that emptied it."""
    if judgments == 0:
        return "the project has no judgments"
    if trusted == 0:
        return (
            f"no judgments left to aggregate: {held_back_tasks:,} task(s) held back (judged on "
            f"days without a passing quality verdict) and {flagged:,} flagged annotator(s) "
            "removed"
        )
    if selected == 0:
        gold = "" if include_gold else " (gold tasks excluded)"
        return (
            f"none of the {aggregated:,} aggregated tasks met min_confidence >= "
            f"{min_confidence} and min_votes >= {min_votes}{gold}"
        )
    return f"none of the {selected:,} selected tasks has a row in raw_tasks"


def dataset_card(
    snapshot: Snapshot,
    *,
    project: str,
    quality: pl.DataFrame | None,
    location: str,
    filters: dict[str, object],
) -> str:
    """A markdown card: counts per split and label, agreement, gold accuracy, method, caveats."""
    rows = snapshot.rows
    stats = snapshot.stats
    lines = [
        f"# Dataset card — {project} — version `{snapshot.version_id}`",
        "",
        f"{rows.height:,} items labelled by `{snapshot.method}` aggregation "
        f"({stats['method_explanation'] or 'configured'}).",
    ]
    table = None
    if rows.height:
        counts = rows.group_by("split", "label").len().sort("split", "label")
        table = counts.pivot(on="split", index="label", values="len").fill_null(0)
        lines += [
            "",
            "## Counts per split and label",
            "",
            "| label | " + " | ".join(table.columns[1:]) + " |",
            "|" + "---|" * len(table.columns),
        ]
        # A label is the annotators' text: escaped, so it can neither add cells or rows nor
        # render as a link, an image or HTML.
        lines += [
            f"| {markdown_text(str(label))} | " + " | ".join(str(n) for n in counts) + " |"
            for label, *counts in table.iter_rows()
        ]
    else:
        lines += ["", f"**Empty snapshot**: {stats.get('empty_reason', 'nothing selected')}."]
    masked = stats.get("masked", {})
    if isinstance(masked, dict) and "masked_share" in stats:
        lines += [
            "",
            "## Personal data",
            "",
            f"{float(stats['masked_share']):.1%} of payloads ({stats['masked_rows']:,} of "
            f"{rows.height:,}) had personal data replaced by `[redacted]`: e-mail addresses in "
            f"{masked.get('email', 0):,}, phone numbers in {masked.get('phone', 0):,} (numbers "
            f"without a country code read as {stats['phone_region']}), configured patterns in "
            f"{masked.get('custom', 0):,}. A snapshot fails above "
            f"{float(stats['max_masked_share']):.1%}.",
        ]
    if quality is not None and quality.height:
        # Float columns: their means are floats, or None when every value is null.
        alpha = _float_or_none(quality["krippendorff_alpha"].mean())
        gold = _float_or_none(quality["gold_accuracy"].mean())
        lines += [
            "",
            "## Quality of the source judgments",
            "",
            f"- Krippendorff's alpha (mean over days): {alpha:.3f}" if alpha is not None else "",
            f"- Annotator accuracy on gold tasks (mean over days): {gold:.3f}"
            if gold is not None
            else "",
            f"- Days: {quality.height}",
        ]
    lines += ["", "## Filters", ""]
    lines += [f"- {name}: {markdown_text(str(value))}" for name, value in filters.items()]
    caveats = []
    if snapshot.held_back_days:
        shown = shown_held_back(snapshot.held_back_days, snapshot.held_back_reasons)
        caveats.append(f"tasks judged on {shown} held back (no passing quality verdict)")
    if snapshot.excluded_annotators:
        caveats.append(
            f"{snapshot.excluded_annotators} flagged annotator(s)' votes removed "
            "before re-aggregation"
        )
    if stats["duplicates_collapsed"]:
        caveats.append(f"{stats['duplicates_collapsed']} duplicate item(s) collapsed")
    if table is not None:
        rare = table.filter(pl.sum_horizontal(pl.exclude("label")) < 50)["label"].to_list()
        if rare:
            names = ", ".join(markdown_text(str(label)) for label in rare)
            caveats.append(f"fewer than 50 items for label(s): {names}")
    caveats.append(
        "annotator ids are keyed pseudonyms; e-mail addresses and phone numbers in payloads "
        "are masked"
    )
    lines += ["", "## Known caveats", ""] + [f"- {c}" for c in caveats]
    # Every configured split has its file, so the loader is given each one.
    splits = cast(dict[str, float], filters.get("split_ratios") or DEFAULT_RATIOS)
    lines += [
        "",
        "## Load it",
        "",
        "```python",
        f'import polars as pl; train = pl.read_parquet("{location}/train.parquet")',
        f"import duckdb; duckdb.sql(\"select * from '{location}/*.parquet'\")",
        'from datasets import load_dataset; ds = load_dataset("parquet", data_files='
        f"{json.dumps({split: f'{location}/{split}.parquet' for split in splits})})",
        "```",
    ]
    return "\n".join(line for line in lines if line is not None)


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
