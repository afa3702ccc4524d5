"""Seeded synthetic projects of every non-categorical kind, with known truth.

One project per kind, each with its own annotator pool and failure modes, so every aggregation
and quality measure has something real to find:

- `tags` (multilabel): tag a ticket with six topics; misses present tags, adds absent ones.
- `ratings` (numeric): 1-5 Likert; each rater has a bias (one is harsh) plus noise.
- `rankings` (ranking): order four responses best first; Plackett-Luce noise around a hidden
  quality per item.
- `preferences` (pairwise): the better of two responses; Bradley-Terry choices around the
  same kind of hidden quality.
- `entities` (spans): PER/ORG/LOC names in a sentence; misses, cut boundaries, swapped labels.
- `detection` (boxes): cars, people, dogs in a 640x480 scene; careless annotators miss small
  objects, a few draw loose boxes (a margin of 20-35 % around the object).
- `transcripts` (text): transcribe a sentence; typos (substitutions, drops, doublings).

Every pool has one spammer (random answers). Each day's tasks are written as the same
day-partitioned parts the categorical generator writes (`tasks/`, `judgments/`,
`gold_labels/`, with `kind` and the kind's typed value columns), the ground truth of every task
to `kind_truth/day=D/part-NNNNN.parquet` (`task_id`, `project`, `kind` and every value column)
and the hidden item qualities of the ranking and preference projects to `kind_items.parquet`
(`project`, `item`, `quality`). About `gold_share` of the tasks are gold: their truth is
published as gold labels.

Task payloads carry what an exporter needs: the sentence for `entities`, `transcripts` and
`tags`; for `preferences` a JSON object with `prompt`, `left_text` and `right_text`; for
`detection` a JSON object with the image's `file_name`, `width` and `height`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import polars as pl

from annotation_pipelines import schema
from annotation_pipelines.kinds import BOX, SPAN, VALUE_DTYPES
from annotation_pipelines.storage import atomic_write_parquet

SOURCE = "synthetic"
TAGS = ("billing", "bug", "feature", "praise", "security", "ux")
ENTITIES: dict[str, tuple[str, ...]] = {
    "PER": ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald"),
    "ORG": ("Acme", "Globex", "Initech", "Umbrella", "Hooli"),
    "LOC": ("Paris", "Lagos", "Lima", "Osaka", "Oslo", "Quito"),
}
WORDS = (
    "the", "report", "said", "that", "a", "new", "office", "opened", "near", "team", "met",
    "with", "people", "from", "during", "week", "about", "plans", "for", "growth", "and",
    "visited", "customers", "on", "monday", "after", "long", "talks", "in", "city",
)  # fmt: skip
OBJECTS = ("car", "dog", "person")
IMAGE_WIDTH, IMAGE_HEIGHT = 640.0, 480.0
# A box under this area (pixels²) is "small": careless annotators tend to miss it.
SMALL_AREA = 40.0 * 40.0


@dataclass(frozen=True)
class KindProjectSpec:
    """One project of a non-categorical kind: its size per day and its annotators."""

    name: str
    kind: str
    overlap: int = 3
    annotators: int = 15
    gold_share: float = 0.05
    median_seconds: float = 30.0


KIND_PROJECTS: tuple[KindProjectSpec, ...] = (
    KindProjectSpec("tags", "multilabel", median_seconds=15.0),
    KindProjectSpec("ratings", "numeric", overlap=5, median_seconds=10.0),
    KindProjectSpec("rankings", "ranking", median_seconds=45.0),
    KindProjectSpec("preferences", "pairwise", overlap=3, median_seconds=25.0),
    KindProjectSpec("entities", "spans", median_seconds=40.0),
    KindProjectSpec("detection", "boxes", overlap=4, median_seconds=60.0),
    KindProjectSpec("transcripts", "text", median_seconds=50.0),
)
KIND_OF_PROJECT = {spec.name: spec.kind for spec in KIND_PROJECTS}
# Items of the ranking and preference projects: a hidden quality each, shared across days.
ITEMS_PER_PROJECT = 48
RANKED_ITEMS = 4

TRUTH_COLUMNS: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "project": pl.String(),
    "kind": pl.String(),
    **{column: dtype for column, dtype in VALUE_DTYPES.items() if column != "label"},
}


@dataclass(frozen=True)
class KindPool:
    """The annotators of one kind project: `skill` in [0, 1] (1 = careful), their behaviour."""

    ids: list[str]
    skill: np.ndarray
    behaviour: list[str]
    bias: np.ndarray  # numeric raters' offset in scale points
    noise: np.ndarray  # numeric raters' spread; ranking/pairwise temperature
    looseness: np.ndarray  # box drawers' relative margin around the object
    pace: np.ndarray

    def frame(self, project: str) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "annotator_id": self.ids,
                "project": [project] * len(self.ids),
                "behaviour": self.behaviour,
                "true_accuracy": self.skill,
                "median_seconds": self.pace,
            }
        )


@dataclass(frozen=True)
class KindDay:
    """One kind project's tables for one day (chunk), before provenance is added."""

    tasks: pl.DataFrame  # task_id, payload, is_gold
    judgments: pl.DataFrame  # task_id, annotator_id, kind value column(s) (+ box context)
    truth: pl.DataFrame  # task_id, kind value column(s)


