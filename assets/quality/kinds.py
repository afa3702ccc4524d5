"""Quality of every non-categorical kind: agreement with the kind's distance, gold, scorecards.

Per project-day: Krippendorff's alpha with the kind's distance and its bootstrap interval, the
raw mean pairwise agreement, the kind's gold metric; per annotator a scorecard (reliability,
agreement with the consensus, gold score, box looseness, rating bias) with flags and reasons;
the tasks whose aggregate is not confident go to a re-annotation queue. The gates are the one
engine implementation (`annotation_pipelines.quality.gates`) with an agreement floor per kind,
reported as partitioned asset checks on `kind_quality_report` (not blocking, as for the
categorical report: the verdict is carried by `gates_passed` and the kind snapshots hold a
failed day back). A project's own floors come from its settings file, as for the categorical
gates (`quality_gates.min_alpha` over the kind's floor, `min_gold_accuracy` over
`min_gold_score`). One HTML page per day shows every kind project.
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
    MetadataValue,
    Output,
    PreviewWarning,
    asset,
    multi_asset,
)
from pydantic import Field

from annotation_pipelines.curation.privacy import safe_for_display
from annotation_pipelines.curation.versioning import aggregate_fingerprints
from annotation_pipelines.lake import kind_report_key, kind_requests_key
from annotation_pipelines.loop.kind_posterior import (
    KIND_TARGETS,
    decision_time,
    queue_requests,
    settled_tasks,
)
from annotation_pipelines.loop.live import ANNOTATOR_ACTIONS, label_studio_requests
from annotation_pipelines.quality import GATE_SPECS, gate_checks, gate_verdicts
from annotation_pipelines.quality.gates import DEFAULT_MAX_FLAGGED_SHARE, Floor, pick_floor
from annotation_pipelines.quality.kinds import (
    DEFAULT_KIND_MIN_ALPHA,
    DEFAULT_MAX_BOX_LOOSENESS,
    DEFAULT_MIN_CONSENSUS_ALPHA,
    DEFAULT_MIN_GOLD_SCORE,
    KIND_QUALITY_REPORT,
    KIND_QUEUE,
    KIND_SCORECARDS,
    KindThresholds,
    assess_kind_day,
    kind_gates,
    render_kind_report,
)
from annotation_pipelines.settings import ANNOTATION_DB_DSN, load_settings
from assets.aggregation.kinds import kind_projects
from assets.common.metadata import per_subject_figures
from assets.common.outs import table_out
from assets.common.partitions import daily_partitions
from assets.quality.assets import explicit_floor, gold_projects, project_floors
from resources.annotation_db import AnnotationDatabase
from resources.lake import Lake
from resources.landing import LandingZone

GROUP = "quality"
OWNERS = ["team:annotation-quality"]
REPORT = "kind_quality_report"


class KindQualityConfig(Config):
    """Floors and flag thresholds of the per-kind quality (launchpad-editable). A gate floor
    set here applies to this run only and beats the project's own (its project.json)."""

    min_alpha_per_kind: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_KIND_MIN_ALPHA),
        description="Gate: Krippendorff's alpha floor per kind (the kind's distance).",
    )
    min_alpha_per_project: dict[str, float] = Field(default_factory=dict)
    min_gold_score: float = Field(
        default=DEFAULT_MIN_GOLD_SCORE,
        description="Gate: floor of the kind's gold metric mapped onto [0, 1].",
    )
    min_gold_score_per_project: dict[str, float] = Field(default_factory=dict)
    max_flagged_share: float = DEFAULT_MAX_FLAGGED_SHARE
    gold_required_projects: list[str] = Field(
        default_factory=list,
        description="Projects whose days fail (ERROR) without gold judgments. Projects with "
        "a gold set staged require it anyway; for the others a day without gold is a WARN.",
    )
    annotator_min_consensus_alpha: float = DEFAULT_MIN_CONSENSUS_ALPHA
    annotator_min_gold_score: float = DEFAULT_MIN_GOLD_SCORE
    max_box_looseness: float = DEFAULT_MAX_BOX_LOOSENESS
    queue_target_confidence: dict[str, float] = Field(
        default_factory=lambda: dict(KIND_TARGETS),
        description="Queue: the policy's target confidence per kind (below it, another vote).",
    )
    queue_min_votes: int = Field(default=3, description="Queue: votes every task starts with.")
    queue_max_votes: int = Field(
        default=15, description="Queue: at this many votes below target, an expert instead."
    )
    bootstrap_resamples: int = Field(default=200, description="Bootstrap replicates for CIs.")


