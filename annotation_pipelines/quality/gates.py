"""Quality gates: the one implementation; the asset checks on `quality_report` adapt it.

Kept here, Dagster-free, so the thresholds and their meaning are tested without an
orchestrator and the same gates can run from the command line or a notebook.

Every gate is evaluated per (project, day) and yields one row (columns GATES). A metric that
cannot be computed fails its gate with a description starting "undefined", because nothing
was shown to meet the floor:
- agreement_floor: no task has two judgments, or every pairable judgment has the same label.
  Always ERROR: the day is held back from curation.
- gold_accuracy_floor: no gold task was judged on the day. ERROR (held back) when the project
  requires gold, i.e. it has a gold set (`gold_projects`); a project without any gold set gets
  a WARN failure instead, so it is told every day that nothing checks its labels against gold
  but is not held back for ever for a gold set it never had.

A day with no judgment at all fails row_counts_sane at WARN, not ERROR: there is no row to hold
back, and a quiet day (a holiday) is not an outage; the failure is still alerted every such
day, so a source that stopped sending shows.

A project judged in several kinds on the day (e.g. a Label Studio project with a choices and a
rating control) fails row_counts_sane (ERROR): a report holds one kind's answers, so its
figures would describe part of the project's day.

A project's own floors live with the project, in the `quality_gates` object of its settings
file (the landing zone's `exports/<project>/project.json`), so every run of a day, an automatic
rebuild too, applies them: `project_gate_floors` validates that object and `pick_floor` says
which floor wins. Explicit run config beats the project's file, which beats the default:

1. a run config floor for the project (`min_*_per_project`);
2. a run config floor for every project, when the run's config sets it;
3. the project's `quality_gates` in project.json;
4. the default (the engine's, or the kind's agreement floor).

Each gate row names where its floor came from (`threshold_source`, shown after the floor).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import polars as pl

from annotation_pipelines.quality._common import require

GATES: dict[str, pl.DataType] = {
    "project": pl.String(),
    "day": pl.Date(),
    "gate": pl.String(),
    "passed": pl.Boolean(),
    "severity": pl.String(),
    "value": pl.Float64(),
    "threshold": pl.Float64(),
    "per_project_threshold": pl.Boolean(),
    # Where a per-project floor came from ("project.json", "run config", ...); null: default.
    "threshold_source": pl.String(),
    "description": pl.String(),
}


@dataclass(frozen=True, kw_only=True)
class GateSpec:
    """What a gate checks; `holds_back` gates fail with ERROR and keep the day out of curation."""

    name: str
    description: str
    holds_back: bool


GATE_SPECS: tuple[GateSpec, ...] = (
    GateSpec(
        name="agreement_floor",
        description="Krippendorff's alpha of every project at or above its floor; an undefined "
        "alpha (no task with two judgments, or a single label) fails. Holds the day back.",
        holds_back=True,
    ),
    GateSpec(
        name="gold_accuracy_floor",
        description="Accuracy of the day's judgments on gold tasks at or above the project's "
        "floor. No gold judged fails: with ERROR (held back) for a project that has a gold "
        "set, with WARN for a project that has none.",
        holds_back=True,
    ),
    GateSpec(
        name="flagged_annotator_share",
        description="Share of annotators flagged by their scorecard at or below the cap (WARN).",
        holds_back=False,
    ),
    GateSpec(
        name="row_counts_sane",
        description="Every judged task has exactly one aggregated label; the day is not empty. "
        "Holds the day back.",
        holds_back=True,
    ),
)
GATE_NAMES = tuple(spec.name for spec in GATE_SPECS)

# Defaults sit below what a healthy crowd day of the synthetic workload shows (alpha
# 0.31-0.44, gold accuracy 0.72-0.88 per project) and well above a spammer-flooded day's.
DEFAULT_MIN_ALPHA = 0.25
DEFAULT_MIN_GOLD_ACCURACY = 0.65
DEFAULT_MAX_FLAGGED_SHARE = 0.25

FROM_PROJECT_JSON = "project.json"
FROM_RUN_CONFIG = "run config"
# The object of a project's settings that holds its floors, and each floor's allowed range.
SETTINGS_KEY = "quality_gates"
PROJECT_FLOORS: dict[str, tuple[float, float]] = {
    "min_alpha": (-1.0, 1.0),
    "min_gold_accuracy": (0.0, 1.0),
}


@dataclass(frozen=True)
class Floor:
    """A per-project floor and where it came from, shown after it ("floor 0.40 (project.json)")."""

    value: float
    source: str

    @property
    def note(self) -> str:
        """What follows the floor in a gate's text: " (project.json)"; "" for the default."""
        return f" ({self.source})" if self.source else ""

    @property
    def row(self) -> tuple[float, bool, str | None]:
        """The gate row's (threshold, per_project_threshold, threshold_source)."""
        return (self.value, bool(self.source), self.source or None)


