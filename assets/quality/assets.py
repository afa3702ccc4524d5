"""Quality layer: agreement, annotator scorecards, gold accuracy, drift, re-annotation queue, gates.

The gates (annotation_pipelines.quality.gates) are asset checks on `quality_report`, one result per
day partition, with the reason in the description. A project-day that fails one with ERROR severity
is written with `gates_passed` false and the curated dataset holds that day back; the quality-alert
sensor records the failure. Each project's own floors are read from its settings file in the landing
zone on every run (see `annotation_pipelines.quality.gates` for the order in which run config,
project.json and the defaults apply). The checks are not Dagster-blocking: a blocking failure would
fail the step with an exception (a stack trace on the run page) although every output is already
written and nothing in the step depends on the verdict, so the hold-back is carried by the data
instead.
"""

import datetime as dt
import warnings

import polars as pl
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    Config,
    FreshnessPolicy,
    MetadataValue,
    Output,
    PreviewWarning,
    multi_asset,
)
from pydantic import Field

from annotation_pipelines.agreement import cohen_kappa_matrix
from annotation_pipelines.curation.privacy import safe_for_display
from annotation_pipelines.curation.versioning import judged_fingerprints
from annotation_pipelines.ingest.validation import project_label_order
from annotation_pipelines.kinds import DEFAULT_KIND, of_kind
from annotation_pipelines.lake import partition_key, quality_report_html_key, staging_prefix
from annotation_pipelines.quality import (
    GATE_SPECS,
    GateCheck,
    annotator_scorecards,
    gate_checks,
    gate_verdicts,
    held_out_gold_consensus,
    in_queue_order,
    item_disagreement,
    label_distribution,
    markdown_summary,
    quality_gates,
    quality_report,
    reannotation_queue,
    render_html_report,
)
from annotation_pipelines.quality.drift import drift
from annotation_pipelines.quality.gates import (
    DEFAULT_MAX_FLAGGED_SHARE,
    DEFAULT_MIN_ALPHA,
    DEFAULT_MIN_GOLD_ACCURACY,
    Floor,
    pick_floor,
    project_gate_floors,
)
from annotation_pipelines.settings import load_settings
from assets.common.metadata import figure, markdown_table, mean_or, per_subject_figures
from assets.common.outs import table_out
from assets.common.partitions import daily_partitions
from assets.sources.assets import staged_projects
from resources.lake import Lake, columns_from_bytes, parquet_bytes, table_metadata
from resources.landing import LandingZone, project_settings_path

GROUP = "quality"
OWNERS = ["team:annotation-quality"]


class QualityConfig(Config):
    """Thresholds for flags and gates (launchpad-editable). A gate floor set here applies to
    this run only and beats the project's own (`quality_gates` in its project.json)."""

    # The engine's defaults (annotation_pipelines.quality.gates), which the demo is tuned to.
    min_alpha: float = Field(
        default=DEFAULT_MIN_ALPHA, description="Gate: Krippendorff's alpha floor."
    )
    min_gold_accuracy: float = Field(
        default=DEFAULT_MIN_GOLD_ACCURACY, description="Gate: gold accuracy floor."
    )
    min_alpha_per_project: dict[str, float] = Field(default_factory=dict)
    min_gold_accuracy_per_project: dict[str, float] = Field(default_factory=dict)
    max_flagged_share: float = Field(
        default=DEFAULT_MAX_FLAGGED_SHARE, description="Gate: flagged annotators cap."
    )
    gold_required_projects: list[str] = Field(
        default_factory=list,
        description="Projects whose days fail (ERROR) without gold judgments. Projects with "
        "a gold set staged require it anyway; for the others a day without gold is a WARN.",
    )
    held_out_folds: int = Field(default=5, description="Folds to score consensus on gold.")
    annotator_min_gold_accuracy: float = 0.7
    annotator_min_consensus_agreement: float = 0.5
    annotator_max_spammer_score: float = 0.8
    max_js_distance: float = Field(default=0.1, description="Label-drift bound (JS distance).")
    max_alpha_drop: float = Field(default=0.1, description="Agreement-drift bound.")
    trailing_days: int = 28
    bootstrap_resamples: int = Field(default=200, description="Bootstrap replicates for CIs.")
    queue_min_confidence: float = 0.6
    kappa_min_overlap: int = Field(default=10, description="Shared tasks for a kappa pair.")


