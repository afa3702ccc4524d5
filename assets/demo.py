"""`annotation-pipelines demo`: generate a workload, materialize the whole graph, summarize.

Runs in-process against the instance in DAGSTER_HOME, so every run it makes is visible in the
Dagster UI (`make dev`) afterwards.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import click
import polars as pl

from annotation_pipelines.settings import START_DATE_FILE, load_settings, write_start_date
from annotation_pipelines.storage import atomic_write_parquet
from annotation_pipelines.synthetic import generate_compute_usage, generate_workload
from annotation_pipelines.synthetic.workload import GENERATED_ENTRIES

if TYPE_CHECKING:
    # Only for annotations: dagster is imported inside `run_demo`, after the start date is set.
    from dagster import AssetCheckEvaluation, DagsterInstance, Definitions

# Six weeks: the shortest history the procurement plan calibrates its bands on
# (`forecasting.planning.MIN_HISTORY_DAYS`).
COMPUTE_HISTORY_DAYS = 42
# The weekly forecast's default backtest needs 408 hourly points (its windows, the 168-h
# horizon and room to fit): 17 days.
MIN_COMPUTE_HISTORY_DAYS = 17
# The demo prints one progress line per step; Dagster's per-event console log stays in the UI.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
# The options and days of the workload a demo generated, beside the lake and landing zone it
# filled: a later demo rebuilds that same workload in place, and refuses any other one.
DEMO_RECORD = "demo_workload.json"
# Everything the demo writes under the landing zone's synthetic/ folder.
DEMO_LANDING_ENTRIES = (*GENERATED_ENTRIES, "compute_usage")


def last_days(count: int, *, today: date | None = None) -> list[date]:
    """The `count` complete UTC days before today, oldest first."""
    today = today or datetime.now(UTC).date()
    return [today - timedelta(days=offset) for offset in range(count, 0, -1)]


def write_compute_landing(landing: Path, *, end: date, days: int, seed: int) -> int:
    usage = generate_compute_usage(end=end, days=days, seed=seed)
    for (day,), frame in usage.group_by(pl.col("time").dt.date(), maintain_order=True):
        target = landing / "synthetic" / "compute_usage" / f"day={day}" / "part-00000.parquet"
        atomic_write_parquet(frame, target)
    return usage.height


def workload_identity(
    *,
    judgments: int,
    days: list[date],
    seed: int,
    judgments_per_kind: int,
    compute_days: list[date],
) -> dict[str, object]:
    """What makes two demo workloads the same, as JSON."""
    return {
        "judgments": judgments,
        "days": [day.isoformat() for day in days],
        "seed": seed,
        "judgments_per_kind": judgments_per_kind,
        "telemetry_days": [compute_days[0].isoformat(), compute_days[-1].isoformat()],
    }


def _describe_workload(workload: dict[str, object] | None) -> str:
    if workload is None:
        return "a workload no demo recorded"
    days, telemetry = workload.get("days"), workload.get("telemetry_days")
    if not (isinstance(days, list) and days and isinstance(telemetry, list) and telemetry):
        return "a workload in a record this version cannot read"
    span = str(days[0]) if len(days) == 1 else f"{days[0]} … {days[-1]}"
    return (
        f"{workload.get('judgments'):,} judgments over {span}, seed "
        f"{workload.get('seed')}, {workload.get('judgments_per_kind'):,} per other kind, "
        f"telemetry {telemetry[0]} … {telemetry[-1]}"
    )


def _read_record(root: Path) -> dict[str, object] | None:
    try:
        recorded = json.loads((root / DEMO_RECORD).read_text())
    except (OSError, ValueError):
        return None
    return recorded if isinstance(recorded, dict) else None


def _filled(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def prepare_data_folder(
    root: Path,
    workload: dict[str, object],
    *,
    fresh: bool,
    echo: Callable[[str], object] = click.echo,
) -> bool:
    """Leave `root` ready for `workload`: empty, or holding this same workload, or (`fresh`)
    cleared of an earlier demo's output; True when it cleared one.

    The generator rewrites only the files it writes and every daily run reads what the landing
    zone and the lake hold, so an earlier, different workload left in place would be read back
    with this one as one, and the summary would count it too. `fresh` deletes only demo
    output: the demo's files under landing/synthetic/, and the lake, which is the demo's output
    as long as the landing zone holds nothing else."""
    landing, lake = root / "landing", root / "lake"
    synthetic = landing / "synthetic"
    if not _filled(synthetic) and not _filled(lake):
        return False
    recorded = _read_record(root)
    if recorded == workload:
        echo(f"Rebuilding the same demo workload already in {root}")
        return False
    earlier = _describe_workload(recorded)
    if not fresh:
        raise click.ClickException(
            f"{root} already holds {earlier}; this demo ({_describe_workload(workload)}) "
            "would be read back mixed with it. Run `make clean` first (deletes the data folder "
            "and the Dagster instance), pass --fresh to delete the earlier demo's landing files "
            "and lake, or set ANNOTATION_PIPELINES_DATA_DIR to a new folder"
        )
    others = sorted(
        [f"landing/{entry.name}" for entry in landing.iterdir() if entry.name != "synthetic"]
        + [
            f"landing/synthetic/{entry.name}"
            for entry in (synthetic.iterdir() if synthetic.is_dir() else [])
            if entry.name not in DEMO_LANDING_ENTRIES
        ]
    )
    if others:
        raise click.ClickException(
            f"--fresh deletes only demo output, and {root} also holds {', '.join(others)}, "
            "which the demo did not write: the lake was built from them too. Move them out, "
            "run `make clean`, or set ANNOTATION_PIPELINES_DATA_DIR to a new folder"
        )
    for name in DEMO_LANDING_ENTRIES:
        entry = synthetic / name
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif entry.exists() or entry.is_symlink():
            entry.unlink()
    if lake.exists():
        shutil.rmtree(lake)
    # The earlier workload's first day, which `write_start_date` would otherwise keep.
    (root / START_DATE_FILE).unlink(missing_ok=True)
    (root / DEMO_RECORD).unlink(missing_ok=True)
    echo(f"--fresh: deleted the earlier demo's landing files and lake in {root} ({earlier})")
    return True


class DemoOutcome(TypedDict):
    days: list[date]
    root: Path
    elapsed_s: float
    held_back: list[date]


def run_demo(
    *,
    judgments: int,
    days: int,
    seed: int,
    judgments_per_kind: int = 3_000,
    telemetry_days: int = COMPUTE_HISTORY_DAYS,
    until: date | None = None,
    fresh: bool = False,
    echo: Callable[[str], object] = click.echo,
) -> DemoOutcome:
    started = time.perf_counter()
    day_list = last_days(days, today=None if until is None else until + timedelta(days=1))
    compute_days = [day_list[-1] - timedelta(days=i) for i in range(telemetry_days)][::-1]
    root = load_settings().data_dir
    workload = workload_identity(
        judgments=judgments,
        days=day_list,
        seed=seed,
        judgments_per_kind=judgments_per_kind,
        compute_days=compute_days,
    )
    cleared = prepare_data_folder(root, workload, fresh=fresh, echo=echo)
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_RECORD).write_text(json.dumps(workload, indent=2) + "\n")
    # Daily partitions start where this data starts; recorded before the definitions (and
    # their partitions) are imported, and read again by `make dev` from the same folder.
    write_start_date(root, min(day_list[0], compute_days[0]))

    from dagster import AssetKey, DagsterInstance

    from assets.common.partitions import PROJECT_PARTITIONS
    from assets.definitions import build_definitions

    # Built now, not at import: the data folder is read from the environment at this moment.
    defs = build_definitions()
    landing = root / "landing"
    echo(f"Generating {judgments:,} synthetic judgments for {day_list[0]} … {day_list[-1]}")
    summary = generate_workload(
        landing / "synthetic",
        judgments=judgments,
        start=day_list[0],
        days=days,
        seed=seed,
        kinds=judgments_per_kind > 0,
        judgments_per_kind=max(judgments_per_kind, 1),
    )
    rows = write_compute_landing(landing, end=day_list[-1], days=telemetry_days, seed=seed)
    echo(f"  {summary.judgments:,} judgments, {summary.tasks:,} tasks, {rows:,} telemetry rows")

    instance = DagsterInstance.get()
    if cleared:
        # The instance would otherwise show the deleted lake's partitions as materialized;
        # the runs themselves stay in its history.
        instance.wipe_assets(list(defs.resolve_asset_graph().get_all_asset_keys()))
    daily = defs.resolve_job_def("daily_annotation_job")
    held_back: list[date] = []
    for day in day_list:
        result = daily.execute_in_process(
            partition_key=day.isoformat(), instance=instance, run_config=QUIET, raise_on_error=False
        )
        failed_gates = [
            _describe(check)
            for check in result.get_asset_check_evaluations()
            if not check.passed and check.severity.value == "ERROR"
        ]
        if failed_gates:
            held_back.append(day)
            echo(f"  {day}: quality gate failed: {'; '.join(failed_gates)}; curation held back")
        elif not result.success:
            raise click.ClickException(f"daily run for {day} failed; see the Dagster UI")
        else:
            echo(f"  materialized every daily layer for {day}")
    history_job = defs.resolve_job_def("compute_usage_job")
    for day in compute_days:
        history_job.execute_in_process(
            partition_key=day.isoformat(), instance=instance, run_config=QUIET
        )
    echo(f"  loaded {len(compute_days)} days of accelerator telemetry")
    projects = sorted(summary.per_project)
    instance.add_dynamic_partitions(PROJECT_PARTITIONS, projects)
    curation = defs.resolve_job_def("curation_job")
    for project in projects:
        result = curation.execute_in_process(
            partition_key=project, instance=instance, run_config=QUIET
        )
        if not result.success:
            raise click.ClickException(f"curated dataset for {project} failed; see the Dagster UI")
        version = next(
            event.materialization.metadata["version_id"].value
            for event in result.get_asset_materialization_events()
        )
        echo(f"  curated dataset for {project}: version {version}")
    if summary.kind_projects:
        result = defs.resolve_job_def("kind_curation_job").execute_in_process(
            instance=instance, run_config=QUIET
        )
        if not result.success:
            raise click.ClickException("curated datasets of the other kinds failed; see the UI")
        echo(f"  curated datasets for {', '.join(sorted(summary.kind_projects))}")
    versions = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={AssetKey("dataset_versions")}
    )
    versions.execute_in_process(instance=instance, run_config=QUIET)
    result = defs.resolve_job_def("forecast_job").execute_in_process(
        instance=instance, run_config=QUIET
    )
    if not result.success:
        raise click.ClickException("forecast run failed; see the Dagster UI")
    echo("  materialized the capacity forecasts")
    build_procurement_plan(defs, instance, telemetry_days=telemetry_days, echo=echo)
    elapsed = time.perf_counter() - started
    return {"days": day_list, "root": root, "elapsed_s": elapsed, "held_back": held_back}


def build_procurement_plan(
    defs: Definitions,
    instance: DagsterInstance,
    *,
    telemetry_days: int,
    echo: Callable[[str], object],
) -> None:
    """Materialize the monthly procurement plan when the telemetry is long enough for it."""
    from dagster import AssetKey

    from annotation_pipelines.forecasting.planning import MIN_HISTORY_DAYS

    if telemetry_days < MIN_HISTORY_DAYS:
        echo(
            f"  procurement plan skipped: it needs at least {MIN_HISTORY_DAYS} days of "
            f"telemetry (--telemetry-days {telemetry_days})"
        )
        return
    result = (
        defs.resolve_implicit_global_asset_job_def()
        .get_subset(asset_selection={AssetKey("procurement_plan")})
        .execute_in_process(instance=instance, run_config=QUIET, raise_on_error=False)
    )
    if not result.success:
        raise click.ClickException("procurement plan failed; see the Dagster UI")
    echo("  materialized the procurement plan")


def kind_accuracy(root: Path, days: list[date]) -> str:
    """Per kind project: the aggregate's accuracy against the synthetic truth, next to the
    kind's simple baseline (its non-default method in the registry) on the same judgments."""
    from annotation_pipelines.aggregation.registry import methods_for
    from annotation_pipelines.quality.kinds import aggregate_kind_day, truth_accuracy

    lake, truth_root = root / "lake", root / "landing" / "synthetic"
    wanted = [d.isoformat() for d in days]

    def read(table: str) -> pl.DataFrame:
        files = [lake / table / f"day={d}" / "data.parquet" for d in wanted]
        frames = [pl.read_parquet(f) for f in files if f.exists()]
        return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()

    labels = read("kind_aggregated_labels")
    if labels.height == 0:
        return ""
    judgments = read("judgments").filter(pl.col("kind") != "categorical")
    gold, tasks, item_scores = read("gold_labels"), read("raw_tasks"), read("kind_item_scores")
    truth = pl.read_parquet(truth_root / "kind_truth" / "**" / "*.parquet")
    items = pl.read_parquet(truth_root / "kind_items.parquet")
    lines = ["", "Per-kind accuracy against the synthetic truth (demo days, gold tasks excluded):"]
    lines.append(f"  {'project':<12} {'kind':<10} {'measure':<14} {'method':>22} {'baseline':>22}")
    for project, kind in labels.select("project", "kind").unique().sort("project").rows():
        baseline_method = methods_for(kind)[1]
        baseline_labels, baseline_items = [], []
        for (day,), rows in judgments.filter(pl.col("project") == project).group_by(
            pl.col("submitted_at").dt.date(), maintain_order=True
        ):
            result = aggregate_kind_day(
                rows,
                project=project,
                day=day,
                gold=gold.filter(pl.col("project") == project),
                tasks=tasks.filter(pl.col("project") == project),
                kind=kind,
                method=baseline_method,
            )
            baseline_labels.append(result.labels)
            baseline_items.append(result.items)
        # Gold tasks are clamped to their known answer: scored without them.
        own_truth = truth.filter(pl.col("project") == project).join(
            tasks.filter(pl.col("is_gold")).select("task_id"), on="task_id", how="anti"
        )
        own_items = items.filter(pl.col("project") == project)
        default_rows = labels.filter(pl.col("project") == project)
        method = str(default_rows["method"][0])
        if kind == "pairwise":
            default_rows = item_scores.filter(pl.col("project") == project)
            baseline = pl.concat(baseline_items)
        else:
            baseline = pl.concat(baseline_labels, how="diagonal_relaxed")
        ours = truth_accuracy(default_rows, own_truth, kind=kind, items=own_items)
        theirs = truth_accuracy(baseline, own_truth, kind=kind, items=own_items)
        for measure, value in ours.items():
            if measure == "items":
                continue
            lines.append(
                f"  {project:<12} {kind:<10} {measure:<14} "
                f"{_figure(value) + f' ({method})':>22} "
                f"{_figure(theirs.get(measure)) + f' ({baseline_method})':>22}"
            )
    return "\n".join(lines)


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _describe(check: AssetCheckEvaluation) -> str:
    """A failed gate in one phrase: its name and, when it names them, the failing projects."""
    from dagster import JsonMetadataValue

    failing = check.metadata.get("failing")
    # The gates record the failing projects as a JSON list.
    named = failing.value if isinstance(failing, JsonMetadataValue) else None
    projects = ", ".join(str(project) for project in named or [])
    return f"{check.check_name} ({projects})" if projects else check.check_name


