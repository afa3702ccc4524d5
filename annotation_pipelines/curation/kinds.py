"""Curated snapshots of the non-categorical kinds, in the formats trainers read.

A kind project's snapshot is built from its aggregated labels over every judged day:
1. hold back every task judged on a day without a passing quality verdict (`gates_passed`
   false, or no quality report for the project), with its labels of every other day, as the
   categorical snapshots do;
2. take each task's newest aggregate, and keep the task when that aggregate has at least
   `min_confidence` (an older day's answer never stands in for it), gold tasks only on request;
3. assign a stable hash split (the categorical snapshots' splitter) and version by content.

Every snapshot has `data.parquet` and `data.jsonl` (one row per task: the task's `payload`,
which is what was labelled and so the model's input, the kind's value column(s), `confidence`,
`split`), the same rows per split (`<split>.parquet`, `<split>.jsonl`), and a card saying the
kind, the method and the agreement; the kind's trainer format sits alongside, once for the
whole snapshot with each record's `split` and once per split (`<split>.<file>`), so training on
a trainer file never reads the test split by accident:

| kind     | file                       | format                                               |
|----------|----------------------------|------------------------------------------------------|
| boxes    | `coco.json`                | COCO detection JSON (`curation.formats_coco`)        |
| spans    | `spans.jsonl`, `conll.txt` | JSONL with character offsets, CoNLL BIO tags         |
| pairwise | `preference_pairs.jsonl`   | `task_id, prompt, chosen, rejected, confidence, split` |

A split's COCO file is the whole file's images of that split, with the same image, annotation
and category ids, so the two join by id.
`conll.txt` holds one tag per token: the spans it cannot hold (sharing a token with a span
kept, or inside one token) and what it rewrites (tokens a reader would take for a document
break, whitespace in labels) are counted in the stats as `conll` and said on the card
(`curation.formats_bio`); `spans.jsonl` keeps every span.

The trainer files are derived from the rows, which the version id names: a change of how they
are written is a new trainer-file format (`TRAINER_FILES_FORMAT`, per kind), not a new version.
The manifest's `trainer_files` records the format a version's files are in and their SHA-256; a
manifest without it was written in format 1. `rewrite_trainer_files` brings an older version's
files to the current format from that version's own `data.parquet`, which must still hash to
its id, and returns the files that change (the card's CoNLL section with them) and the manifest
saying when and from which format; the rows, the id and `created_at` stay as they were.

The preference pairs come from each task's reliability-weighted majority (the `winner` of
the aggregated labels); ties are left out. Task payloads carry what the formats need: the text
for spans, `prompt`/`left_text`/`right_text` (JSON) for pairwise, the image's `file_name`,
`width` and `height` (JSON) for boxes; a box payload without `file_name` names its image by
`image` (Label Studio) or `source-ref` (SageMaker Ground Truth), and one without a size takes the
judgments' `image_width`/`image_height`. Boxes measured in percent (Label Studio) are scaled to
pixels in COCO; where no size is known they stay in percent, counted in the stats
(`tasks_in_percent`) and said on the card. Box rows also carry `coordinates`, `image_width` and
`image_height`. COCO category ids number the project's whole label set
(every label its aggregates have on any day), not the labels left in one version, so a class
index means the same class in every version as long as no new label arrives.

Personal data is masked before anything is written, by the categorical snapshots' detector
(`curation.masking`: e-mail addresses, phone numbers, configured patterns) and under the same
ceiling on the masked share (MaskedShareError above it). Span payloads are masked in place,
character for character (`MASK_CHARACTER`, whitespace kept), so every span's offsets still slice
out its (masked) text and the CoNLL tokens are the masked text's, as many as before. JSON
payloads (pairwise prompt and responses, box image references) are masked inside their string
values, object keys and integers (`curation.masking`) and stay valid JSON; other payloads are
masked as text, with `[redacted]`. A `text` project's aggregated answer is annotator-written
free text: it is masked like the payload, and a task counts once in the masked share whichever
of the two held the match. The trainer files are written from the masked rows, never from the
raw tasks.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from annotation_pipelines.curation.formats_bio import conll_export, with_offsets
from annotation_pipelines.curation.formats_coco import to_coco_with_splits
from annotation_pipelines.curation.masking import mask_personal_data
from annotation_pipelines.curation.snapshot import (
    SourceDay,
    check_masked_share,
    held_back_reasons,
    shown_held_back,
    source_days,
)
from annotation_pipelines.curation.splits import DEFAULT_RATIOS, assign_split
from annotation_pipelines.curation.versioning import aggregate_fingerprints, content_version
from annotation_pipelines.kinds import (
    BOX_CONTEXT,
    CONTEXT_DTYPES,
    VALUE_COLUMNS,
    check_kind,
    document_texts,
)
from annotation_pipelines.lake import CARD_FILE

DEFAULT_MIN_CONFIDENCE = 0.5
# The kinds with trainer files and the version of how each writes them: raised whenever the same
# rows would be written differently, so that the versions written before are rewritten.
# boxes 2: a split's COCO file keeps the whole file's ids and every category. spans 2: conll.txt
# separates documents with `-DOCSTART- O`, rewrites tokens starting with -DOCSTART- and
# whitespace in tags, keeps the longest of overlapping spans and counts what it drops.
TRAINER_FILES_FORMAT = {"boxes": 2, "spans": 2, "pairwise": 1}
# What `trainer_files.format` a manifest without the field was written in.
FIRST_FORMAT = 1
# Each kind's trainer files by the whole snapshot's name (a split's is `<split>.<name>`).
TRAINER_FILE_NAMES = {
    "boxes": ("coco.json",),
    "spans": ("spans.jsonl", "conll.txt"),
    "pairwise": ("preference_pairs.jsonl",),
}
HELD_BACK_NOTE = "Held back (no passing quality verdict)"


@dataclass(frozen=True)
class KindSnapshot:
    """One kind project's snapshot: its rows, version id, files (name → bytes) and card."""

    project: str
    kind: str
    rows: pl.DataFrame
    version_id: str
    method: str
    files: dict[str, bytes]
    held_back_days: list[str]
    stats: dict[str, object]
    # Day → why it is held back: the gates it failed, or "no quality report".
    held_back_reasons: dict[str, str]
    # Each judged day's verdict as the manifest records it (`source_days`; empty without
    # `quality`).
    source_days: dict[str, SourceDay]
    # The manifest's `trainer_files` (`trainer_files_record`; None: the kind has none).
    trainer_files: dict[str, object] | None