# Partitioned check specs are how a check result carries its day (AssetCheckEvaluation.partition,
# shown in the UI); Dagster 1.13 marks them as preview, a status we accept knowingly here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", PreviewWarning)
    GATES = tuple(
        AssetCheckSpec(
            spec.name,
            asset="quality_report",
            description=spec.description,
            partitions_def=daily_partitions,
        )
        for spec in GATE_SPECS
    )


# Metadata of `annotator_scorecards` and `label_drift`: how many days back the day's trends
# and drift baseline read.
HISTORY_WINDOW_METADATA = "history_window_days"


def trailing_days(day: str, days: int) -> list[str]:
    """The `days` days before `day`, oldest first: the history a day's trends read."""
    end = dt.date.fromisoformat(day)
    return [(end - dt.timedelta(days=offset)).isoformat() for offset in range(days, 0, -1)]


def _history(lake: Lake, table: str, day: str, days: int) -> pl.DataFrame:
    return lake.read_days(table, trailing_days(day, days))


@multi_asset(
    outs={
        "quality_report": table_out(
            "Per project and day: agreement (alpha, Fleiss, percent) with bootstrap "
            "intervals, gold accuracy, consensus accuracy on gold, flagged annotator share, and "
            "the gate verdict (gates_passed, failed_gates, gate_reasons) that holds a failed day "
            "back from curation; an HTML report per project.",
            group=GROUP,
            owners=OWNERS,
            freshness_policy=FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=30)),
        ),
        "annotator_scorecards": table_out(
            "Per annotator and day: gold accuracy (Wilson interval), consensus "
            "agreement, model skill, median seconds, spammer score, trend; flags with reasons.",
            group=GROUP,
            owners=OWNERS,
        ),
        "reannotation_queue": table_out(
            "Tasks to send back for more judgments, with the reason and a priority.",
            group=GROUP,
            owners=OWNERS,
        ),
        "annotator_pair_agreement": table_out(
            "Cohen's kappa (plain and quadratic-weighted) for every annotator pair "
            "of a project with enough shared tasks: the agreement matrix in long form. "
            "kappa_quadratic is null unless the project declares its labels ordinal "
            '(project.json `"ordinal": true`, its label_set listing them lowest first): '
            "weights over nominal labels placed in text order would mean nothing.",
            group=GROUP,
            owners=OWNERS,
        ),
        "label_drift": table_out(
            "Label distribution and agreement against the trailing weeks.",
            group=GROUP,
            owners=OWNERS,
        ),
    },
    check_specs=list(GATES),
    partitions_def=daily_partitions,
    pool="daily_layers",
)
def quality(  # noqa: ANN201
    context: AssetExecutionContext,
    config: QualityConfig,
    lake: Lake,
    landing: LandingZone,
    judgments: pl.DataFrame,
    aggregated_labels: pl.DataFrame,
    gold_labels: pl.DataFrame,
    annotator_skill: pl.DataFrame,
):
    """Score the day: who is reliable, how much annotators agree, what goes back."""
    day = context.partition_key
    judged_any = judgments.height > 0
    mixed = _mixed_kinds(judgments)
    # Other kinds have their own quality layer (assets/quality/kinds.py).
    judgments = of_kind(judgments)
    gold_labels = of_kind(gold_labels)
    gold = gold_labels.select("task_id", "project", "label")
    # Earlier days' scorecards are read from the lake, not declared as inputs: when one of
    # them changes later, `scorecard_history_sensor` rebuilds this day if its trends differ.
    history = _history(lake, "annotator_scorecards", day, config.trailing_days)
    cards = annotator_scorecards(
        judgments,
        aggregated_labels,
        gold,
        skill=annotator_skill.select("annotator_id", "project", "skill"),
        history=history if history.height else None,
        min_gold_accuracy=config.annotator_min_gold_accuracy,
        min_consensus_agreement=config.annotator_min_consensus_agreement,
        max_spammer_score=config.annotator_max_spammer_score,
        history_days=config.trailing_days,
    )
    # Aggregated labels clamp gold tasks to their label; consensus on gold is scored on fits
    # that did not see the task's own gold, with the method each project was aggregated with.
    held_out = held_out_gold_consensus(
        judgments,
        gold,
        methods=dict(aggregated_labels.select("project", "method").unique().rows()),
        folds=config.held_out_folds,
    )
    report = quality_report(
        judgments,
        aggregated_labels,
        gold,
        scorecards=cards,
        held_out_consensus=held_out,
        n_resamples=config.bootstrap_resamples,
    )
    floors = project_floors(landing, report["project"].unique().sort().to_list())
    required = gold_projects(
        lake, landing, config.gold_required_projects, run_id=context.run.run_id
    )
    gates = _gates(report, aggregated_labels, required, config, floors=floors, mixed=mixed)
    report = gate_verdicts(report, gates)
    # What the verdict was made from: a curated dataset holds the day back once its
    # judgments change, until this report is rebuilt from them.
    fingerprints = judged_fingerprints(judgments)
    report = report.with_columns(
        input_fingerprint=pl.col("project").replace_strict(
            fingerprints, default=None, return_dtype=pl.String
        )
    )
    items = item_disagreement(judgments)
    queue = reannotation_queue(
        items,
        aggregated_labels,
        gold,
        scorecards=cards,
        judgments=judgments,
        min_confidence=config.queue_min_confidence,
    )
    # Earlier days' judgments and reports are read from the lake too: `scorecard_history_sensor`
    # rebuilds this day when the baseline they give its drift changes.
    past_counts = label_counts(lake, trailing_days(day, config.trailing_days))
    counts = pl.concat([past_counts, label_distribution(judgments)], how="diagonal_relaxed")
    past_reports = _history(lake, "quality_report", day, config.trailing_days)
    drift_frame = drift(
        counts,
        quality=pl.concat([past_reports, report], how="diagonal_relaxed").select(
            "project", "day", "krippendorff_alpha"
        ),
        day=dt.date.fromisoformat(day),
        trailing_days=config.trailing_days,
        max_js_distance=config.max_js_distance,
        max_alpha_drop=config.max_alpha_drop,
    )
    # Reports are mailed and metadata is widely visible: both carry pseudonyms, and the
    # scorecards table maps each pseudonym back to the annotator for those with lake access.
    display_key = load_settings().pseudonym_key
    cards = cards.with_columns(
        annotator_pseudonym=safe_for_display(cards.select("annotator_id"), key=display_key)[
            "annotator_id"
        ]
    )
    shown_cards = safe_for_display(cards, key=display_key)
    shown_judgments = safe_for_display(judgments, key=display_key)
    report_paths, pages = {}, {}
    for (project,), project_report in report.group_by("project", maintain_order=True):
        html = render_html_report(
            project_report,
            scorecards=shown_cards.filter(pl.col("project") == project),
            items=items.filter(pl.col("project") == project),
            queue=queue.filter(pl.col("project") == project),
            drift=drift_frame.filter(pl.col("project") == project),
            judgments=shown_judgments.filter(pl.col("project") == project),
            title=f"Annotation quality — {project} — {day}",
        )
        key = quality_report_html_key(day, project)
        pages[key] = html.encode("utf-8")
        report_paths[project] = lake.uri(key)
    # Stable row order, so re-materializing a day rewrites the same bytes.
    cards = cards.sort("project", "annotator_id")
    report = report.sort("project")
    queue = in_queue_order(queue, per_project=True)
    drift_frame = drift_frame.sort("project")
    if report.height == 0 and judged_any:
        # Only other kinds were judged: kind_quality gates them, and the engine's "the day has
        # no judgments" would fail (and alert) a day that is not empty.
        checks = [_nothing_to_gate(spec.name) for spec in GATE_SPECS]
    else:
        checks = [_check_result(check) for check in gate_checks(gates)]
    summary = markdown_summary(report, scorecards=shown_cards, queue=queue, drift=drift_frame)
    orders = project_label_orders(landing, judgments["project"].unique().sort().to_list())
    pairs, weighted_note = _pair_agreement(
        judgments, min_overlap=config.kappa_min_overlap, orders=orders
    )
    tables = {
        "quality_report": report,
        "annotator_scorecards": cards,
        "reannotation_queue": queue,
        "annotator_pair_agreement": pairs,
        "label_drift": drift_frame,
    }
    # The HTML pages carry pseudonyms that only this run's scorecards resolve, so the pages and
    # the five tables land in one lake commit (all or nothing, even if the run is killed); the
    # outputs then carry metadata only, and downstream assets load the same keys as before.
    pages.update({partition_key(name, day): parquet_bytes(frame) for name, frame in tables.items()})
    lake.commit(pages)
    extra: dict[str, dict[str, MetadataValue]] = {
        "quality_report": {
            "held_back": MetadataValue.text(_held_back(report)),
            "summary": MetadataValue.md(summary),
            # One path entry per report: the UI shows each with a copy button.
            **{
                f"html_report/{project}": MetadataValue.path(path)
                for project, path in report_paths.items()
            },
            "mean_alpha": figure(_mean(report, "krippendorff_alpha")),
            "mean_gold_accuracy": figure(_mean(report, "gold_accuracy")),
        },
        "annotator_scorecards": {
            "flagged": MetadataValue.int(int(cards["flagged"].sum())),
            # The trailing window the trends were computed over, which
            # `scorecard_history_sensor` checks the day against when earlier days change.
            HISTORY_WINDOW_METADATA: MetadataValue.int(config.trailing_days),
        },
        "reannotation_queue": {"tasks_to_reannotate": MetadataValue.int(queue.height)},
        "annotator_pair_agreement": {
            "pairs": MetadataValue.int(pairs.height),
            "kappa_quadratic": MetadataValue.text(weighted_note),
            "lowest_kappa": markdown_table(
                safe_for_display(pairs.sort("kappa").head(10), key=display_key)
            ),
        },
        "label_drift": {
            "flagged": MetadataValue.json(_drift_flags(drift_frame)),
            HISTORY_WINDOW_METADATA: MetadataValue.int(config.trailing_days),
        },
    }
    for name, frame in tables.items():
        uri = MetadataValue.path(lake.uri(partition_key(name, day)))
        metadata = {**table_metadata(frame), "dagster/uri": uri, **extra[name]}
        yield Output(None, output_name=name, metadata=metadata)
    yield from checks


