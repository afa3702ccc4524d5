"""CoNLL/BIO and JSONL-with-offsets export of aggregated spans.

BIO tagging (L. A. Ramshaw and M. P. Marcus, "Text Chunking using Transformation-Based
Learning", 1995) in the CoNLL-2003 shared-task layout: one token per line, its tag in the last
column, a blank line between documents, and each document opened by a `-DOCSTART-` line and a
blank line. The separator line is `-DOCSTART- O`, the 2-column form of CoNLL-2003's
`-DOCSTART- -X- -X- O`: readers that mark document boundaries (flair's `ColumnCorpus` with
`document_separator_token`) keep the separator as a one-token sentence, so its tag must be `O`
or it becomes a labelled span. Documents follow the rows of the aggregate, the order of
`spans.jsonl`, so the n-th document is the n-th task (a document with no token is a bare
separator, which readers skip).

Tokens are the maximal runs of non-whitespace in the task's text (Python's whitespace, which is
what readers split columns and lines on, so no token holds a space, tab, line or file
separator). CoNLL-2003 readers take any line starting with `-DOCSTART-` (transformers'
token-classification examples, the `datasets` conll2003 script) or whose first field is
`-DOCSTART-` (AllenNLP) for a document break, and CoNLL has no escape: a token starting with
`-DOCSTART-` is written with `_` for its first `-` (`_DOCSTART-`), as long as it was, and
counted. A tag is `B-`/`I-` and the label, with each run of whitespace in the label written `_`
(a label `product name` would otherwise make a third column, and most readers take the last
column for the tag); two labels that this would merge are refused.

A token belongs to a span when its first character lies in the span (a span that cuts a token
labels it by where it starts); `B-` on a span's first token, `I-` on the next ones, `O` outside
every span; a null label is written `ENTITY`. BIO holds one label per token, so spans sharing a
token cannot all be written: the span over the most tokens is kept (the outermost of nested
spans, as spaCy's `filter_spans` keeps them), then the one starting first, then the most
confident, then the first label in sort order; a span in which no token starts (inside one
token) has no token to tag. Both losses are counted (`ConllExport`); `spans.jsonl` keeps every
span.

JSONL with offsets: one object per task with `task_id`, `text`, `confidence` and `spans`, each
span with `start`, `end` (characters, end exclusive), `label`, `confidence` and the covered
`text`, so a consumer can check the offsets.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

UNLABELLED = "ENTITY"
DOCUMENT_SEPARATOR = "-DOCSTART-"
KEPT_WHEN_OVERLAPPING = "most tokens, then first, then most confident, then label"
_TOKEN = re.compile(r"\S+")
_WHITESPACE = re.compile(r"\s+")


@dataclass
class ConllExport:
    """A CoNLL file's text and what of the aggregate it could not hold as it was."""

    text: str = ""
    documents: int = 0
    spans: int = 0
    spans_written: int = 0
    # Spans sharing a token with a span kept (KEPT_WHEN_OVERLAPPING).
    spans_overlapping: int = 0
    # Spans in which no token starts.
    spans_without_token: int = 0
    # Tokens starting with DOCUMENT_SEPARATOR, written with `_` for their first `-`.
    tokens_rewritten: int = 0
    # Label → its tag name, for labels holding whitespace.
    tags_renamed: dict[str, str] = field(default_factory=dict)

    def stats(self) -> dict[str, object]:
        """The counts as a snapshot's manifest records them."""
        return {
            "documents": self.documents,
            "spans": self.spans,
            "spans_written": self.spans_written,
            "spans_dropped": {
                "overlapping": self.spans_overlapping,
                "without_token": self.spans_without_token,
            },
            "kept_when_overlapping": KEPT_WHEN_OVERLAPPING,
            "tokens_rewritten": self.tokens_rewritten,
            "tags_renamed": dict(sorted(self.tags_renamed.items())),
        }