with warnings.catch_warnings():
    warnings.simplefilter("ignore", PreviewWarning)
    KIND_GATES = tuple(
        AssetCheckSpec(
            spec.name, asset=REPORT, description=spec.description, partitions_def=daily_partitions
        )
        for spec in GATE_SPECS
    )


@multi_asset(
    outs={
        REPORT: table_out(
            "Per non-categorical project and day: kind, distance, alpha with its "
            "bootstrap interval, raw pairwise agreement, gold metric, counts, gate verdicts.",
            group=GROUP,
            owners=OWNERS,
        ),
        "kind_scorecards": table_out(
            "Per annotator of every non-categorical project: reliability, agreement "
            "with the consensus, gold metric, box looseness, rating bias; flags with reasons.",
            group=GROUP,
            owners=OWNERS,
        ),
        "kind_reannotation_queue": table_out(
            "Tasks of non-categorical projects whose aggregate is not confident.",
            group=GROUP,
            owners=OWNERS,
        ),
    },
    check_specs=list(KIND_GATES),
    partitions_def=daily_partitions,
    pool="daily_layers",
)
def kind_quality(  # noqa: ANN201
    context: AssetExecutionContext,
    config: KindQualityConfig,
    lake: Lake,
    landing: LandingZone,
    judgments: pl.DataFrame,
    gold_labels: pl.DataFrame,
    kind_aggregated_labels: pl.DataFrame,
    kind_annotator_reliability: pl.DataFrame,
):
    """Score each non-categorical project of the day and gate it."""
    day = dt.date.fromisoformat(context.partition_key)
    limits = KindThresholds(
        min_consensus_alpha=config.annotator_min_consensus_alpha,
        min_gold_score=config.annotator_min_gold_score,
        max_box_looseness=config.max_box_looseness,
        queue_targets=config.queue_target_confidence,
        queue_min_votes=config.queue_min_votes,
        queue_max_votes=config.queue_max_votes,
    )
    reports, cards, queues = [], [], []
    for project in kind_projects(judgments):
        scored = assess_kind_day(
            judgments,
            kind_aggregated_labels,
            kind_annotator_reliability,
            project=project,
            day=day,
            gold=gold_labels,
            thresholds=limits,
            n_resamples=config.bootstrap_resamples,
        )
        reports.append(scored.report)
        cards.append(scored.scorecards)
        queues.append(scored.queue)
    report = pl.concat(reports) if reports else pl.DataFrame(schema=KIND_QUALITY_REPORT)
    scorecards = pl.concat(cards) if cards else pl.DataFrame(schema=KIND_SCORECARDS)
    queue = pl.concat(queues) if queues else pl.DataFrame(schema=KIND_QUEUE)
    required = gold_projects(
        lake, landing, config.gold_required_projects, run_id=context.run.run_id
    )
    alpha_floors, gold_floors = _kind_floors(
        config, project_floors(landing, report["project"].to_list()), report
    )
    gates = kind_gates(
        report,
        kind_aggregated_labels,
        min_alpha_per_kind=config.min_alpha_per_kind,
        min_alpha_per_project=alpha_floors,
        min_gold_score=config.min_gold_score,
        min_gold_score_per_project=gold_floors,
        max_flagged_share=config.max_flagged_share,
        gold_projects=required,
    )
    report = gate_verdicts(report, gates).sort("project")
    # What the verdict was made from: a kind snapshot holds the day back once the day's
    # aggregates change, until this report is rebuilt from them.
    made_from = {
        project: fingerprint
        for (project, _), fingerprint in aggregate_fingerprints(kind_aggregated_labels).items()
    }
    report = report.with_columns(
        input_fingerprint=pl.col("project").replace_strict(
            made_from, default=None, return_dtype=pl.String
        )
    )
    key = load_settings().pseudonym_key
    shown = safe_for_display(scorecards, key=key)
    html = render_kind_report(
        report, scorecards=shown, queue=queue, title=f"Annotation quality — every kind — {day}"
    )
    report_key = kind_report_key(context.partition_key)
    lake.put(report_key, html.encode("utf-8"))
    yield Output(
        report,
        output_name=REPORT,
        metadata={
            "html_report": MetadataValue.path(lake.uri(report_key)),
            "alpha_per_project": MetadataValue.json(
                {
                    project: None if alpha is None else round(alpha, 4)
                    for project, alpha in report.select("project", "krippendorff_alpha").iter_rows()
                }
            ),
        },
    )
    yield Output(
        scorecards.sort("project", "annotator_id"),
        output_name="kind_scorecards",
        metadata={"flagged": MetadataValue.int(int(scorecards["flagged"].sum()))},
    )
    yield Output(queue, output_name="kind_reannotation_queue")
    if report.height == 0:
        # A day without any non-categorical project has nothing to gate: every gate passes.
        for spec in GATE_SPECS:
            yield AssetCheckResult(
                check_name=spec.name,
                asset_key=AssetKey(REPORT),
                passed=True,
                severity=AssetCheckSeverity.WARN,
                description="no non-categorical project judged this day",
            )
        return
    for check in gate_checks(gates):
        yield AssetCheckResult(
            check_name=check.name,
            asset_key=AssetKey(REPORT),
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


def _kind_floors(
    config: KindQualityConfig, floors: dict[str, dict[str, float]], report: pl.DataFrame
) -> tuple[dict[str, Floor], dict[str, Floor]]:
    """(alpha, gold score) floors per project that are not the defaults, by the precedence of
    the categorical gates; the kind's floor for every project counts as the run config's
    when this run set `min_alpha_per_kind`."""
    set_per_kind = explicit_floor(config, "min_alpha_per_kind")
    kinds = dict(report.select("project", "kind").iter_rows())
    alpha, gold = {}, {}
    for project, own in floors.items():
        kind_floor = (
            config.min_alpha_per_kind.get(kinds[project]) if set_per_kind is not None else None
        )
        picked = pick_floor(
            project,
            run_per_project=config.min_alpha_per_project,
            run_all=kind_floor,
            project_file=own,
            name="min_alpha",
        )
        if picked is not None:
            alpha[project] = picked
        picked = pick_floor(
            project,
            run_per_project=config.min_gold_score_per_project,
            run_all=explicit_floor(config, "min_gold_score"),
            project_file=own,
            name="min_gold_accuracy",
        )
        if picked is not None:
            gold[project] = picked
    return alpha, gold


def _later_day(context: AssetExecutionContext) -> str | None:
    """The latest day after this one whose `kind_task_requests` is materialized, if any."""
    days = context.instance.get_materialized_partitions(context.asset_key)
    # Daily keys are ISO dates: their order as text is their order in time.
    later = [day for day in days if day > context.partition_key]
    return max(later) if later else None


@asset(
    group_name=GROUP,
    owners=OWNERS,
    partitions_def=daily_partitions,
    kinds={"postgres", "polars"},
    description=(
        "The policy's requests for non-categorical tasks (another judgment, an expert), "
        "written once per decision to the annotation DB's task_requests and as a Label "
        "Studio task list; the open requests of the day's settled tasks are withdrawn."
    ),
)
def kind_task_requests(
    context: AssetExecutionContext,
    lake: Lake,
    annotation_db: AnnotationDatabase,
    kind_reannotation_queue: pl.DataFrame,
    kind_aggregated_labels: pl.DataFrame,
) -> Output[pl.DataFrame]:
    """Write the day's policy queue back where the annotation tool reads it."""
    day = dt.date.fromisoformat(context.partition_key)
    decided_at = decision_time(day, now=dt.datetime.now(dt.UTC))
    requests = queue_requests(kind_reannotation_queue, created_at=decided_at)
    lake.put(kind_requests_key(context.partition_key), label_studio_requests(requests))
    if not annotation_db.configured:
        # Without an annotation DB (the local demo) the lake's task list is the hand-off.
        written = f"no annotation DB configured ({ANNOTATION_DB_DSN}); task list in the lake"
    else:
        later = _later_day(context)
        # A later day may have found settled a task this day queues, and a settled decision
        # leaves no row that would withdraw this day's request: written now, it would stay
        # open. The day still withdraws what it settled (only requests older than its end).
        counts, _ = annotation_db.write_requests_recorded(
            task_requests=requests if later is None else requests.clear(),
            annotator_actions=pl.DataFrame(schema=ANNOTATOR_ACTIONS),
            settled=settled_tasks(kind_aggregated_labels, kind_reannotation_queue),
            decided_at=decided_at,
        )
        if later is None:
            written = (
                f"{counts['task_requests']} new of {requests.height} in task_requests, "
                f"{counts['withdrawn']} withdrawn"
            )
        else:
            written = (
                f"no new requests: a later day ({later}) already wrote its requests, so the "
                f"{requests.height} of this day stay in the task list only; "
                f"{counts['withdrawn']} withdrawn"
            )
    context.log.info(f"kind requests {context.partition_key}: {written}")
    return Output(
        requests,
        metadata={
            "annotation_db": MetadataValue.text(written),
            "label_studio_tasks": MetadataValue.path(
                lake.uri(kind_requests_key(context.partition_key))
            ),
            "by_request": MetadataValue.json(
                dict(requests.group_by("request").len().sort("request").iter_rows())
            ),
        },
    )