def build_kind_snapshot(
    labels: pl.DataFrame,
    tasks: pl.DataFrame,
    *,
    project: str,
    kind: str,
    quality: pl.DataFrame | None = None,
    min_confidence: float = DEFAULT_MIN_CONFIDENCE,
    include_gold: bool = False,
    ratios: dict[str, float] | None = None,
    phone_region: str,
    max_masked_share: float,
    mask_patterns: Sequence[str] = (),
) -> KindSnapshot:
    """The snapshot of one kind project from its `labels` (kind_aggregated_labels rows, with
    `day`) and `tasks` (raw_tasks rows of the project); `quality` is its kind_quality_report,
    and every judged day without a passing verdict in it is held back (None: nothing is).

    Personal data is masked as `build_snapshot` masks it (`phone_region`, `mask_patterns`);
    more than `max_masked_share` of the rows masked raises MaskedShareError."""
    check_kind(kind)
    columns = list(VALUE_COLUMNS[kind])
    own = labels.filter(pl.col("project") == project)
    if own.height == 0:
        raise ValueError(f"project {project!r}: no aggregated labels of kind {kind!r}")
    verdicts: dict[str, SourceDay] = {}
    if quality is not None:
        judged = own["day"].cast(pl.String).unique().to_list()
        made_from = {
            day: fingerprint
            for (owner, day), fingerprint in aggregate_fingerprints(own).items()
            if owner == project
        }
        verdicts = source_days(judged, quality, project=project, fingerprints=made_from)
    reasons = held_back_reasons(verdicts)
    held_back = sorted(reasons)
    task_rows = tasks.filter(pl.col("project") == project).unique("task_id", keep="last")
    gold_ids = task_rows.filter(pl.col("is_gold"))["task_id"]
    method = str(own.sort("day")["method"][-1])
    held_tasks = own.filter(pl.col("day").cast(pl.String).is_in(held_back))["task_id"]
    # A task's newest aggregate supersedes its older ones, so it is chosen before the confidence
    # filter: a newest aggregate below min_confidence leaves the task out rather than letting an
    # older day's answer, which the newer judgments overrode, into the snapshot.
    selected = (
        own.filter(~pl.col("task_id").is_in(held_tasks.implode()))
        .sort("day", "task_id")
        .unique("task_id", keep="last", maintain_order=True)
        .filter(pl.col("confidence") >= min_confidence)
        .filter(pl.lit(include_gold) | ~pl.col("task_id").is_in(gold_ids.implode()))
    )
    ratios = ratios or dict(DEFAULT_RATIOS)
    # The unit and image size boxes are measured in; aggregates written before they were kept
    # have neither, and their boxes are taken as they are.
    context = [c for c in BOX_CONTEXT if c in own.columns] if kind == "boxes" else []
    rows = (
        assign_split(
            selected.select(
                "task_id", "project", "kind", *columns, *context, "confidence", "method", "day"
            ),
            ratios=ratios,
            salt=project,
        )
        .join(task_rows.select("task_id", "payload"), on="task_id", how="left")
        .select(
            "task_id",
            "project",
            "kind",
            "payload",
            *columns,
            *context,
            "confidence",
            "method",
            "day",
            "split",
        )
        .sort("task_id")
    )
    rows, masked = mask_personal_data(
        rows,
        columns=("payload", "text") if kind == "text" else ("payload",),
        phone_region=phone_region,
        patterns=mask_patterns,
        # Span offsets index the payload as it is: it is masked as text, in place.
        preserve_length=kind == "spans",
        structured=kind != "spans",
    )
    check_masked_share(masked, project=project, ceiling=max_masked_share)
    version_id = content_version(rows)
    label_set = _label_set(own, kind)
    trainer, trainer_stats, in_percent = _trainer_files(
        rows, kind=kind, label_set=label_set, splits=list(ratios)
    )
    files = {
        "data.parquet": _parquet(rows),
        "data.jsonl": rows.write_ndjson().encode("utf-8"),
    }
    for split in ratios:
        part = rows.filter(pl.col("split") == split)
        files[f"{split}.parquet"] = _parquet(part)
        files[f"{split}.jsonl"] = part.write_ndjson().encode("utf-8")
    files.update(trainer)
    stats: dict[str, object] = {
        "labels": own.height,
        "selected": rows.height,
        "below_confidence": own.filter(pl.col("confidence") < min_confidence).height,
        "tasks_held_back": held_tasks.n_unique(),
        "min_confidence": min_confidence,
        "label_set": label_set,
        "masked_share": round(masked.share, 6),
        "masked_rows": masked.rows_masked,
        "masked": masked.by_kind(),
        "phone_region": phone_region,
        "max_masked_share": max_masked_share,
    }
    if in_percent is not None:
        stats["tasks_in_percent"] = in_percent
    stats.update(trainer_stats)
    return KindSnapshot(
        project=project,
        kind=kind,
        rows=rows,
        version_id=version_id,
        method=method,
        files=files,
        held_back_days=held_back,
        stats=stats,
        held_back_reasons=reasons,
        source_days=verdicts,
        trainer_files=trainer_files_record(trainer, kind=kind),
    )