def to_conll(labels: pl.DataFrame, texts: pl.DataFrame) -> str:
    """CoNLL text for an aggregate (`task_id`, `spans`) and `texts` (`task_id`, `text`)."""
    return conll_export(labels, texts).text


def conll_export(labels: pl.DataFrame, texts: pl.DataFrame) -> ConllExport:
    """`to_conll`'s text with the counts of spans it dropped and tokens and labels it rewrote."""
    joined = labels.select("task_id", "spans").join(
        texts.select("task_id", "text"), on="task_id", how="inner", maintain_order="left"
    )
    export = ConllExport()
    tag_of: dict[str, str] = {}
    lines: list[str] = []
    for _, spans, text in joined.iter_rows():
        export.documents += 1
        lines.append(f"{DOCUMENT_SEPARATOR} O")
        lines.append("")
        tokens = list(_TOKEN.finditer(text or ""))
        tags = _bio_tags(tokens, spans or [], export, tag_of)
        for match, tag in zip(tokens, tags, strict=True):
            token = match.group()
            if token.startswith(DOCUMENT_SEPARATOR):
                token = "_" + token[1:]
                export.tokens_rewritten += 1
            lines.append(f"{token} {tag}")
        lines.append("")
    export.text = "\n".join(lines) + "\n"
    export.tags_renamed = {label: tag for label, tag in tag_of.items() if tag != label}
    return export


def _bio_tags(
    tokens: list[re.Match[str]], spans: list[dict], export: ConllExport, tag_of: dict[str, str]
) -> list[str]:
    """One tag per token, keeping the spans KEPT_WHEN_OVERLAPPING picks; counts into `export`."""
    starts = [match.start() for match in tokens]
    candidates = []
    for span in spans:
        export.spans += 1
        first = bisect.bisect_left(starts, span["start"])
        stop = bisect.bisect_left(starts, span["end"])
        if first >= stop:
            export.spans_without_token += 1
            continue
        label = span["label"] or UNLABELLED
        confidence = span.get("confidence")
        candidates.append((-(stop - first), first, -(confidence or 0.0), label, stop))
    tags = ["O"] * len(tokens)
    for _, first, _, label, stop in sorted(candidates):
        if any(tag != "O" for tag in tags[first:stop]):
            export.spans_overlapping += 1
            continue
        export.spans_written += 1
        name = _tag_name(label, tag_of)
        tags[first] = "B-" + name
        for index in range(first + 1, stop):
            tags[index] = "I-" + name
    return tags


class ConllTagClash(ValueError):
    """Two span labels that would be written as one CoNLL tag."""

    def __init__(self, labels: tuple[str, str], tag: str) -> None:
        self.labels = labels
        self.tag = tag
        super().__init__(
            f"span labels {labels[0]!r} and {labels[1]!r} would both be written as the CoNLL "
            f"tag {tag!r}"
        )


def _tag_name(label: str, tag_of: dict[str, str]) -> str:
    if label not in tag_of:
        name = _WHITESPACE.sub("_", label)
        for other, taken in tag_of.items():
            if taken == name:
                raise ConllTagClash((min(other, label), max(other, label)), name)
        tag_of[label] = name
    return tag_of[label]


def write_conll(labels: pl.DataFrame, texts: pl.DataFrame, path: str | Path) -> Path:
    target = Path(path)
    target.write_text(to_conll(labels, texts))
    return target


def with_offsets(labels: pl.DataFrame, texts: pl.DataFrame) -> pl.DataFrame:
    """The aggregate with each task's `text` and each span's covered `text`."""
    joined = labels.join(
        texts.select("task_id", "text"), on="task_id", how="left", maintain_order="left"
    )
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
        .join(exploded, on="row", how="left", maintain_order="left")
        .with_columns(pl.col("spans").fill_null([]))
        .select("task_id", "text", "confidence", "spans")
    )


def write_spans_jsonl(labels: pl.DataFrame, texts: pl.DataFrame, path: str | Path) -> Path:
    target = Path(path)
    with_offsets(labels, texts).write_ndjson(target)
    return target


def read_spans_jsonl(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]