def project_label_orders(landing: LandingZone, projects: list[str]) -> dict[str, list[str]]:
    """project → its labels lowest first, for the projects whose settings file declares them
    ordinal (`project_label_order`; a malformed declaration fails the run naming the file and
    field, as a malformed floor does)."""
    orders = {}
    for project in projects:
        order = project_label_order(
            landing.project_settings(project), source=project_settings_path(project)
        )
        if order is not None:
            orders[project] = order
    return orders


def _pair_agreement(
    judgments: pl.DataFrame, *, min_overlap: int, orders: dict[str, list[str]]
) -> tuple[pl.DataFrame, str]:
    """(Cohen's kappa per annotator pair and project, the note that says for which projects
    `kappa_quadratic` is given). The quadratic kappa weighs a disagreement by how far apart
    the two labels are, so only labels with a declared order have one: for the others it is
    null, as it is when a judged label is not in the declared order (a label set changed
    since the day was staged)."""
    frames, weighted_projects, unordered, outside = [], [], [], []
    for (project,), rows in judgments.group_by("project", maintain_order=True):
        plain = cohen_kappa_matrix(rows, min_overlap=min_overlap)
        pairs = plain.select("annotator_a", "annotator_b", "n_shared", "kappa")
        order = orders.get(project)
        labels = set(rows["label"].drop_nulls().cast(pl.String).to_list())
        if order is None:
            unordered.append(project)
        elif not labels <= set(order):
            outside.append(f"{project} (labels {', '.join(sorted(labels - set(order)))})")
        else:
            weighted_projects.append(f"{project} (declared order: {' < '.join(order)})")
            weighted = cohen_kappa_matrix(
                rows, weights="quadratic", label_order=order, min_overlap=min_overlap
            )
            pairs = pairs.join(
                weighted.select(
                    "annotator_a", "annotator_b", pl.col("kappa").alias("kappa_quadratic")
                ),
                on=["annotator_a", "annotator_b"],
                how="left",
            )
        if "kappa_quadratic" not in pairs.columns:
            pairs = pairs.with_columns(kappa_quadratic=pl.lit(None, pl.Float64))
        frames.append(pairs.with_columns(project=pl.lit(project)))
    notes = ["; ".join(weighted_projects) or "no project declares an order of its labels"]
    if unordered:
        notes.append(
            f"null for {', '.join(sorted(unordered))}: no declared order of their labels "
            '(project.json `"ordinal": true`, the label_set lowest first), and a weighted '
            "kappa of nominal labels means nothing"
        )
    if outside:
        notes.append(f"null for {', '.join(sorted(outside))}: not in the declared order")
    if not frames:
        empty = pl.DataFrame(
            schema={"annotator_a": pl.String, "annotator_b": pl.String, "n_shared": pl.UInt32,
                    "kappa": pl.Float64, "kappa_quadratic": pl.Float64, "project": pl.String}
        )  # fmt: skip
        return empty, notes[0]
    return pl.concat(frames).sort("project", "annotator_a", "annotator_b"), "; ".join(notes)


