"""One curated, versioned dataset snapshot of a project, from all of its judged days.

The recipe, in order:
1. hold back every task judged on a (project, day) that failed its quality gates;
2. drop every judgment of an annotator flagged on any scored day (conservative: one bad day
   is enough to distrust the whole history), then re-aggregate the remaining votes;
3. keep tasks whose new label is confident and well supported, and gold tasks only on request;
4. collapse exact duplicate items (content hash) to one, keeping every task id as provenance;
5. assign a stable hash split; pseudonymize annotator ids; mask or drop personal free text;
6. derive the version id from the content, so the same inputs give the same id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from annotation_pipelines.aggregation import fit
from annotation_pipelines.curation.privacy import pseudonymize
from annotation_pipelines.curation.selection import deduplicate, select_tasks
from annotation_pipelines.curation.splits import DEFAULT_RATIOS, assign_split
from annotation_pipelines.curation.versioning import content_version

# Personal data that turns up in free text: e-mail addresses and phone numbers.
DEFAULT_MASK_PATTERNS: tuple[str, ...] = (
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    r"\+?\d[\d\s().-]{7,}\d",
)
MASK = "[redacted]"


@dataclass(frozen=True)
class Snapshot:
    """The rows of one snapshot, its version id, and what went into it."""

    rows: pl.DataFrame
    version_id: str
    method: str
    stats: dict[str, object]
    held_back_days: list[str] = field(default_factory=list)
    excluded_annotators: int = 0


def build_snapshot(
    judgments: pl.DataFrame,
    tasks: pl.DataFrame,
    *,
    gold: pl.DataFrame | None = None,
    flagged_annotators: Sequence[str] = (),
    held_back_days: Sequence[str] = (),
    method: str = "auto",
    min_confidence: float = 0.7,
    min_votes: int = 2,
    include_gold: bool = False,
    ratios: dict[str, float] | None = None,
    salt: str = "",
    pseudonym_key: bytes,
    mask_patterns: Sequence[str] = DEFAULT_MASK_PATTERNS,
    drop_fields: Sequence[str] = (),
) -> Snapshot:
    """Build a snapshot from a project's judgments (schema.JUDGMENTS) and tasks (RAW_TASKS)."""
    days = judgments.with_columns(day=pl.col("submitted_at").dt.date().cast(pl.String))
    held = days.filter(pl.col("day").is_in(list(held_back_days))).select("task_id").unique()
    kept = days.join(held, on="task_id", how="anti")
    flagged = pl.DataFrame(
        {"annotator_id": list(flagged_annotators)}, schema={"annotator_id": pl.String}
    )
    trusted = kept.join(flagged, on="annotator_id", how="anti")
    gold_pairs = gold.select("task_id", "label") if gold is not None and gold.height else None
    if trusted.height == 0:
        raise ValueError("no judgments left after holding back failed days and flagged annotators")
    result = fit(trusted.select("task_id", "annotator_id", "label"), method=method, gold=gold_pairs)
    labels = result.labels.select("task_id", "label", "confidence", "n_votes")
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
    split = assign_split(deduplicated, ratios=ratios or dict(DEFAULT_RATIOS), salt=salt)
    voters = (
        pseudonymize(trusted.select("task_id", "annotator_id"), key=pseudonym_key)
        .group_by("task_id")
        .agg(pl.col("annotator_id").unique().sort().alias("annotators"))
    )
    rows = (
        split.join(voters, on="task_id", how="left")
        .with_columns(project=pl.lit(judgments["project"][0] if judgments.height else ""))
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
    rows = mask_text(rows, columns=("payload",), patterns=mask_patterns)
    rows = rows.drop([c for c in drop_fields if c in rows.columns])
    stats = {
        "judgments_in": judgments.height,
        "judgments_used": trusted.height,
        "tasks_aggregated": labels.height,
        "tasks_selected": selected.height,
        "duplicates_collapsed": joined.height - deduplicated.height,
        "tasks_held_back": held.height,
        "rows": rows.height,
        "tie_share": round(result.tie_share, 4),
        "method_explanation": result.explanation,
    }
    return Snapshot(
        rows=rows,
        version_id=content_version(rows),
        method=result.method,
        stats=stats,
        held_back_days=sorted(held_back_days),
        excluded_annotators=kept.join(flagged, on="annotator_id", how="semi")[
            "annotator_id"
        ].n_unique(),
    )


def mask_text(
    frame: pl.DataFrame, *, columns: Sequence[str], patterns: Sequence[str]
) -> pl.DataFrame:
    """Replace every match of `patterns` in the text `columns` with "[redacted]"."""
    if not patterns:
        return frame
    combined = "|".join(f"(?:{pattern})" for pattern in patterns)
    re.compile(combined)  # fail early, naming the bad pattern set, not deep inside Polars
    return frame.with_columns(
        [pl.col(c).str.replace_all(combined, MASK) for c in columns if c in frame.columns]
    )


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
    counts = rows.group_by("split", "label").len().sort("split", "label")
    table = counts.pivot(on="split", index="label", values="len").fill_null(0)
    header = "| label | " + " | ".join(table.columns[1:]) + " |"
    lines = [
        f"# Dataset card — {project} — version `{snapshot.version_id}`",
        "",
        f"{rows.height:,} items labelled by `{snapshot.method}` aggregation "
        f"({snapshot.stats['method_explanation'] or 'configured'}).",
        "",
        "## Counts per split and label",
        "",
        header,
        "|" + "---|" * len(table.columns),
    ]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.iter_rows()]
    if quality is not None and quality.height:
        alpha = quality["krippendorff_alpha"].mean()
        gold = quality["gold_accuracy"].mean()
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
    lines += [f"- {name}: {value}" for name, value in filters.items()]
    caveats = []
    if snapshot.held_back_days:
        caveats.append(
            f"tasks judged on {', '.join(snapshot.held_back_days)} held back (failed quality gates)"
        )
    if snapshot.excluded_annotators:
        caveats.append(
            f"{snapshot.excluded_annotators} flagged annotator(s)' votes removed "
            "before re-aggregation"
        )
    if snapshot.stats["duplicates_collapsed"]:
        caveats.append(f"{snapshot.stats['duplicates_collapsed']} duplicate item(s) collapsed")
    rare = table.filter(pl.sum_horizontal(pl.exclude("label")) < 50)["label"].to_list()
    if rare:
        caveats.append(f"fewer than 50 items for label(s): {', '.join(map(str, rare))}")
    caveats.append("annotator ids are keyed pseudonyms; personal data patterns in payloads masked")
    lines += ["", "## Known caveats", ""] + [f"- {c}" for c in caveats]
    lines += [
        "",
        "## Load it",
        "",
        "```python",
        f'import polars as pl; train = pl.read_parquet("{location}/train.parquet")',
        f"import duckdb; duckdb.sql(\"select * from '{location}/*.parquet'\")",
        'from datasets import load_dataset; ds = load_dataset("parquet", data_files={'
        f'"train": "{location}/train.parquet", "test": "{location}/test.parquet"}})',
        "```",
    ]
    return "\n".join(line for line in lines if line is not None)
