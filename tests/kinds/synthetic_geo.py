"""Synthetic scenes and texts with known truth, for the spans and boxes tests and benchmark."""

from __future__ import annotations

import numpy as np
import polars as pl

BOX_LABELS = ("car", "person", "sign")
SPAN_LABELS = ("PER", "ORG", "LOC")


def scenes(
    n_tasks: int, *, seed: int = 0, size: float = 640.0, n_spammers: int = 1
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(truth, judgments): 1–4 objects per scene, annotators with known habits.

    good_1, good_2: small jitter. misser: skips objects smaller than 40 px on a side.
    loose: every side pushed out by 15% of the object's size. spammer(s): random boxes.
    """
    rng = np.random.default_rng(seed)
    truth_rows = []
    names = ["good_1", "good_2", "misser", "loose"] + [f"spammer_{i}" for i in range(n_spammers)]
    judgments: dict[str, list] = {name: [] for name in names}
    for _task in range(n_tasks):
        objects = []
        for _ in range(rng.integers(1, 5)):
            w, h = rng.uniform(15, 200, size=2)
            x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
            objects.append((str(rng.choice(BOX_LABELS)), x, y, x + w, y + h))
        truth_rows.append(objects)
        for name in judgments:
            drawn = []
            if name.startswith("spammer"):
                for _ in range(rng.integers(0, 4)):
                    w, h = rng.uniform(15, 200, size=2)
                    x, y = rng.uniform(0, size - w), rng.uniform(0, size - h)
                    drawn.append((str(rng.choice(BOX_LABELS)), x, y, x + w, y + h))
            for label, x0, y0, x1, y1 in [] if name.startswith("spammer") else objects:
                w, h = x1 - x0, y1 - y0
                if name == "misser" and min(w, h) < 40:
                    continue
                if name == "loose":
                    pad_x, pad_y = 0.15 * w, 0.15 * h
                    x0, y0, x1, y1 = x0 - pad_x, y0 - pad_y, x1 + pad_x, y1 + pad_y
                jitter = rng.normal(0, 0.02 * min(w, h), size=4)
                drawn.append(
                    (label, x0 + jitter[0], y0 + jitter[1], x1 + jitter[2], y1 + jitter[3])
                )
            judgments[name].append(drawn)
    keys = ("label", "x_min", "y_min", "x_max", "y_max")
    truth = pl.DataFrame(
        {
            "task_id": [f"t{task}" for task in range(n_tasks)],
            "boxes": [[dict(zip(keys, box, strict=True)) for box in boxes] for boxes in truth_rows],
        }
    )
    rows = [
        {
            "task_id": f"t{task}",
            "annotator_id": name,
            "boxes": [dict(zip(keys, box, strict=True)) for box in drawn[task]],
        }
        for name, drawn in judgments.items()
        for task in range(n_tasks)
    ]
    box_type = pl.List(pl.Struct({"label": pl.String, **dict.fromkeys(keys[1:], pl.Float64)}))
    schema = {"task_id": pl.String, "annotator_id": pl.String, "boxes": box_type}
    return truth.cast({"boxes": box_type}), pl.DataFrame(rows, schema=schema)


def texts(
    n_tasks: int, *, seed: int = 0, n_words: int = 30
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(texts, truth, judgments): generated sentences with 1–3 entities, five annotators.

    good_1, good_2: exact. misser: skips 60% of entities. confuser: wrong label half the time.
    spammer: one or two random spans of random labels.
    """
    rng = np.random.default_rng(seed)
    names = ("good_1", "good_2", "misser", "confuser", "spammer")
    text_rows, truth_rows = [], []
    judged: dict[str, list] = {name: [] for name in names}
    for _task in range(n_tasks):
        words = [
            "".join(rng.choice(list("abcdefgh"), size=rng.integers(2, 8))) for _ in range(n_words)
        ]
        starts, position = [], 0
        for word in words:
            starts.append(position)
            position += len(word) + 1
        text_rows.append(" ".join(words))
        entities = []
        cursor = int(rng.integers(0, 4))
        while cursor < n_words - 3 and len(entities) < 3:
            width = int(rng.integers(1, 4))
            first, last = cursor, cursor + width - 1
            entities.append(
                (starts[first], starts[last] + len(words[last]), str(rng.choice(SPAN_LABELS)))
            )
            cursor = last + int(rng.integers(2, 9))
        truth_rows.append(entities)
        for name in names:
            spans = []
            if name == "spammer":
                for _ in range(rng.integers(1, 3)):
                    first = int(rng.integers(0, n_words))
                    spans.append(
                        (
                            starts[first],
                            starts[first] + len(words[first]),
                            str(rng.choice(SPAN_LABELS)),
                        )
                    )
            else:
                for start, end, label in entities:
                    if name == "misser" and rng.random() < 0.6:
                        continue
                    if name == "confuser" and rng.random() < 0.5:
                        label = str(rng.choice([other for other in SPAN_LABELS if other != label]))
                    spans.append((start, end, label))
            judged[name].append(spans)
    keys = ("start", "end", "label")
    span_type = pl.List(pl.Struct({"start": pl.Int64, "end": pl.Int64, "label": pl.String}))
    ids = [f"d{task}" for task in range(n_tasks)]
    truth = pl.DataFrame(
        {
            "task_id": ids,
            "spans": [[dict(zip(keys, s, strict=True)) for s in row] for row in truth_rows],
        },
        schema={"task_id": pl.String, "spans": span_type},
    )
    judgments = pl.DataFrame(
        [
            {
                "task_id": ids[task],
                "annotator_id": name,
                "spans": [dict(zip(keys, s, strict=True)) for s in judged[name][task]],
            }
            for name in names
            for task in range(n_tasks)
        ],
        schema={"task_id": pl.String, "annotator_id": pl.String, "spans": span_type},
    )
    return pl.DataFrame({"task_id": ids, "text": text_rows}), truth, judgments