def summarize(root: Path, days: list[date]) -> str:
    """Rows per layer over the demo days and the headline quality figures."""
    lake = root / "lake"
    lines = ["", "Rows per layer (demo days):"]
    for table in sorted(p.name for p in lake.iterdir() if p.is_dir()):
        files = [lake / table / f"day={d}" / "data.parquet" for d in days]
        files = [f for f in files if f.exists()] or sorted((lake / table).glob("data.parquet"))
        if not files:
            continue
        count = sum(pl.scan_parquet(f).select(pl.len()).collect().item() for f in files)
        lines.append(f"  {table:<32} {count:>10,}")
    report_files = [lake / "quality_report" / f"day={d}" / "data.parquet" for d in days]
    report_files = [f for f in report_files if f.exists()]
    if report_files:
        report = pl.read_parquet(report_files)
        headline = report.group_by("project").agg(
            pl.col("krippendorff_alpha").mean().round(3),
            pl.col("gold_accuracy").mean().round(3),
            pl.col("n_judgments").sum(),
        )
        lines += ["", "Quality (mean over the days):"]
        for row in headline.sort("project").iter_rows(named=True):
            lines.append(
                f"  {row['project']:<12} alpha={row['krippendorff_alpha']}  "
                f"gold accuracy={row['gold_accuracy']}  judgments={row['n_judgments']:,}"
            )
    lines += [
        "",
        f"Lake (Parquet, one folder per table, day=YYYY-MM-DD): {lake}",
        f"Curated datasets (Parquet + JSON Lines per split, card.md): {lake / 'datasets'}",
    ]
    reports = lake / "reports" / "quality"
    if reports.exists():
        lines.append(f"Quality reports (HTML, one per project and day): {reports}")
    lines.append("Open the Dagster UI on the same instance: make dev  (http://127.0.0.1:3000)")
    return "\n".join(lines)