def _held_back(report: pl.DataFrame) -> str:
    """The projects whose day is held back from curation, each with the gates it failed."""
    failed = report.filter(~pl.col("gates_passed")).sort("project")
    if failed.height == 0:
        return "none: every project passed its ERROR gates"
    return "; ".join(
        f"{project}: {gates or 'failed'}"
        for project, gates in failed.select("project", "failed_gates").iter_rows()
    )


def _mean(frame: pl.DataFrame, column: str) -> float:
    return mean_or(frame[column], float("nan"))


def label_counts(lake: Lake, days: list[str]) -> pl.DataFrame:
    """The categorical judgments of `days` per (project, day, label), as drift reads them (no
    columns when none of the days has judgments)."""
    # Drift needs counts of the trailing weeks, not whole judgment tables: grouped on the scan,
    # the Parquet reader reads the few columns they come from and skips everything else.
    past = lake.scan_days("judgments", days)
    if not past.collect_schema():
        return pl.DataFrame()
    return label_distribution(of_kind(past))


def _drift_flags(frame: pl.DataFrame) -> list[str]:
    flag_columns = [c for c in frame.columns if c.endswith("_flagged") or c == "flagged"]
    if not flag_columns or frame.height == 0:
        return []
    flagged = frame.filter(pl.any_horizontal([pl.col(c).fill_null(False) for c in flag_columns]))
    return sorted(flagged["project"].unique().to_list())