def project_gate_floors(settings: Mapping[str, object], *, source: str) -> dict[str, float]:
    """The floors of a project's settings (its `quality_gates` object), keyed as PROJECT_FLOORS;
    {} without one. ValueError in one line naming `source` (the file) and the field otherwise.
    """
    given = settings.get(SETTINGS_KEY)
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise ValueError(
            f"{source}: {SETTINGS_KEY}: expected an object like "
            f'{{"min_alpha": 0.4}}, got {type(given).__name__}'
        )
    floors = {}
    for name, value in given.items():
        where = f"{source}: {SETTINGS_KEY}.{name}"
        if name not in PROJECT_FLOORS:
            raise ValueError(f"{where}: unknown field (known: {', '.join(PROJECT_FLOORS)})")
        low, high = PROJECT_FLOORS[name]
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise ValueError(f"{where}: expected a number in [{low:g}, {high:g}], got {value!r}")
        floors[name] = float(value)
    return floors


def pick_floor(
    project: str,
    *,
    run_per_project: Mapping[str, float],
    run_all: float | None,
    project_file: Mapping[str, float],
    name: str,
) -> Floor | None:
    """The floor `name` of `project` by precedence (see the module docstring); None: the
    default. `run_all` is the run config's floor for every project when the run set it."""
    if project in run_per_project:
        return Floor(run_per_project[project], FROM_RUN_CONFIG)
    if run_all is not None:
        return Floor(run_all, FROM_RUN_CONFIG)
    if name in project_file:
        return Floor(project_file[name], FROM_PROJECT_JSON)
    return None


def quality_gates(
    report: pl.DataFrame,
    *,
    min_alpha: float = DEFAULT_MIN_ALPHA,
    min_gold_accuracy: float = DEFAULT_MIN_GOLD_ACCURACY,
    max_flagged_share: float = DEFAULT_MAX_FLAGGED_SHARE,
    min_alpha_per_project: Mapping[str, float | Floor] | None = None,
    min_gold_accuracy_per_project: Mapping[str, float | Floor] | None = None,
    gold_projects: Collection[str] = (),
    aggregated: pl.DataFrame | None = None,
    mixed_kinds: Mapping[str, Sequence[str]] | None = None,
) -> pl.DataFrame:
    """One row per (project, day, gate) of a quality report; columns GATES.

    `min_*_per_project` override the floors for the projects they name (the row says
    `per_project_threshold`, and `threshold_source` where the floor came from: a Floor's source,
    "per-project" for a plain number). `gold_projects` are the projects that have a gold set: for
    them a day without gold judgments fails with ERROR. With `aggregated` (one label per task), the
    row-count gate also checks that each project has as many labels as judged tasks.
    `mixed_kinds` (project → its kinds) names the projects judged in several kinds on the day:
    their row-count gate fails, since no report holds all of such a project's answers.
    """
    require(report, "report", ("project", "day", "n_tasks", "n_judgments", "krippendorff_alpha"))
    require(report, "report", ("gold_accuracy",))
    alpha_floors = _floors(min_alpha_per_project)
    gold_floors = _floors(min_gold_accuracy_per_project)
    labels = _labels_per_project(aggregated)
    rows: list[tuple[object, ...]] = []
    for row in report.iter_rows(named=True):
        project = row["project"]
        for gate in (
            _agreement(row, floor=alpha_floors.get(project, Floor(min_alpha, ""))),
            _gold(
                row,
                floor=gold_floors.get(project, Floor(min_gold_accuracy, "")),
                requires_gold=project in gold_projects,
            ),
            _flagged(row, ceiling=max_flagged_share),
            _row_counts(
                row,
                labels=None if labels is None else labels.get(project, 0),
                kinds=(mixed_kinds or {}).get(project),
            ),
        ):
            rows.append((project, row["day"], *gate))
    return pl.DataFrame(rows, schema=GATES, orient="row")


