"""CoNLL/BIO and JSONL-with-offsets export of aggregated spans.

BIO tagging (L. A. Ramshaw and M. P. Marcus, "Text Chunking using Transformation-Based
Learning", 1995; the CoNLL-2003 shared-task layout: one token per line, its tag in the last
column, a blank line between documents). Tokens are the maximal runs of non-whitespace in the
task's text. A token takes the label of the span that covers its first character (spans that
cut a token thus label it by where it starts; a span that covers no token's first character
is lost), `B-` on the first token of a span and `I-` on the following ones, `O` elsewhere; a
null label is written `ENTITY`. Documents are separated by a `-DOCSTART-` line naming the task.

Labels and task ids are whatever the annotation tool held, and a CoNLL reader splits lines on
line breaks and fields on whitespace, so either could add token lines no text has. A tag is one
field: each run of whitespace in a label is written `_` (`New York` → `B-New_York`; the exact
label stays in the JSONL), and two labels that would give one tag are refused. A task id that is
not one plain field is written as a JSON string (ASCII), which reads back exactly.

JSONL with offsets: one object per task with `task_id`, `text`, `confidence` and `spans`, each
span with `start`, `end` (characters, end exclusive), `label`, `confidence` and the covered
`text`, so a consumer can check the offsets.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import polars as pl

UNLABELLED = "ENTITY"
_TOKEN = re.compile(r"\S+")
_WHITESPACE = re.compile(r"\s+")


def to_conll(labels: pl.DataFrame, texts: pl.DataFrame) -> str:
    """CoNLL text for an aggregate (`task_id`, `spans`) and `texts` (`task_id`, `text`)."""
    joined = labels.select("task_id", "spans").join(
        texts.select("task_id", "text"), on="task_id", how="inner", maintain_order="left"
    )
    tags = _tags(joined.get_column("spans"))
    lines: list[str] = []
    for task_id, spans, text in joined.iter_rows():
        lines.append(f"-DOCSTART- {_document_id(task_id)}")
        lines.append("")
        ordered = sorted(spans or [], key=lambda span: (span["start"], span["end"]))
        cursor = 0
        previous_span = -1
        for match in _TOKEN.finditer(text or ""):
            first = match.start()
            while cursor < len(ordered) and ordered[cursor]["end"] <= first:
                cursor += 1
            tag = "O"
            if cursor < len(ordered) and ordered[cursor]["start"] <= first:
                label = ordered[cursor]["label"] or UNLABELLED
                tag = ("I-" if previous_span == cursor else "B-") + tags[label]
                previous_span = cursor
            else:
                previous_span = -1
            lines.append(f"{match.group()} {tag}")
        lines.append("")
    return "\n".join(lines) + "\n"


def _tags(spans: pl.Series) -> dict[str, str]:
    """Each label's tag body; ValueError when two labels would be written as one tag."""
    labels = spans.explode().struct.field("label").drop_nulls().unique().sort().to_list()
    tags: dict[str, str] = {UNLABELLED: UNLABELLED}
    owner: dict[str, str] = {UNLABELLED: UNLABELLED}
    for label in labels:
        tag = _WHITESPACE.sub("_", label)
        if owner.setdefault(tag, label) != label:
            raise ValueError(
                f"conll: labels {owner[tag]!r} and {label!r} would both be written as the tag "
                f"{tag!r} (a tag cannot hold whitespace); rename one in the labelling config"
            )
        tags[label] = tag
    return tags


def _document_id(task_id: str) -> str:
    if _TOKEN.fullmatch(task_id) and not task_id.startswith('"'):
        return task_id
    return json.dumps(task_id)


def write_conll(labels: pl.DataFrame, texts: pl.DataFrame, path: str | Path) -> Path:
    target = Path(path)
    target.write_text(to_conll(labels, texts))
    return target


def with_offsets(labels: pl.DataFrame, texts: pl.DataFrame) -> pl.DataFrame:
    """The aggregate with each task's `text` and each span's covered `text`."""
    joined = labels.join(texts.select("task_id", "text"), on="task_id", how="left")
    exploded = (
        joined.select("task_id", "spans", "text")
        .with_row_index("row")
        .explode("spans", keep_nulls=False)
        .with_columns(
            pl.col("spans").struct.with_fields(
                pl.col("text")
                .str.slice(pl.field("start"), pl.field("end") - pl.field("start"))
                .alias("text")
            )
        )
        .group_by("row", maintain_order=True)
        .agg("spans")
    )
    return (
        joined.with_row_index("row")
        .drop("spans")
        .join(exploded, on="row", how="left")
        .with_columns(pl.col("spans").fill_null([]))
        .select("task_id", "text", "confidence", "spans")
    )


def write_spans_jsonl(labels: pl.DataFrame, texts: pl.DataFrame, path: str | Path) -> Path:
    target = Path(path)
    with_offsets(labels, texts).write_ndjson(target)
    return target


def read_spans_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