def _parquet(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd", statistics=True)
    return buffer.getvalue()


def _payload_fields(rows: pl.DataFrame, fields: dict[str, pl.DataType]) -> pl.DataFrame:
    """`task_id`, `split` and the named fields of each row's JSON payload."""
    return rows.select(
        "task_id", "split", pl.col("payload").str.json_decode(pl.Struct(fields)).alias("decoded")
    ).unnest("decoded")


# Where a payload names its image when it has no `file_name`: Label Studio's `image` data
# field, SageMaker Ground Truth's `source-ref`.
IMAGE_KEYS = ("image", "source-ref")


def _image_size(rows: pl.DataFrame) -> list[pl.Expr]:
    """`width`, `height` (the payload's, else the judgments') and `coordinates` of each row of
    a boxes snapshot, as expressions over `_payload_fields` joined back to the rows."""
    judged = {
        c: rows[c] if c in rows.columns else pl.Series(c, [None] * rows.height, CONTEXT_DTYPES[c])
        for c in BOX_CONTEXT
    }
    return [
        pl.coalesce("width", pl.lit(judged["image_width"])).alias("width"),
        pl.coalesce("height", pl.lit(judged["image_height"])).alias("height"),
        pl.lit(judged["coordinates"]).alias("coordinates"),
    ]


def _label_set(labels: pl.DataFrame, kind: str) -> list[str] | None:
    """Every label a kind project's aggregates name on any day (None: the kind has no labels)."""
    if kind in ("boxes", "spans"):
        names = labels[kind].explode().struct.field("label")
    elif kind == "multilabel":
        names = labels["labels"].explode()
    else:
        return None
    return sorted(names.drop_nulls().unique().to_list())


def trainer_files(
    rows: pl.DataFrame, *, kind: str, label_set: list[str] | None, splits: Sequence[str]
) -> tuple[dict[str, bytes], dict[str, object]]:
    """The kind's trainer files from the snapshot's (masked) rows, whole (`<file>`) and per
    split (`<split>.<file>`), and what the format could not hold (stats, by format)."""
    files, stats, _ = _trainer_files(rows, kind=kind, label_set=label_set, splits=splits)
    return files, stats


def _trainer_files(
    rows: pl.DataFrame, *, kind: str, label_set: list[str] | None, splits: Sequence[str]
) -> tuple[dict[str, bytes], dict[str, object], int | None]:
    """`trainer_files`, and for boxes how many images keep their boxes in percent (None for
    the other kinds)."""
    if kind == "boxes":
        # A split's COCO file keeps the whole file's ids, which numbering the split's rows
        # alone would not.
        whole, by_split = to_coco_with_splits(
            rows.select("task_id", "boxes"),
            images=_coco_images(rows),
            splits=splits,
            categories=label_set,
        )
        files = {"coco.json": _coco_json(whole)}
        for split, coco in by_split.items():
            files[f"{split}.coco.json"] = _coco_json(coco)
        return files, {}, int(whole["info"]["images_in_percent"])
    whole_files, stats = _trainer_format(rows, kind=kind, label_set=label_set)
    files = dict(whole_files)
    for split in splits:
        part, _ = _trainer_format(
            rows.filter(pl.col("split") == split), kind=kind, label_set=label_set
        )
        files.update({f"{split}.{name}": data for name, data in part.items()})
    return files, stats, None


def trainer_files_record(files: Mapping[str, bytes], *, kind: str) -> dict[str, object] | None:
    """What a manifest's `trainer_files` says of a kind's trainer files: the format they are
    written in and each one's SHA-256, so a copy taken before a rewrite can be told apart from
    the version's files now (None: the kind has no trainer files)."""
    if kind not in TRAINER_FILES_FORMAT:
        return None
    return {
        "format": TRAINER_FILES_FORMAT[kind],
        "sha256": {name: hashlib.sha256(files[name]).hexdigest() for name in sorted(files)},
    }


def trainer_files_format(manifest: Mapping[str, object]) -> int:
    """The trainer-file format a snapshot's manifest says its files are in."""
    record = manifest.get("trainer_files")
    return int(record["format"]) if isinstance(record, dict) else FIRST_FORMAT


def lists_trainer_files(manifest: Mapping[str, object]) -> bool:
    """Whether a snapshot's manifest lists a file only a kind with trainer files writes."""
    listed = manifest.get("files")
    names = [name for names in TRAINER_FILE_NAMES.values() for name in names]
    return isinstance(listed, list) and any(
        isinstance(file, str) and (file == name or file.endswith("." + name))
        for file in listed
        for name in names
    )


def kind_of_columns(columns: Iterable[str]) -> str | None:
    """The kind whose snapshot rows have `columns`: the one kind whose value columns are all
    among them (None when no kind's are, or more than one kind's)."""
    present = set(columns)
    kinds = [kind for kind, names in VALUE_COLUMNS.items() if present.issuperset(names)]
    return kinds[0] if len(kinds) == 1 else None


def trainer_files_outdated(manifest: Mapping[str, object]) -> bool:
    """Whether a snapshot's trainer files were written in an older format than today's."""
    kind = manifest.get("kind")
    current = TRAINER_FILES_FORMAT.get(kind) if isinstance(kind, str) else None
    return current is not None and trainer_files_format(manifest) < current


@dataclass(frozen=True)
class TrainerFilesRewrite:
    """What bringing one version's trainer files to the current format writes."""

    # File name → its new bytes: the trainer files whose bytes change and the card if it does.
    files: dict[str, bytes]
    # The version's manifest, its `trainer_files` and trainer stats brought up to date.
    manifest: dict[str, object]


def rewrite_trainer_files(
    manifest: Mapping[str, object],
    rows: pl.DataFrame,
    *,
    stored: Callable[[str], bytes | None],
    rewritten_at: str,
    run_id: str,
) -> TrainerFilesRewrite:
    """The current format's trainer files of the version `manifest` describes, from `rows`
    (its `data.parquet`), which must still hash to its version id (ValueError otherwise: the
    files would describe other rows than the id names). `stored` reads one of the version's
    files as it is now, by name (None: missing); only the trainer files and the card are read.
    The manifest keeps every other field, its `created_at` (the caller sets it from the
    manifest's first write when it lacks one) and `files`, which name the same files."""
    kind = str(manifest["kind"])
    if content_version(rows) != manifest["version_id"]:
        raise ValueError("data.parquet does not hash to the version id")
    label_set = manifest.get("label_set")
    splits = manifest.get("splits")
    files, trainer_stats = trainer_files(
        rows,
        kind=kind,
        label_set=list(label_set) if isinstance(label_set, list) else None,
        splits=list(splits) if isinstance(splits, dict) else [],
    )
    changed = {name: data for name, data in files.items() if stored(name) != data}
    before = manifest.get("stats")
    stats = {**(before if isinstance(before, dict) else {}), **trainer_stats}
    card = stored(CARD_FILE)
    conll = trainer_stats.get("conll")
    if card is not None and isinstance(conll, dict):
        updated = card_with_conll_notes(card.decode("utf-8"), conll).encode("utf-8")
        if updated != card:
            changed[CARD_FILE] = updated
    record = trainer_files_record(files, kind=kind) or {}
    record.update(
        {
            "previous_format": trainer_files_format(manifest),
            "rewritten": sorted(changed),
            "rewritten_at": rewritten_at,
            "rewritten_by_run": run_id,
        }
    )
    listed = manifest.get("files")
    names = sorted({*(listed if isinstance(listed, list) else []), *files})
    return TrainerFilesRewrite(
        files=changed,
        manifest={**manifest, "files": names, "stats": stats, "trainer_files": record},
    )


def _coco_json(coco: dict) -> bytes:
    return json.dumps(coco, indent=1, sort_keys=True).encode("utf-8")


def _coco_images(rows: pl.DataFrame) -> pl.DataFrame:
    """`task_id`, `split`, `file_name`, `width`, `height` and `coordinates` of each row of a
    boxes snapshot, from its payload and judgments."""
    fields: dict[str, pl.DataType] = {
        "file_name": pl.String(),
        "width": pl.Float64(),
        "height": pl.Float64(),
        **{key: pl.String() for key in IMAGE_KEYS},
    }
    return _payload_fields(rows, fields).select(
        "task_id",
        "split",
        pl.coalesce("file_name", *IMAGE_KEYS).alias("file_name"),
        *_image_size(rows),
    )


def _trainer_format(
    rows: pl.DataFrame, *, kind: str, label_set: list[str] | None
) -> tuple[dict[str, bytes], dict[str, object]]:
    """The kind's trainer files for `rows`, and their stats (boxes: `_trainer_files`)."""
    if kind == "spans":
        texts = document_texts(rows)
        labelled = rows.select("task_id", "spans", "confidence")
        documents = with_offsets(labelled, texts).join(
            rows.select("task_id", "split"), on="task_id", how="left", maintain_order="left"
        )
        conll = conll_export(labelled, texts)
        files = {
            "spans.jsonl": documents.write_ndjson().encode("utf-8"),
            "conll.txt": conll.text.encode("utf-8"),
        }
        return files, {"conll": conll.stats()}
    if kind == "pairwise":
        pair_fields: dict[str, pl.DataType] = {
            "prompt": pl.String(),
            "left_text": pl.String(),
            "right_text": pl.String(),
            # The items the texts are of, when the payload names them: the aggregate's
            # left/right is how the task's judgments showed the pair, which may be the other
            # way round.
            "left": pl.String(),
            "right": pl.String(),
        }
        texts = _payload_fields(rows, pair_fields).drop("split")
        texts = texts.rename({"left": "_text_left", "right": "_text_right"})
        decided = rows.filter(pl.col("winner") != "tie").join(texts, on="task_id", how="left")
        missing = decided.filter(
            pl.any_horizontal(pl.col("prompt", "left_text", "right_text").is_null())
        )
        if missing.height:
            raise ValueError(
                f"raw_tasks: task {missing['task_id'][0]!r} has no prompt/left_text/right_text "
                "in its payload"
            )
        swapped = (pl.col("_text_left") == pl.col("right")) & (
            pl.col("_text_right") == pl.col("left")
        )
        left_won = (pl.col("winner") == "left") ^ swapped.fill_null(False)
        pairs = decided.select(
            "task_id",
            "prompt",
            pl.when(left_won).then("left_text").otherwise("right_text").alias("chosen"),
            pl.when(left_won).then("right_text").otherwise("left_text").alias("rejected"),
            "confidence",
            "split",
        )
        return {"preference_pairs.jsonl": pairs.write_ndjson().encode("utf-8")}, {}
    return {}, {}


def kind_card(snapshot: KindSnapshot, *, quality: pl.DataFrame | None, location: str) -> str:
    """A markdown card: the kind, method, rows per split, agreement and gold figures per day."""
    rows = snapshot.rows
    lines = [
        f"# Dataset card — {snapshot.project} — version `{snapshot.version_id}`",
        "",
        f"Kind: **{snapshot.kind}** (value column(s): "
        f"{', '.join(VALUE_COLUMNS[snapshot.kind])}); aggregated by `{snapshot.method}`.",
        f"{rows.height:,} tasks with confidence ≥ {snapshot.stats['min_confidence']}.",
        f"Files: {', '.join(sorted(snapshot.files))}. Location: {location}",
        "",
        "## Rows per split",
        "",
        "| split | rows |",
        "|---|---|",
    ]
    if rows.height:
        for split, count in rows.group_by("split").len().sort("split").iter_rows():
            lines.append(f"| {split} | {count} |")
    if quality is not None and quality.height:
        own = quality.filter(pl.col("project") == snapshot.project).sort("day")
        lines += [
            "",
            "## Agreement and gold per day",
            "",
            "| day | distance | alpha | 95% CI | raw agreement (or mean distance) | gold metric "
            "| gold value |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in own.iter_rows(named=True):
            lines.append(
                f"| {row['day']} | {row['distance']} | {_figure(row['krippendorff_alpha'])} | "
                f"{_figure(row['alpha_low'])}–{_figure(row['alpha_high'])} | "
                f"{_raw_figure(row)} | {row['gold_metric_name']} | "
                f"{_figure(row['gold_metric'])} |"
            )
    stats = snapshot.stats
    masked = stats.get("masked")
    if isinstance(masked, dict):
        mask = "`*` per character, offsets kept" if snapshot.kind == "spans" else "`[redacted]`"
        where = "payloads and answers" if snapshot.kind == "text" else "payloads"
        lines += [
            "",
            "## Personal data",
            "",
            f"{float(stats['masked_share']):.1%} of {where} ({stats['masked_rows']:,} of "  # type: ignore[arg-type]
            f"{rows.height:,}) had personal data replaced by {mask}: e-mail addresses in "
            f"{masked.get('email', 0):,}, phone numbers in {masked.get('phone', 0):,} (numbers "
            f"without a country code read as {stats['phone_region']}), configured patterns in "
            f"{masked.get('custom', 0):,}. A snapshot fails above "
            f"{float(stats['max_masked_share']):.1%}.",  # type: ignore[arg-type]
        ]
    in_percent = stats.get("tasks_in_percent")
    if isinstance(in_percent, int) and in_percent:
        lines += [
            "",
            f"Boxes of {in_percent:,} of {rows.height:,} tasks stay in percent of the image size "
            "in coco.json: neither the task payload nor the judgments give the image's size.",
        ]
    conll = stats.get("conll")
    if isinstance(conll, dict) and (notes := _conll_notes(conll)):
        lines += ["", "## CoNLL", "", *notes]
    if snapshot.held_back_days:
        shown = shown_held_back(snapshot.held_back_days, snapshot.held_back_reasons)
        lines += ["", f"{HELD_BACK_NOTE}: {shown}."]
    return "\n".join(lines) + "\n"


def card_with_conll_notes(card: str, conll: dict) -> str:
    """`card` (a `kind_card`) with its CoNLL section saying what `conll` (the stats of the
    version's conll.txt) says, where `kind_card` puts it."""
    lines = card.removesuffix("\n").split("\n")
    if "## CoNLL" in lines:
        start = lines.index("## CoNLL") - 1
        end = start + 2
        while end < len(lines) and not lines[end].startswith(("## ", HELD_BACK_NOTE)):
            end += 1
        # The blank line before the next section stays.
        del lines[start : end - 1 if end < len(lines) else end]
    notes = _conll_notes(conll)
    if notes:
        at = next(
            (n - 1 for n, line in enumerate(lines) if line.startswith(HELD_BACK_NOTE)), len(lines)
        )
        lines[at:at] = ["", "## CoNLL", "", *notes]
    return "\n".join(lines) + "\n"


def _conll_notes(conll: dict) -> list[str]:
    """What `conll.txt` does not hold as `spans.jsonl` does, one sentence each (none: all)."""
    notes = []
    dropped = conll["spans_dropped"]
    lost = dropped["overlapping"] + dropped["without_token"]
    if lost:
        notes.append(
            f"- {lost:,} of {conll['spans']:,} spans are in spans.jsonl but not in conll.txt, "
            "whose BIO tags hold one span per token: "
            f"{dropped['overlapping']:,} share a token with a span kept (kept: "
            f"{conll['kept_when_overlapping']}), {dropped['without_token']:,} lie inside one "
            "token."
        )
    if conll["tokens_rewritten"]:
        notes.append(
            f"- {conll['tokens_rewritten']:,} tokens starting with -DOCSTART-, which CoNLL-2003 "
            "readers take for a document break, are written with `_` for their first `-`."
        )
    if conll["tags_renamed"]:
        renamed = ", ".join(f"{label!r} as {tag}" for label, tag in conll["tags_renamed"].items())
        notes.append(f"- Labels holding whitespace are tagged with `_` for it: {renamed}.")
    return notes


def _figure(value: object) -> str:
    return "n/a" if value is None else f"{float(value):.3f}"  # type: ignore[arg-type]


def _raw_figure(row: dict[str, object]) -> str:
    """A day's raw agreement, a share; for a kind whose distance has no share (numeric), its
    mean distance, named so that nobody reads it as one."""
    share = row.get("mean_pairwise_agreement")
    distance = row.get("mean_pairwise_distance")
    if row.get("raw_measure") == "mean_absolute_difference" and distance is None:
        # A numeric day reported before the distance had its own column held it here.
        share, distance = None, share
    if share is None and distance is not None:
        return f"{row.get('raw_measure') or 'mean distance'} {_figure(distance)}"
    return _figure(share)