@dataclass(frozen=True, kw_only=True)
class GateCheck:
    """One gate over a whole day: what an asset check result shows."""

    name: str
    passed: bool
    severity: str  # "ERROR" when a failing project is held back, else "WARN"
    description: str
    failing: list[str]  # projects held back by this gate
    warned: list[str]  # projects that failed it with WARN only
    values: dict[str, float | None] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    # project → where its floor came from ("project.json", "run config", "default").
    threshold_sources: dict[str, str] = field(default_factory=dict)


def gate_checks(gates: pl.DataFrame) -> list[GateCheck]:
    """One GateCheck per gate in GATE_SPECS from the rows of `quality_gates` for one day.

    The description is the reason in words, one clause per project that failed (all projects
    when none did), e.g. "sentiment: alpha 0.210 < floor 0.300 (per-project)". A day without
    a single project (no judgments) fails the row-count gate at WARN. The floor's source follows it
    in brackets when it is not the default: "(project.json)", "(run config)".
    """
    require(gates, "gates", tuple(GATES))
    checks = []
    for spec in GATE_SPECS:
        rows = gates.filter(pl.col("gate") == spec.name).sort("project")
        if rows.height == 0:
            empty_fails = spec.name == "row_counts_sane"
            checks.append(
                GateCheck(
                    name=spec.name,
                    passed=not empty_fails,
                    # A day with no rows holds nothing back, and a quiet day is not an outage;
                    # failing at WARN still alerts every such day, so a feed that stopped shows.
                    severity="WARN",
                    description="the day has no judgments"
                    if empty_fails
                    else "no project judged this day",
                    failing=[],
                    warned=[],
                )
            )
            continue
        failed = rows.filter(~pl.col("passed"))
        failing = failed.filter(pl.col("severity") == "ERROR")["project"].to_list()
        warned = failed.filter(pl.col("severity") == "WARN")["project"].to_list()
        shown = failed if failed.height else rows
        checks.append(
            GateCheck(
                name=spec.name,
                passed=failed.height == 0,
                severity="ERROR" if failing or (spec.holds_back and not warned) else "WARN",
                description="; ".join(
                    f"{project}: {text}"
                    for project, text in shown.select("project", "description").rows()
                ),
                failing=failing,
                warned=warned,
                values=dict(rows.select("project", "value").rows()),
                thresholds=dict(rows.select("project", "threshold").rows()),
                threshold_sources={
                    project: source or "default"
                    for project, source in rows.select("project", "threshold_source").rows()
                },
            )
        )
    return checks


def gate_verdicts(report: pl.DataFrame, gates: pl.DataFrame) -> pl.DataFrame:
    """`report` with `gates_passed`, `failed_gates` (names) and `gate_reasons` per project-day.

    Only ERROR failures hold a day back (gates_passed false); WARN failures are listed in
    `gate_reasons` too, so the report says why a gate is yellow.
    """
    require(gates, "gates", tuple(GATES))
    failed = gates.filter(~pl.col("passed"))
    per_day = failed.group_by("project", "day").agg(
        pl.col("gate")
        .filter(pl.col("severity") == "ERROR")
        .sort()
        .str.join(",")
        .alias("failed_gates"),
        pl.format("{} ({}): {}", "gate", pl.col("severity"), "description")
        .sort()
        .str.join("; ")
        .alias("gate_reasons"),
    )
    joined = report.join(per_day, on=["project", "day"], how="left", maintain_order="left")
    return joined.with_columns(
        pl.col("failed_gates").fill_null(""),
        pl.col("gate_reasons").fill_null(""),
    ).with_columns(gates_passed=pl.col("failed_gates") == "")