@click.command("demo")
@click.option(
    "--judgments",
    type=click.IntRange(min=1),
    default=200_000,
    show_default=True,
    help="Synthetic judgments.",
)
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=7,
    show_default=True,
    help="Daily partitions to materialize.",
)
@click.option("--seed", default=7, show_default=True)
@click.option(
    "--judgments-per-kind",
    type=click.IntRange(min=0),
    default=3_000,
    show_default=True,
    help="Synthetic judgments of each non-categorical kind (0: categorical only).",
)
@click.option(
    "--telemetry-days",
    default=COMPUTE_HISTORY_DAYS,
    show_default=True,
    type=click.IntRange(min=MIN_COMPUTE_HISTORY_DAYS),
    help=(
        "Days of accelerator telemetry the capacity forecasts learn from "
        f"(the procurement plan needs {COMPUTE_HISTORY_DAYS})."
    ),
)
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The last UTC day to build (default: yesterday). The synthetic workload follows the "
    "calendar (quieter weekends), so the same --until and --seed give the same figures.",
)
@click.option(
    "--fresh",
    is_flag=True,
    help="Delete an earlier demo's landing files and lake first when they hold another "
    "workload (without it the demo refuses to mix with them); `make demo` passes it.",
)
def demo_command(
    judgments: int,
    days: int,
    seed: int,
    judgments_per_kind: int,
    telemetry_days: int,
    until: datetime | None,
    fresh: bool,
) -> None:
    """Generate a synthetic workload and materialize the whole asset graph on it."""
    if load_settings().dagster_home is None:
        raise click.ClickException("set DAGSTER_HOME (make demo does) so runs show in the UI")
    last = None if until is None else until.date()
    if last is not None and last >= datetime.now(UTC).date():
        raise click.BadParameter(f"{last} is not a complete UTC day yet", param_hint="--until")
    outcome = run_demo(
        judgments=judgments,
        days=days,
        seed=seed,
        judgments_per_kind=judgments_per_kind,
        telemetry_days=telemetry_days,
        until=last,
        fresh=fresh,
    )
    click.echo(summarize(outcome["root"], outcome["days"]))
    click.echo(kind_accuracy(outcome["root"], outcome["days"]))
    click.echo(f"\nDone in {outcome['elapsed_s']:.1f} s.")