def make_pool(spec: KindProjectSpec, *, seed: int) -> KindPool:
    """The project's annotators: mostly careful, a few careless, one spammer; for boxes a few
    draw loose boxes, for ratings each has a bias."""
    rng = np.random.default_rng(seed)
    size = max(spec.overlap + 2, spec.annotators)
    skill = np.clip(rng.beta(8.0, 2.0, size=size), 0.5, 0.98)
    behaviour = ["reliable"] * size
    careless = rng.choice(np.arange(1, size), size=max(1, size // 5), replace=False)
    skill[careless] = rng.uniform(0.3, 0.5, size=careless.size)
    for index in careless:
        behaviour[int(index)] = "careless"
    skill[0] = 0.0
    behaviour[0] = "spammer"
    bias = rng.normal(0.0, 0.5, size=size)
    noise = rng.uniform(0.3, 0.9, size=size)
    looseness = np.zeros(size)
    if spec.kind == "boxes":
        loose = [i for i in range(1, size) if behaviour[i] == "reliable"][:3]
        looseness[loose] = rng.uniform(0.2, 0.35, size=len(loose))
        for index in loose:
            behaviour[index] = "loose_boxes"
    if spec.kind == "numeric":
        harsh = int(np.argmax(skill[1:])) + 1
        bias[harsh] = -1.2
        behaviour[harsh] = "harsh"
    pace = spec.median_seconds * rng.lognormal(0.0, 0.3, size=size)
    prefix = spec.name[:4]
    return KindPool(
        ids=[f"{prefix}-annotator-{i:04d}" for i in range(size)],
        skill=skill,
        behaviour=behaviour,
        bias=bias,
        noise=noise,
        looseness=looseness,
        pace=pace,
    )


def item_qualities(spec: KindProjectSpec, *, seed: int) -> pl.DataFrame:
    """Hidden quality of each item of a ranking or preference project (standard normal)."""
    rng = np.random.default_rng([seed, 7_001, len(spec.name)])
    return pl.DataFrame(
        {
            "project": [spec.name] * ITEMS_PER_PROJECT,
            "item": [f"{spec.name[:4]}-item-{i:03d}" for i in range(ITEMS_PER_PROJECT)],
            "quality": rng.normal(0.0, 1.0, size=ITEMS_PER_PROJECT),
        }
    )


def _assignments(
    pool: KindPool, rng: np.random.Generator, count: int, overlap: int
) -> tuple[np.ndarray, np.ndarray]:
    """(task index, annotator index) per judgment: `overlap` distinct annotators per task."""
    size = len(pool.ids)
    keys = rng.random((count, size))
    annotators = np.argsort(keys, axis=1)[:, :overlap]
    task = np.repeat(np.arange(count), overlap)
    return task, annotators.ravel()


def _multilabel(
    spec: KindProjectSpec, pool: KindPool, rng: np.random.Generator, count: int, day: date
) -> KindDay:
    k = len(TAGS)
    present = rng.random((count, k)) < 0.3
    present[~present.any(axis=1), rng.integers(0, k)] = True
    task, annotator = _assignments(pool, rng, count, spec.overlap)
    skill = pool.skill[annotator][:, None]
    truth = present[task]
    keep = rng.random(truth.shape) >= (1 - skill) * 0.6
    add = rng.random(truth.shape) < (1 - skill) * 0.15
    chosen = (truth & keep) | (~truth & add)
    spam = np.array(pool.behaviour)[annotator] == "spammer"
    chosen[spam] = rng.random((int(spam.sum()), k)) < 0.3
    names = np.array(TAGS, dtype=object)
    texts = [f"ticket {day:%Y%m%d}-{i}: " + ", ".join(names[row]) for i, row in enumerate(present)]
    return KindDay(
        tasks=pl.DataFrame({"payload": texts}),
        judgments=pl.DataFrame(
            {"task": task, "annotator": annotator, "labels": [list(names[r]) for r in chosen]},
            schema_overrides={"labels": pl.List(pl.String)},
        ),
        truth=pl.DataFrame(
            {"labels": [list(names[r]) for r in present]},
            schema={"labels": pl.List(pl.String)},
        ),
    )


def _numeric(
    spec: KindProjectSpec, pool: KindPool, rng: np.random.Generator, count: int, day: date
) -> KindDay:
    truth = rng.choice(np.arange(1, 6), size=count, p=[0.1, 0.2, 0.3, 0.25, 0.15]).astype(float)
    task, annotator = _assignments(pool, rng, count, spec.overlap)
    noise = pool.noise[annotator] * (1.5 - pool.skill[annotator])
    raw = truth[task] + pool.bias[annotator] + rng.normal(0.0, 1.0, task.size) * noise
    value = np.clip(np.round(raw), 1, 5)
    spam = np.array(pool.behaviour)[annotator] == "spammer"
    value[spam] = rng.integers(1, 6, size=int(spam.sum()))
    return KindDay(
        tasks=pl.DataFrame({"payload": [f"response {day:%Y%m%d}-{i}" for i in range(count)]}),
        judgments=pl.DataFrame({"task": task, "annotator": annotator, "value": value}),
        truth=pl.DataFrame({"value": truth}),
    )


def _ranking(
    spec: KindProjectSpec,
    pool: KindPool,
    rng: np.random.Generator,
    count: int,
    day: date,
    items: pl.DataFrame,
) -> KindDay:
    names = np.array(items["item"].to_list(), dtype=object)
    quality = items["quality"].to_numpy()
    shown = np.argsort(rng.random((count, names.size)), axis=1)[:, :RANKED_ITEMS]
    truth_order = np.take_along_axis(shown, np.argsort(-quality[shown], axis=1), axis=1)
    task, annotator = _assignments(pool, rng, count, spec.overlap)
    temperature = 0.15 + 1.5 * (1 - pool.skill[annotator])
    # Plackett-Luce draws: sort by quality plus Gumbel noise scaled by the annotator's temperature.
    gumbel = -np.log(-np.log(rng.random((task.size, RANKED_ITEMS))))
    scores = quality[shown[task]] + temperature[:, None] * gumbel
    spam = np.array(pool.behaviour)[annotator] == "spammer"
    scores[spam] = rng.random((int(spam.sum()), RANKED_ITEMS))
    judged = np.take_along_axis(shown[task], np.argsort(-scores, axis=1), axis=1)
    return KindDay(
        tasks=pl.DataFrame({"payload": [f"prompt {day:%Y%m%d}-{i}" for i in range(count)]}),
        judgments=pl.DataFrame(
            {"task": task, "annotator": annotator, "ranking": [list(r) for r in names[judged]]},
            schema_overrides={"ranking": pl.List(pl.String)},
        ),
        truth=pl.DataFrame(
            {"ranking": [list(r) for r in names[truth_order]]},
            schema={"ranking": pl.List(pl.String)},
        ),
    )


def _pairwise(
    spec: KindProjectSpec,
    pool: KindPool,
    rng: np.random.Generator,
    count: int,
    day: date,
    items: pl.DataFrame,
) -> KindDay:
    names = np.array(items["item"].to_list(), dtype=object)
    quality = items["quality"].to_numpy()
    pair = np.argsort(rng.random((count, names.size)), axis=1)[:, :2]
    left, right = pair[:, 0], pair[:, 1]
    task, annotator = _assignments(pool, rng, count, spec.overlap)
    gap = (quality[left] - quality[right])[task]
    sharpness = 0.5 + 4.0 * pool.skill[annotator]
    prefers_left = rng.random(task.size) < 1.0 / (1.0 + np.exp(-sharpness * gap))
    spam = np.array(pool.behaviour)[annotator] == "spammer"
    prefers_left[spam] = rng.random(int(spam.sum())) < 0.5
    tie = (np.abs(gap) < 0.05) & (rng.random(task.size) < 0.5)
    winner = np.where(tie, "tie", np.where(prefers_left, "left", "right"))
    prompts = [
        json.dumps(
            {
                "prompt": f"prompt {day:%Y%m%d}-{i}",
                "left_text": f"response {names[left[i]]}",
                "right_text": f"response {names[right[i]]}",
            }
        )
        for i in range(count)
    ]
    truth_winner = np.where(quality[left] >= quality[right], "left", "right")
    return KindDay(
        tasks=pl.DataFrame({"payload": prompts}),
        judgments=pl.DataFrame(
            {
                "task": task,
                "annotator": annotator,
                "left": names[left][task].tolist(),
                "right": names[right][task].tolist(),
                "winner": winner.tolist(),
            },
            schema_overrides={"left": pl.String, "right": pl.String, "winner": pl.String},
        ),
        truth=pl.DataFrame(
            {
                "left": names[left].tolist(),
                "right": names[right].tolist(),
                "winner": truth_winner.tolist(),
            },
            schema={"left": pl.String, "right": pl.String, "winner": pl.String},
        ),
    )


Span = dict[str, object]


def _sentence(rng: np.random.Generator) -> tuple[str, list[Span]]:
    """A sentence of filler words with one to three named entities, and their spans."""
    parts: list[str] = []
    spans: list[Span] = []
    n_entities = int(rng.integers(1, 4))
    slots = set(rng.choice(np.arange(1, 12), size=n_entities, replace=False).tolist())
    position = 0
    for slot in range(12):
        if slot in slots:
            label = ("PER", "ORG", "LOC")[int(rng.integers(0, 3))]
            vocabulary = ENTITIES[label]
            word = vocabulary[int(rng.integers(0, len(vocabulary)))]
            if rng.random() < 0.3:  # two-word names: boundaries get hard
                word = f"{word} {ENTITIES[label][int(rng.integers(0, len(vocabulary)))]}"
            spans.append({"start": position, "end": position + len(word), "label": label})
        else:
            word = WORDS[int(rng.integers(0, len(WORDS)))]
        parts.append(word)
        position += len(word) + 1
    return " ".join(parts), spans


def _noisy_spans(
    spans: list[Span], text: str, skill: float, spammer: bool, rng: np.random.Generator
) -> list[Span]:
    if spammer:
        starts = [i for i, c in enumerate(text) if c != " " and (i == 0 or text[i - 1] == " ")]
        chosen = rng.choice(starts, size=min(2, len(starts)), replace=False)
        out: list[Span] = []
        for start in sorted(int(s) for s in chosen):
            end = text.find(" ", start)
            end = len(text) if end < 0 else end
            out.append({"start": start, "end": end, "label": ("PER", "ORG", "LOC")[start % 3]})
        return out
    careless = 1.0 - skill
    out = []
    for span in spans:
        if rng.random() < careless * 0.5:
            continue
        start, end, label = int(span["start"]), int(span["end"]), str(span["label"])  # type: ignore[call-overload]
        if rng.random() < careless * 0.4:
            # Boundary error: only the first word of a two-word name, or one character short.
            space = text.find(" ", start, end)
            end = space if space > 0 else max(start + 1, end - 1)
        if rng.random() < careless * 0.3:
            label = ("PER", "ORG", "LOC")[int(rng.integers(0, 3))]
        out.append({"start": start, "end": end, "label": label})
    if rng.random() < careless * 0.2:
        starts = [i for i, c in enumerate(text) if c != " " and (i == 0 or text[i - 1] == " ")]
        start = int(starts[int(rng.integers(0, len(starts)))])
        covered = any(int(s["start"]) <= start < int(s["end"]) for s in out)  # type: ignore[call-overload]
        if not covered:
            end = text.find(" ", start)
            out.append({"start": start, "end": len(text) if end < 0 else end, "label": "ORG"})
    return sorted(out, key=lambda s: (int(s["start"]), int(s["end"])))  # type: ignore[call-overload]


def _spans(
    spec: KindProjectSpec, pool: KindPool, rng: np.random.Generator, count: int, day: date
) -> KindDay:
    sentences = [_sentence(rng) for _ in range(count)]
    task, annotator = _assignments(pool, rng, count, spec.overlap)
    judged = [
        _noisy_spans(
            sentences[t][1],
            sentences[t][0],
            float(pool.skill[a]),
            pool.behaviour[a] == "spammer",
            rng,
        )
        for t, a in zip(task.tolist(), annotator.tolist(), strict=True)
    ]
    return KindDay(
        tasks=pl.DataFrame({"payload": [text for text, _ in sentences]}),
        judgments=pl.DataFrame(
            {"task": task, "annotator": annotator, "spans": judged},
            schema_overrides={"spans": pl.List(SPAN)},
        ),
        truth=pl.DataFrame(
            {"spans": [spans for _, spans in sentences]}, schema={"spans": pl.List(SPAN)}
        ),
    )


Box = dict[str, object]


def _scene(rng: np.random.Generator) -> list[Box]:
    """One to five objects; about a third are small (hard to see)."""
    boxes: list[Box] = []
    for _ in range(int(rng.integers(1, 6))):
        small = rng.random() < 0.35
        width = rng.uniform(15, 38) if small else rng.uniform(60, 220)
        height = width * rng.uniform(0.6, 1.4)
        x = rng.uniform(0, IMAGE_WIDTH - width)
        y = rng.uniform(0, IMAGE_HEIGHT - height)
        label = OBJECTS[int(rng.integers(0, len(OBJECTS)))]
        boxes.append(
            {"label": label, "x_min": x, "y_min": y, "x_max": x + width, "y_max": y + height}
        )
    return boxes


def _coordinates(box: Box) -> tuple[float, float, float, float]:
    return (
        float(box["x_min"]),  # type: ignore[arg-type]
        float(box["y_min"]),  # type: ignore[arg-type]
        float(box["x_max"]),  # type: ignore[arg-type]
        float(box["y_max"]),  # type: ignore[arg-type]
    )


def _noisy_boxes(
    truth: list[Box], skill: float, looseness: float, spammer: bool, rng: np.random.Generator
) -> list[Box]:
    if spammer:
        return _scene(rng)
    careless = 1.0 - skill
    out: list[Box] = []
    for box in truth:
        x_min, y_min, x_max, y_max = _coordinates(box)
        width, height = x_max - x_min, y_max - y_min
        small = width * height < SMALL_AREA
        if rng.random() < careless * (0.9 if small else 0.15):
            continue
        jitter = rng.normal(0.0, 0.03 + 0.08 * careless, size=4) * np.array(
            [width, height, width, height]
        )
        margin = looseness * np.array([width, height, width, height]) / 2
        x_min, y_min = x_min - margin[0] + jitter[0], y_min - margin[1] + jitter[1]
        x_max, y_max = x_max + margin[2] + jitter[2], y_max + margin[3] + jitter[3]
        label = str(box["label"])
        if rng.random() < careless * 0.1:
            label = OBJECTS[int(rng.integers(0, len(OBJECTS)))]
        out.append(
            {
                "label": label,
                "x_min": float(np.clip(x_min, 0, IMAGE_WIDTH)),
                "y_min": float(np.clip(y_min, 0, IMAGE_HEIGHT)),
                "x_max": float(np.clip(max(x_max, x_min + 1), 0, IMAGE_WIDTH)),
                "y_max": float(np.clip(max(y_max, y_min + 1), 0, IMAGE_HEIGHT)),
            }
        )
    return out


def _boxes(
    spec: KindProjectSpec, pool: KindPool, rng: np.random.Generator, count: int, day: date
) -> KindDay:
    scenes = [_scene(rng) for _ in range(count)]
    task, annotator = _assignments(pool, rng, count, spec.overlap)
    judged = [
        _noisy_boxes(
            scenes[t],
            float(pool.skill[a]),
            float(pool.looseness[a]),
            pool.behaviour[a] == "spammer",
            rng,
        )
        for t, a in zip(task.tolist(), annotator.tolist(), strict=True)
    ]
    payload = [
        json.dumps(
            {
                "file_name": f"scene-{day:%Y%m%d}-{i:05d}.jpg",
                "width": IMAGE_WIDTH,
                "height": IMAGE_HEIGHT,
            }
        )
        for i in range(count)
    ]
    return KindDay(
        tasks=pl.DataFrame({"payload": payload}),
        judgments=pl.DataFrame(
            {"task": task, "annotator": annotator, "boxes": judged},
            schema_overrides={"boxes": pl.List(BOX)},
        ).with_columns(
            coordinates=pl.lit("pixel"),
            image_width=pl.lit(IMAGE_WIDTH),
            image_height=pl.lit(IMAGE_HEIGHT),
        ),
        truth=pl.DataFrame({"boxes": scenes}, schema={"boxes": pl.List(BOX)}),
    )


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _typos(text: str, rate: float, rng: np.random.Generator) -> str:
    out: list[str] = []
    for char in text:
        draw = rng.random()
        if draw < rate * 0.4:
            out.append(_LETTERS[int(rng.integers(0, 26))])
        elif draw < rate * 0.7:
            continue
        elif draw < rate:
            out.append(char + char)
        else:
            out.append(char)
    return "".join(out)


def _text(
    spec: KindProjectSpec, pool: KindPool, rng: np.random.Generator, count: int, day: date
) -> KindDay:
    sentences = [
        " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), size=int(rng.integers(5, 10))))
        for _ in range(count)
    ]
    task, annotator = _assignments(pool, rng, count, spec.overlap)
    judged = []
    for t, a in zip(task.tolist(), annotator.tolist(), strict=True):
        if pool.behaviour[a] == "spammer":
            judged.append(sentences[int(rng.integers(0, count))])
        else:
            # Careful typists are often perfect; careless ones rarely.
            rate = 0.0 if rng.random() < pool.skill[a] * 0.6 else 0.12 * (1.1 - pool.skill[a])
            judged.append(_typos(sentences[t], rate, rng))
    return KindDay(
        tasks=pl.DataFrame({"payload": [f"audio {day:%Y%m%d}-{i}" for i in range(count)]}),
        judgments=pl.DataFrame({"task": task, "annotator": annotator, "text": judged}),
        truth=pl.DataFrame({"text": sentences}),
    )


Drawer = Callable[[KindProjectSpec, KindPool, np.random.Generator, int, date], KindDay]
_DRAWERS: dict[str, Drawer] = {
    "multilabel": _multilabel,
    "numeric": _numeric,
    "spans": _spans,
    "boxes": _boxes,
    "text": _text,
}


def draw_kind_day(
    spec: KindProjectSpec,
    pool: KindPool,
    rng: np.random.Generator,
    *,
    day: date,
    count: int,
    items: pl.DataFrame | None = None,
) -> dict[str, pl.DataFrame]:
    """The canonical `tasks`, `judgments`, `gold_labels` and `truth` of `count` tasks."""
    if spec.kind in ("ranking", "pairwise"):
        if items is None:
            raise ValueError(f"project {spec.name}: the {spec.kind} kind needs items")
        drawn = (_ranking if spec.kind == "ranking" else _pairwise)(
            spec, pool, rng, count, day, items
        )
    elif spec.kind in _DRAWERS:
        drawn = _DRAWERS[spec.kind](spec, pool, rng, count, day)
    else:
        raise ValueError(f"project {spec.name}: no synthetic generator for kind {spec.kind!r}")
    return _canonical(spec, pool, rng, drawn, day=day, count=count)


def draw_project_day(
    kind: str, *, day: date, count: int, seed: int
) -> tuple[dict[str, pl.DataFrame], KindPool]:
    """`draw_kind_day` for the kind's project in `KIND_PROJECTS`, its pool, items and draws all
    from `seed` (so a test and a benchmark of one seed see one day), and the pool."""
    spec = next(s for s in KIND_PROJECTS if s.kind == kind)
    pool = make_pool(spec, seed=seed)
    items = item_qualities(spec, seed=seed) if kind in ("ranking", "pairwise") else None
    rng = np.random.default_rng(seed)
    return draw_kind_day(spec, pool, rng, day=day, count=count, items=items), pool


def _canonical(
    spec: KindProjectSpec,
    pool: KindPool,
    rng: np.random.Generator,
    drawn: KindDay,
    *,
    day: date,
    count: int,
) -> dict[str, pl.DataFrame]:
    day_start = pl.lit(datetime(day.year, day.month, day.day, tzinfo=UTC)).dt.cast_time_unit("us")
    created = np.clip(rng.normal(14 * 3600, 4 * 3600, size=count), 0, 86_399 - 3_600)
    task_ids = pl.Series("task_id", [f"{spec.name}-{day:%Y%m%d}-{i:06d}" for i in range(count)])
    provenance = {
        "project": pl.lit(spec.name),
        "kind": pl.lit(spec.kind),
        "label": pl.lit(None, pl.String),
        "source": pl.lit(SOURCE),
        "source_file": pl.lit(f"synthetic/{day.isoformat()}/{spec.name}"),
    }
    is_gold = rng.random(count) < spec.gold_share
    # A project with gold mixes some into every day's batch, as the quality gates require of
    # it: a small day can otherwise draw none.
    if spec.gold_share > 0 and count and not is_gold.any():
        is_gold[int(rng.integers(count))] = True
    tasks = drawn.tasks.with_columns(
        task_id=task_ids,
        is_gold=pl.Series(is_gold),
        created_at=day_start
        + pl.duration(microseconds=pl.lit(pl.Series((created * 1e6).astype(int)))),
        source_line=pl.int_range(1, count + 1, dtype=pl.Int64),
        **provenance,
    )
    # A content hash that is stable across library versions (Polars' own hash is not).
    tasks = tasks.with_columns(
        payload_hash=pl.Series([hashlib.md5(p.encode()).hexdigest() for p in tasks["payload"]])
    )
    task_index = drawn.judgments["task"].to_numpy()
    annotator_index = drawn.judgments["annotator"].to_numpy()
    duration = pool.pace[annotator_index] * rng.lognormal(0.0, 0.5, size=task_index.size)
    submitted = np.minimum(created[task_index] + 60 + duration * 4, 86_399)
    ids = pl.Series("annotator_id", pool.ids, dtype=pl.String)
    judgments = drawn.judgments.with_columns(
        task_id=task_ids.gather(task_index),
        annotator_id=ids.gather(annotator_index),
        duration_s=pl.Series(np.round(duration, 2)),
        submitted_at=day_start
        + pl.duration(microseconds=pl.lit(pl.Series((submitted * 1e6).astype(int)))),
        source_line=pl.int_range(1, task_index.size + 1, dtype=pl.Int64),
        **provenance,
    ).with_columns(judgment_id=pl.col("task_id") + "/" + pl.col("annotator_id"))
    truth = drawn.truth.with_columns(
        task_id=task_ids, project=pl.lit(spec.name), kind=pl.lit(spec.kind)
    )
    gold = (
        truth.filter(pl.Series(is_gold))
        .join(tasks.select("task_id", "created_at", "source_line"), on="task_id")
        .with_columns(
            updated_at=pl.col("created_at"),
            label=pl.lit(None, pl.String),
            source=pl.lit(SOURCE),
            source_file=pl.lit(f"synthetic/{day.isoformat()}/{spec.name}"),
        )
    )
    if spec.kind == "boxes":
        gold = gold.with_columns(
            coordinates=pl.lit("pixel"),
            image_width=pl.lit(IMAGE_WIDTH),
            image_height=pl.lit(IMAGE_HEIGHT),
        )
    return {
        "tasks": schema.conform(tasks, schema.RAW_TASKS, name="tasks").select(
            list(schema.RAW_TASKS)
        ),
        "judgments": schema.conform(judgments, schema.JUDGMENTS, name="judgments").select(
            list(schema.JUDGMENTS)
        ),
        "gold_labels": schema.conform(
            gold,
            schema.GOLD_LABELS,
            name="gold_labels",
        ).select(list(schema.GOLD_LABELS)),
        "kind_truth": schema.conform(truth, TRUTH_COLUMNS, name="kind_truth").select(
            list(TRUTH_COLUMNS)
        ),
    }


@dataclass(frozen=True)
class KindWorkloadSummary:
    tasks: int
    judgments: int
    gold_tasks: int
    files: int
    per_project: dict[str, int]
    annotators: pl.DataFrame
    items: pl.DataFrame


def generate_kind_days(
    out_dir: Path,
    *,
    days: Sequence[date],
    weights: np.ndarray,
    judgments_per_kind: int,
    seed: int,
    projects: Sequence[KindProjectSpec] = KIND_PROJECTS,
    first_part: int = 50_000,
) -> KindWorkloadSummary:
    """Write every kind project's days under `out_dir` (parts numbered from `first_part`, so
    they never collide with the categorical parts of the same day)."""
    pools = {
        spec.name: make_pool(spec, seed=seed * 1_000 + 500 + index)
        for index, spec in enumerate(projects)
    }
    items = pl.concat(
        [item_qualities(s, seed=seed) for s in projects if s.kind in ("ranking", "pairwise")]
        or [pl.DataFrame(schema={"project": pl.String, "item": pl.String, "quality": pl.Float64})]
    )
    n_tasks = n_judgments = n_gold = files = 0
    per_project = {spec.name: 0 for spec in projects}
    for day_index, day in enumerate(days):
        for project_index, spec in enumerate(projects):
            count = max(2, round(judgments_per_kind * float(weights[day_index]) / spec.overlap))
            rng = np.random.default_rng([seed, day.toordinal(), 900 + project_index])
            tables = draw_kind_day(
                spec,
                pools[spec.name],
                rng,
                day=day,
                count=count,
                items=items.filter(pl.col("project") == spec.name),
            )
            part = first_part + project_index
            for name, frame in tables.items():
                target = out_dir / name / f"day={day.isoformat()}" / f"part-{part:05d}.parquet"
                atomic_write_parquet(frame, target)
                files += 1
            n_tasks += count
            n_judgments += tables["judgments"].height
            n_gold += tables["gold_labels"].height
            per_project[spec.name] += tables["judgments"].height
    annotators = pl.concat([pools[s.name].frame(s.name) for s in projects])
    atomic_write_parquet(items, out_dir / "kind_items.parquet")
    return KindWorkloadSummary(
        tasks=n_tasks,
        judgments=n_judgments,
        gold_tasks=n_gold,
        files=files,
        per_project=per_project,
        annotators=annotators,
        items=items,
    )