def _floors(given: Mapping[str, float | Floor] | None) -> dict[str, Floor]:
    return {
        project: floor if isinstance(floor, Floor) else Floor(float(floor), "per-project")
        for project, floor in (given or {}).items()
    }


def _agreement(row: dict[str, object], *, floor: Floor) -> tuple[object, ...]:
    alpha = _number(row["krippendorff_alpha"])
    if alpha is None:
        pairable = row.get("n_pairable_tasks")
        single = pairable == 0 or (pairable is None and row["n_judgments"] == row["n_tasks"])
        reason = (
            "no task has two judgments"
            if single
            else "every pairable judgment has the same label (no variation to measure)"
        )
        return ("agreement_floor", False, "ERROR", None, *floor.row, f"undefined: {reason}")
    passed = alpha >= floor.value
    relation = ">=" if passed else "<"
    return (
        "agreement_floor",
        passed,
        "ERROR",
        alpha,
        *floor.row,
        f"alpha {alpha:.3f} {relation} floor {floor.value:.2f}{floor.note}",
    )


def _gold(row: dict[str, object], *, floor: Floor, requires_gold: bool) -> tuple[object, ...]:
    accuracy = _number(row["gold_accuracy"])
    if accuracy is None:
        if requires_gold:
            reason = "undefined: no gold task judged this day (the project has a gold set)"
            return ("gold_accuracy_floor", False, "ERROR", None, *floor.row, reason)
        reason = "undefined: the project has no gold set, so no judgment is checked against gold"
        return ("gold_accuracy_floor", False, "WARN", None, *floor.row, reason)
    passed = accuracy >= floor.value
    relation = ">=" if passed else "<"
    judged = row.get("n_gold_judgments")
    over = f" over {judged:,} gold judgments" if isinstance(judged, int) else ""
    return (
        "gold_accuracy_floor",
        passed,
        "ERROR",
        accuracy,
        *floor.row,
        f"gold accuracy {accuracy:.3f} {relation} floor {floor.value:.2f}{floor.note}{over}",
    )


def _flagged(row: dict[str, object], *, ceiling: float) -> tuple[object, ...]:
    share = _number(row.get("share_flagged_annotators"))
    if share is None:
        shown = (ceiling, False, None)
        return ("flagged_annotator_share", True, "WARN", None, *shown, "no scorecards")
    passed = share <= ceiling
    relation = "<=" if passed else ">"
    return (
        "flagged_annotator_share",
        passed,
        "WARN",
        share,
        ceiling,
        False,
        None,
        f"{share:.1%} of annotators flagged {relation} cap {ceiling:.0%}",
    )


def _row_counts(
    row: dict[str, object], *, labels: int | None, kinds: Sequence[str] | None = None
) -> tuple[object, ...]:
    judgments = int(_number(row["n_judgments"]) or 0)
    tasks = int(_number(row["n_tasks"]) or 0)
    if kinds is not None and len(kinds) > 1:
        shown = ", ".join(sorted(kinds))
        passed = False
        text = f"judgments of several kinds ({shown}): a project holds one kind; give each "
        text += "control its own project"
    elif judgments == 0:
        passed, text = False, "no judgments"
    elif labels is not None and labels != tasks:
        passed, text = False, f"{labels:,} aggregated labels for {tasks:,} judged tasks"
    else:
        shown = "" if labels is None else f", {labels:,} aggregated labels"
        passed, text = True, f"{judgments:,} judgments on {tasks:,} tasks{shown}"
    return ("row_counts_sane", passed, "ERROR", float(judgments), 1.0, False, None, text)


def _labels_per_project(aggregated: pl.DataFrame | None) -> dict[str, int] | None:
    if aggregated is None:
        return None
    require(aggregated, "aggregated", ("task_id", "project"))
    counts = aggregated.group_by("project").agg(pl.len().alias("labels"))
    return dict(counts.rows())


def _number(value: object) -> float | None:
    """A figure of the report (a numeric column's value); None when missing or NaN."""
    if not isinstance(value, int | float):
        return None
    number = float(value)
    return None if math.isnan(number) else number