def project_floors(landing: LandingZone, projects: list[str]) -> dict[str, dict[str, float]]:
    """project → the floors of its settings file (validated; a malformed one fails the run
    with the file and field named, rather than gating the day with a floor nobody chose)."""
    return {
        project: project_gate_floors(
            landing.project_settings(project), source=project_settings_path(project)
        )
        for project in projects
    }


def explicit_floor(config: Config, name: str) -> float | None:
    """The run config's floor `name` for every project when this run's config set it; None
    when it is the field's default, which a project's own floor replaces."""
    return getattr(config, name) if name in config.model_fields_set else None


def _gates(
    report: pl.DataFrame,
    aggregated: pl.DataFrame,
    gold_projects: set[str],
    config: QualityConfig,
    *,
    floors: dict[str, dict[str, float]],
    mixed: dict[str, list[str]],
) -> pl.DataFrame:
    picked: dict[str, dict[str, Floor]] = {"min_alpha": {}, "min_gold_accuracy": {}}
    for name, run_per_project in (
        ("min_alpha", config.min_alpha_per_project),
        ("min_gold_accuracy", config.min_gold_accuracy_per_project),
    ):
        for project, own in floors.items():
            floor = pick_floor(
                project,
                run_per_project=run_per_project,
                run_all=explicit_floor(config, name),
                project_file=own,
                name=name,
            )
            if floor is not None:
                picked[name][project] = floor
    return quality_gates(
        report,
        min_alpha=config.min_alpha,
        min_gold_accuracy=config.min_gold_accuracy,
        max_flagged_share=config.max_flagged_share,
        min_alpha_per_project=picked["min_alpha"],
        min_gold_accuracy_per_project=picked["min_gold_accuracy"],
        gold_projects=gold_projects,
        aggregated=aggregated,
        mixed_kinds=mixed,
    )


