"""A realistic, seeded annotation workload streamed to a day-partitioned Parquet landing zone.

The model, per project: tasks arrive each day with a weekly rhythm (weekends are quieter) and a
daytime curve; each task has a true label drawn from the project's imbalanced class priors and
is judged by `overlap` distinct annotators drawn with a skewed (Zipf-like) activity. Annotators
follow a one-coin model with confusion towards the neighbouring class: reliable annotators have
accuracy drawn from the project's Beta (8, 2 by default) clipped to [0.55, 0.995]; a share of
spammers answer uniformly at
random or always the same label, fast; one adversarial annotator per project answers wrongly on
purpose. A share of tasks are gold (honeypot) tasks whose truth is published as gold labels.
Durations are log-normal around each annotator's own pace.

It writes, under `out_dir`:
    projects.parquet, annotators.parquet
    tasks/day=YYYY-MM-DD/part-NNNNN.parquet       (schema.RAW_TASKS)
    judgments/day=YYYY-MM-DD/part-NNNNN.parquet   (schema.JUDGMENTS)
    gold_labels/day=YYYY-MM-DD/part-NNNNN.parquet (schema.GOLD_LABELS)
    truth/day=YYYY-MM-DD/part-NNNNN.parquet       (task_id, project, label): the ground truth

Work is done in chunks of at most `chunk_judgments` rows, so 100 million judgments never sit in
memory at once; each chunk is drawn from its own seed (derived from the run seed, day, project
and chunk number), so output does not depend on chunk scheduling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from annotation_pipelines import schema
from annotation_pipelines.storage import atomic_write_parquet

SOURCE = "synthetic"


@dataclass(frozen=True)
class ProjectSpec:
    """One annotation project: its label set, class priors and how it is staffed."""

    name: str
    labels: tuple[str, ...]
    priors: tuple[float, ...]
    overlap: int
    share_of_volume: float
    annotators: int
    gold_share: float = 0.05
    spammer_share: float = 0.08
    sla_days: int = 2
    median_seconds: float = 30.0
    # Beta(a, b) of reliable annotators' accuracy: easy binary screening tasks get experts.
    skill: tuple[float, float] = (8.0, 2.0)


DEFAULT_PROJECTS: tuple[ProjectSpec, ...] = (
    ProjectSpec(
        name="sentiment",
        labels=("negative", "neutral", "positive"),
        priors=(0.2, 0.5, 0.3),
        overlap=3,
        share_of_volume=0.45,
        annotators=60,
        median_seconds=12.0,
    ),
    ProjectSpec(
        name="toxicity",
        labels=("safe", "toxic"),
        priors=(0.9, 0.1),
        overlap=5,
        share_of_volume=0.35,
        annotators=40,
        median_seconds=8.0,
        sla_days=1,
        skill=(30.0, 1.5),
        spammer_share=0.05,
    ),
    ProjectSpec(
        name="intent",
        labels=("billing", "cancel", "other", "support", "upgrade"),
        priors=(0.25, 0.1, 0.15, 0.35, 0.15),
        overlap=3,
        share_of_volume=0.20,
        annotators=30,
        median_seconds=25.0,
        sla_days=3,
    ),
)

# Everything `generate_workload` writes under its folder (with `kinds` too), and nothing else:
# what `generate --overwrite` clears before a new run.
GENERATED_ENTRIES = (
    "projects.parquet",
    "annotators.parquet",
    "kind_items.parquet",
    "tasks",
    "judgments",
    "gold_labels",
    "truth",
    "kind_truth",
)

# Activity falls at the weekend (Saturday, Sunday) as it does on real annotation platforms.
WEEKDAY_WEIGHT = (1.0, 1.05, 1.05, 1.0, 0.9, 0.45, 0.35)


@dataclass(frozen=True)
class WorkloadSummary:
    out_dir: Path
    days: tuple[date, ...]
    tasks: int
    judgments: int
    gold_tasks: int
    annotators: int
    files: int
    per_project: dict[str, int] = field(default_factory=dict)
    # Judgments per project of the non-categorical kinds (empty unless `kinds=True`).
    kind_projects: dict[str, int] = field(default_factory=dict)


def judgments_floor(days: int, projects: Sequence[ProjectSpec] = DEFAULT_PROJECTS) -> int:
    """About the fewest judgments a workload of `days` days holds, whatever was asked: every
    project gets at least one task a day, judged `overlap` times (a task still in progress has
    fewer)."""
    return days * sum(spec.overlap for spec in projects)


def generate_workload(
    out_dir: str | Path,
    *,
    judgments: int = 50_000,
    start: date,
    days: int = 7,
    seed: int = 0,
    projects: Sequence[ProjectSpec] = DEFAULT_PROJECTS,
    chunk_judgments: int = 2_000_000,
    annotators_scale: float = 1.0,
    progress: Callable[[str], None] | None = None,
    kinds: bool = False,
    judgments_per_kind: int = 3_000,
) -> WorkloadSummary:
    """Write a workload of about `judgments` judgments over `days` days starting at `start`.

    `annotators_scale` multiplies every project's annotator pool (10,000 annotators for the
    100-million-judgment scale run, for example). With `kinds`, one project of every
    non-categorical kind is added (`synthetic.kinds`), about `judgments_per_kind` judgments
    each over the days; the categorical output is the same with or without it.
    """
    if judgments < 1 or days < 1:
        raise ValueError("judgments and days must be positive")
    # A chunk of no judgments never advances: the writer would loop for ever.
    if chunk_judgments < 1:
        raise ValueError(f"chunk_judgments must be positive, got {chunk_judgments}")
    if not math.isfinite(annotators_scale) or annotators_scale <= 0:
        raise ValueError(f"annotators_scale must be a finite number > 0, got {annotators_scale}")
    total_share = sum(p.share_of_volume for p in projects)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    day_list = tuple(start + timedelta(days=i) for i in range(days))
    weights = np.array(
        [WEEKDAY_WEIGHT[d.weekday()] * (1 + 0.01 * i) for i, d in enumerate(day_list)]
    )
    weights = weights / weights.sum()

    annotator_frames = []
    pools: dict[str, _Pool] = {}
    for index, spec in enumerate(projects):
        if len(spec.labels) != len(spec.priors) or not math.isclose(sum(spec.priors), 1.0):
            raise ValueError(f"project {spec.name}: priors must match labels and sum to 1")
        pool = _make_pool(spec, seed=seed * 1_000 + index, scale=annotators_scale)
        pools[spec.name] = pool
        annotator_frames.append(pool.frame)
    annotators = pl.concat(annotator_frames)
    atomic_write_parquet(annotators, out / "annotators.parquet")
    atomic_write_parquet(_projects_frame(projects), out / "projects.parquet")

    n_tasks = n_judgments = n_gold = files = 0
    per_project: dict[str, int] = {p.name: 0 for p in projects}
    for day_index, day in enumerate(day_list):
        part = 0
        for project_index, spec in enumerate(projects):
            project_judgments = judgments * weights[day_index] * spec.share_of_volume / total_share
            tasks_today = max(1, round(project_judgments / spec.overlap))
            per_chunk = max(1, chunk_judgments // spec.overlap)
            for chunk, first in enumerate(range(0, tasks_today, per_chunk)):
                count = min(per_chunk, tasks_today - first)
                rng = np.random.default_rng([seed, day.toordinal(), project_index, chunk])
                tables = _draw_chunk(spec, pools[spec.name], rng, day=day, first=first, count=count)
                for name, frame in tables.items():
                    target = out / name / f"day={day.isoformat()}" / f"part-{part:05d}.parquet"
                    atomic_write_parquet(frame, target)
                    files += 1
                part += 1
                n_tasks += count
                n_judgments += tables["judgments"].height
                n_gold += tables["gold_labels"].height
                per_project[spec.name] += tables["judgments"].height
                if progress:
                    progress(f"{day} {spec.name}: {n_judgments:,} judgments so far")
    kind_projects: dict[str, int] = {}
    if kinds:
        from annotation_pipelines.synthetic.kinds import generate_kind_days

        extra = generate_kind_days(
            out, days=day_list, weights=weights, judgments_per_kind=judgments_per_kind, seed=seed
        )
        annotators = pl.concat([annotators, extra.annotators])
        atomic_write_parquet(annotators, out / "annotators.parquet")
        n_tasks, n_judgments, n_gold = (
            n_tasks + extra.tasks,
            n_judgments + extra.judgments,
            n_gold + extra.gold_tasks,
        )
        files += extra.files
        kind_projects = extra.per_project
    return WorkloadSummary(
        out_dir=out,
        days=day_list,
        tasks=n_tasks,
        judgments=n_judgments,
        gold_tasks=n_gold,
        annotators=annotators.height,
        files=files,
        per_project=per_project,
        kind_projects=kind_projects,
    )


@dataclass(frozen=True)
class _Pool:
    ids: np.ndarray  # annotator ids as Python strings (object array)
    kind: np.ndarray  # 0 reliable, 1 uniform spammer, 2 constant spammer, 3 adversarial
    accuracy: np.ndarray
    constant_label: np.ndarray
    pace: np.ndarray  # median seconds per judgment
    activity: np.ndarray  # cumulative sampling weights
    frame: pl.DataFrame


def _make_pool(spec: ProjectSpec, *, seed: int, scale: float) -> _Pool:
    rng = np.random.default_rng(seed)
    size = max(spec.overlap + 2, round(spec.annotators * scale))
    kind = np.zeros(size, dtype=np.int8)
    n_spam = max(1, round(size * spec.spammer_share))
    spam = rng.choice(np.arange(1, size), size=n_spam, replace=False)
    kind[spam] = rng.integers(1, 3, size=n_spam)
    kind[0] = 3  # exactly one adversarial annotator per project
    accuracy = np.clip(rng.beta(*spec.skill, size=size), 0.55, 0.995)
    accuracy[kind == 3] = 0.0
    accuracy[(kind == 1) | (kind == 2)] = np.nan
    pace = spec.median_seconds * rng.lognormal(0.0, 0.35, size=size)
    pace[(kind == 1) | (kind == 2)] = spec.median_seconds * 0.15
    # Zipf-like activity: a few annotators do much of the work, as on real platforms.
    weight = 1.0 / np.arange(1, size + 1) ** 0.6
    rng.shuffle(weight)
    ids = np.array([f"{spec.name[:3]}-annotator-{i:05d}" for i in range(size)], dtype=object)
    kinds = np.array(["reliable", "uniform_spammer", "constant_spammer", "adversarial"])
    constant_label = rng.integers(0, len(spec.labels), size=size)
    frame = pl.DataFrame(
        {
            "annotator_id": ids.tolist(),
            "project": [spec.name] * size,
            # Not `kind`: that names a judgment's annotation kind everywhere else.
            "behaviour": kinds[kind].tolist(),
            "true_accuracy": accuracy,
            "median_seconds": pace,
        }
    )
    return _Pool(
        ids=ids,
        kind=kind,
        accuracy=accuracy,
        constant_label=constant_label,
        pace=pace,
        activity=np.cumsum(weight / weight.sum()),
        frame=frame,
    )


def _projects_frame(projects: Sequence[ProjectSpec]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "project": [p.name for p in projects],
            "labels": [list(p.labels) for p in projects],
            "overlap": [p.overlap for p in projects],
            "sla_days": [p.sla_days for p in projects],
            "gold_share": [p.gold_share for p in projects],
        }
    )


def _draw_chunk(
    spec: ProjectSpec, pool: _Pool, rng: np.random.Generator, *, day: date, first: int, count: int
) -> dict[str, pl.DataFrame]:
    k = len(spec.labels)
    truth = rng.choice(k, size=count, p=np.array(spec.priors))
    is_gold = rng.random(count) < spec.gold_share
    day_start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    # Daytime curve: arrivals peak mid-afternoon UTC.
    created_seconds = np.clip(rng.normal(14 * 3600, 4 * 3600, size=count), 0, 86_399 - 3_600)
    # Distinct annotators per task: a start drawn by activity, then a stride, modulo the pool.
    size = pool.ids.size
    start = np.searchsorted(pool.activity, rng.random(count))
    start = np.minimum(start, size - 1)
    stride = 1 + rng.integers(0, max(1, size // spec.overlap), size=count)
    stride = np.where(np.gcd(stride, size) == 1, stride, 1)
    votes = np.arange(spec.overlap)
    annotator = (start[:, None] + votes[None, :] * stride[:, None]) % size
    # ~3% of tasks are still in progress: only part of their overlap has been submitted.
    in_progress = rng.random(count) < 0.03
    keep = np.ones((count, spec.overlap), dtype=bool)
    keep[in_progress, 1:] = rng.random((int(in_progress.sum()), spec.overlap - 1)) < 0.4
    task_of = np.repeat(np.arange(count), spec.overlap)[keep.ravel()]
    annotator = annotator.ravel()[keep.ravel()]
    true_label = truth[task_of]
    kind = pool.kind[annotator]
    correct = rng.random(task_of.size) < np.nan_to_num(pool.accuracy[annotator], nan=0.0)
    # Errors lean towards the neighbouring class (confusable categories), else uniform.
    neighbour = (true_label + np.where(rng.random(task_of.size) < 0.5, 1, -1)) % k
    other = (true_label + 1 + rng.integers(0, max(1, k - 1), size=task_of.size)) % k
    wrong = np.where(rng.random(task_of.size) < 0.6, neighbour, other) if k > 2 else other
    label = np.where(correct, true_label, wrong)
    label = np.where(kind == 1, rng.integers(0, k, size=task_of.size), label)
    label = np.where(kind == 2, pool.constant_label[annotator], label)
    duration = pool.pace[annotator] * rng.lognormal(0.0, 0.5, size=task_of.size)
    submitted = created_seconds[task_of] + np.cumsum(np.ones_like(duration)) % 600 + duration * 4
    submitted = np.minimum(submitted, 86_399)

    index = first + np.arange(count)
    task_ids = pl.Series("n", index).cast(pl.String).str.zfill(8)
    prefix = f"{spec.name}-{day:%Y%m%d}-"
    task_id = (prefix + task_ids).alias("task_id")
    # ~1% of payloads repeat an earlier item exactly: real exports contain re-uploaded items.
    item = np.where(rng.random(count) < 0.01, rng.integers(0, max(1, first + count), count), index)
    payload = pl.Series("payload", item).cast(pl.String)
    payload = f"{spec.name} item {day:%Y%m%d}-" + payload
    day_ts = pl.lit(day_start).dt.cast_time_unit("us")
    tasks = pl.DataFrame(
        {
            "task_id": task_id,
            "payload": payload,
            "created_s": created_seconds,
            "is_gold": is_gold,
            "truth": pl.Series(list(spec.labels), dtype=pl.String).gather(truth),
        }
    ).with_columns(
        project=pl.lit(spec.name),
        created_at=day_ts + pl.duration(microseconds=(pl.col("created_s") * 1e6).cast(pl.Int64)),
        source=pl.lit(SOURCE),
        source_file=pl.lit(f"synthetic/{day.isoformat()}/{spec.name}"),
        source_line=pl.int_range(first + 1, first + count + 1, dtype=pl.Int64),
    )
    tasks = tasks.with_columns(payload_hash=_md5(tasks["payload"]))
    judgments = pl.DataFrame(
        {
            "task_id": task_id.gather(task_of),
            "annotator_id": pl.Series(pool.ids.tolist(), dtype=pl.String).gather(annotator),
            "label": pl.Series(list(spec.labels), dtype=pl.String).gather(label),
            "submitted_s": submitted,
            "duration_s": np.round(duration, 2),
        }
    ).with_columns(
        project=pl.lit(spec.name),
        submitted_at=day_ts
        + pl.duration(microseconds=(pl.col("submitted_s") * 1e6).cast(pl.Int64)),
        source=pl.lit(SOURCE),
        source_file=pl.lit(f"synthetic/{day.isoformat()}/{spec.name}"),
        source_line=pl.int_range(1, task_of.size + 1, dtype=pl.Int64),
    )
    judgments = judgments.with_columns(judgment_id=pl.col("task_id") + "/" + pl.col("annotator_id"))
    gold = tasks.filter("is_gold").select(
        "task_id",
        "project",
        pl.col("truth").alias("label"),
        pl.col("created_at").alias("updated_at"),
        "source",
        "source_file",
        "source_line",
    )
    return {
        "tasks": schema.conform(tasks, schema.RAW_TASKS, name="tasks").select(
            list(schema.RAW_TASKS)
        ),
        "judgments": schema.conform(judgments, schema.JUDGMENTS, name="judgments").select(
            list(schema.JUDGMENTS)
        ),
        "gold_labels": schema.conform(gold, schema.GOLD_LABELS, name="gold_labels"),
        "truth": tasks.select("task_id", "project", pl.col("truth").alias("label")),
    }


def _md5(payload: pl.Series) -> pl.Series:
    # A content hash that is stable across library versions (Polars' own hash is not).
    connection = duckdb.connect()
    connection.register("frame", pl.DataFrame({"payload": payload}))
    hashed = connection.sql("select md5(payload) as payload_hash from frame").pl()
    connection.close()
    return hashed["payload_hash"]