def _mixed_kinds(judgments: pl.DataFrame) -> dict[str, list[str]]:
    """Project → its kinds, for the projects judged in several kinds on the day."""
    if "kind" not in judgments.columns:
        return {}
    kinds = judgments.group_by("project").agg(
        pl.col("kind").fill_null(DEFAULT_KIND).unique().sort().alias("kinds")
    )
    return {
        project: list(kinds)
        for project, kinds in kinds.filter(pl.col("kinds").list.len() > 1).iter_rows()
    }


# The gold projects a run found, by what it listed: `quality` and `kind_quality` both ask, and
# in one process (the in-process executor) the second asker reuses what the first read rather
# than reading every gold file's project column again. One run's entry is kept at a time.
_GOLD_OF_RUN: dict[tuple[object, ...], frozenset[str]] = {}


def gold_projects(
    lake: Lake, landing: LandingZone, required: list[str], *, run_id: str | None = None
) -> set[str]:
    """Projects that require gold: configured (`required`), or with a gold set, i.e. gold rows
    staged by any source (gold sets, the annotation DB) or written by the synthetic generator,
    whatever day those rows are for. Read from those inputs rather than from the daily
    `gold_labels` partitions materialized so far, so that whether a day is held back for
    judging no gold task depends on that day and the gold sets alone, not on which other days
    happen to have run before it.

    Within run `run_id` each gold file is read once while the listing stays the same."""
    staged = lake.list_keys(staging_prefix("gold_labels"))
    synthetic = landing.list_files("synthetic/gold_labels/")
    listed = (run_id, tuple(staged), tuple(synthetic))
    found = _GOLD_OF_RUN.get(listed) if run_id is not None else None
    if found is None:
        found = frozenset(
            staged_projects(staged, read=lake.read_columns_each)
            | staged_projects(
                [path for path, _ in synthetic], read=columns_from_bytes(landing.read_bytes)
            )
        )
        if run_id is not None:
            _GOLD_OF_RUN.clear()
            _GOLD_OF_RUN[listed] = found
    return {project for project in set(required) | found if project is not None}


def _nothing_to_gate(name: str) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=name,
        asset_key=AssetKey("quality_report"),
        passed=True,
        severity=AssetCheckSeverity.WARN,
        description="no categorical project judged this day",
    )


def _check_result(check: GateCheck) -> AssetCheckResult:
    """The engine's verdict as a check result: the reason in words, the figures as metadata."""
    return AssetCheckResult(
        check_name=check.name,
        asset_key=AssetKey("quality_report"),
        passed=check.passed,
        severity=AssetCheckSeverity(check.severity),
        description=check.description,
        metadata={
            "failing": check.failing,
            "warned": check.warned,
            "value": check.values,
            "floor": check.thresholds,
            "floor_source": check.threshold_sources,
            **per_subject_figures(check.values, check.thresholds),
        },
    )
