"""Judgments and gold labels of every kind in the annotation DB (migration 9: `kind` and a JSON
`answer`), on the real local Postgres: read by the extract with the categorical rows, validated
like an export's rows (a bad answer quarantined naming its table, key and field), in every
read method, and left out, said so, where the database predates the migration."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from annotation_pipelines.ingest.postgres import (
    OPTIONAL_MIGRATIONS,
    apply_schema,
    extract_since,
    has_kind_answers,
    migration_files,
    seed_database,
)
from annotation_pipelines.kinds import KIND_COLUMNS, KINDS
from annotation_pipelines.synthetic import generate_workload
from tests.services import fresh_database, migrated_before, tool_and_pipelines_roles

pytestmark = pytest.mark.services

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WHEN = datetime(2026, 11, 2, 10, tzinfo=UTC)
INSERT = (
    "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, kind, answer, "
    "submitted_at) VALUES (%s, %s, 'p', %s, %s, %s, %s::jsonb, %s)"
)
GOLD = (
    "INSERT INTO gold_labels (task_id, project, label, kind, answer) VALUES (%s, 'p', %s, %s, %s)"
)

# One answer of each kind, as the tool would store it, and the canonical value it reads as.
ANSWERS: dict[str, tuple[object, dict[str, object]]] = {
    "multilabel": (["cat", "dog"], {"labels": ["cat", "dog"]}),
    "numeric": (4, {"value": 4.0}),
    "ranking": (["b", "a", "c"], {"ranking": ["b", "a", "c"]}),
    "pairwise": (
        {"left": "x", "right": "y", "winner": "y"},
        {"left": "x", "right": "y", "winner": "right"},
    ),
    "spans": (
        [{"start": 0, "end": 5, "label": "PER"}],
        {"spans": [{"start": 0, "end": 5, "label": "PER"}]},
    ),
    "boxes": (
        {
            "boxes": [{"label": "car", "x_min": 1, "y_min": 2, "x_max": 30, "y_max": 40}],
            "coordinates": "percent",
            "image_width": 640,
            "image_height": 480,
        },
        {
            "boxes": [{"label": "car", "x_min": 1.0, "y_min": 2.0, "x_max": 30.0, "y_max": 40.0}],
            "coordinates": "percent",
            "image_width": 640.0,
            "image_height": 480.0,
        },
    ),
    "text": ("a cat on a mat", {"text": "a cat on a mat"}),
}


def _run(dsn: str, schema: str, *statements: tuple[str, tuple]) -> None:
    with psycopg.connect(dsn) as connection:
        connection.execute(f"SET search_path TO {schema}")
        for statement, parameters in statements:
            connection.execute(statement, parameters)


def _judgment(
    judgment_id: str, kind: str | None, answer: object, *, label: str | None = None
) -> tuple[str, tuple]:
    text = None if answer is None else json.dumps(answer)
    return INSERT, (judgment_id, f"t-{judgment_id}", "a1", label, kind, text, WHEN)


def test_every_kind_is_read_with_its_canonical_value_in_every_read_method(postgres_dsn):
    schema = "kind_answers_all"
    apply_schema(postgres_dsn, schema=schema)
    assert has_kind_answers(postgres_dsn, schema=schema)
    statements = [
        _judgment("c1", None, None, label="cat"),
        _judgment("c2", "categorical", None, label="dog"),
    ]
    statements += [_judgment(kind, kind, answer) for kind, (answer, _) in ANSWERS.items()]
    _run(postgres_dsn, schema, *statements)
    for method in ("adbc", "copy", "fetch"):
        extract = extract_since(postgres_dsn, since=EPOCH, schema=schema, method=method)
        assert extract.kind_answers
        assert extract.result.quarantine.height == 0, extract.result.quarantine.to_dicts()
        judgments = extract.result.judgments.sort("judgment_id")
        assert set(judgments["kind"]) == set(KINDS)
        categorical = judgments.filter(pl.col("kind") == "categorical")
        assert dict(zip(categorical["judgment_id"], categorical["label"], strict=True)) == {
            "c1": "cat",
            "c2": "dog",
        }
        for kind, (_, expected) in ANSWERS.items():
            row = judgments.filter(pl.col("judgment_id") == kind).row(0, named=True)
            assert {name: row[name] for name in expected} == expected, (method, kind)
            assert row["label"] is None


def test_kind_gold_labels_are_read_and_a_categorical_gold_keeps_its_label(postgres_dsn):
    schema = "kind_answers_gold"
    apply_schema(postgres_dsn, schema=schema)
    _run(
        postgres_dsn,
        schema,
        _judgment("j1", "spans", [{"start": 0, "end": 3, "label": "ORG"}]),
        (GOLD, ("t-j1", None, "spans", json.dumps([{"start": 0, "end": 3, "label": "ORG"}]))),
        (GOLD, ("t-other", "cat", None, None)),
        (GOLD, ("t-rated", None, "numeric", "3.5")),
    )
    gold = extract_since(postgres_dsn, since=EPOCH, schema=schema).result.gold.sort("task_id")
    rows = {row["task_id"]: row for row in gold.iter_rows(named=True)}
    assert rows["t-j1"]["kind"] == "spans"
    assert rows["t-j1"]["spans"] == [{"start": 0, "end": 3, "label": "ORG"}]
    assert rows["t-other"]["label"] == "cat" and rows["t-other"]["kind"] == "categorical"
    assert rows["t-rated"]["value"] == 3.5


@pytest.mark.parametrize(
    ("kind", "answer", "field"),
    [
        ("numeric", "four", "value"),
        ("spans", [{"start": 5, "end": 2, "label": "PER"}], "spans"),
        ("ranking", ["a", "a"], "ranking"),
        ("pairwise", "left", "answer"),
        ("pairwise", {"left": "x", "right": "y", "winner": "z"}, "winner"),
        ("boxes", {"boxes": [], "coordinates": "inches"}, "coordinates"),
        ("boxes", {"boxes": [], "image_width": -3}, "image_width"),
        ("multilabel", None, "labels"),
        ("sentiment", ["x"], "kind"),
    ],
)
def test_a_bad_answer_is_quarantined_naming_its_table_key_and_field(
    postgres_dsn, kind, answer, field
):
    schema = f"kind_answers_bad_{uuid.uuid4().hex[:12]}"
    apply_schema(postgres_dsn, schema=schema)
    _run(postgres_dsn, schema, _judgment("bad", kind, answer), _judgment("good", "numeric", 2))
    extract = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    assert extract.result.judgments["judgment_id"].to_list() == ["good"]
    (bad,) = extract.result.quarantine.to_dicts()
    assert bad["field"] == field, bad
    assert bad["source_file"] == f"postgres:{schema}.judgments"
    assert '"judgment_id":"bad"' in bad["raw"].replace(" ", "")


# JSON a jsonb column holds but Python cannot take as the canonical value (numbers past a
# float or an Int64 offset, thousands of digits, nesting past the recursion limit): each is one
# quarantined row, never an extract that fails on it run after run.
@pytest.mark.parametrize(
    ("kind", "text", "reason", "field"),
    [
        ("numeric", "1e400", "wrong_type", "value"),
        ("numeric", "-1e400", "wrong_type", "value"),
        ("numeric", "1" + "0" * 5000, "wrong_type", "answer"),
        ("multilabel", '["a", 1e400]', "wrong_type", "labels"),
        ("spans", '[{"start": 0, "end": 99999999999999999999, "label": "PER"}]', "wrong_type",
         "spans"),
        ("boxes", '[{"label": "car", "x_min": 0, "y_min": 0, "x_max": 1e400, "y_max": 1}]',
         "wrong_type", "boxes"),
        ("boxes", '{"boxes": [], "image_width": 1e400}', "wrong_type", "image_width"),
        ("ranking", "[" * 3000 + "]" * 3000, "wrong_type", "answer"),
        ("text", json.dumps("x" * (16 * 1024 * 1024 + 1)), "oversized_field", "answer"),
    ],
    ids=["1e400", "minus-1e400", "long-int", "label-1e400", "span-end", "box-1e400",
         "width-1e400", "nested", "oversized"],
)  # fmt: skip
def test_an_answer_python_cannot_hold_is_quarantined_not_fatal(
    postgres_dsn, kind, text, reason, field
):
    schema = f"kind_answers_huge_{uuid.uuid4().hex[:12]}"
    apply_schema(postgres_dsn, schema=schema)
    _run(
        postgres_dsn,
        schema,
        (INSERT, ("bad", "t-bad", "a1", None, kind, text, WHEN)),
        _judgment("good", "numeric", 2),
    )
    for method in ("adbc", "copy", "fetch"):
        extract = extract_since(postgres_dsn, since=EPOCH, schema=schema, method=method)
        assert extract.result.judgments["judgment_id"].to_list() == ["good"], method
        (bad,) = extract.result.quarantine.to_dicts()
        assert (bad["reason"], bad["field"]) == (reason, field), (method, bad)


# What the commands and file ingest refuse by the same check (`values.normalize`): a box with
# no area, a blank text answer, a blank label (`tests/kinds/test_blank_and_empty_values.py`),
# a box outside the image its answer names (`tests/ingest/test_inside_the_task.py`).
@pytest.mark.parametrize(
    ("kind", "answer", "reason", "field"),
    [
        ("boxes", [{"label": "car", "x_min": 5, "y_min": 0, "x_max": 5, "y_max": 9}], "empty_box",
         "boxes"),
        ("text", " \u200b ", "missing_field", "text"),
        ("spans", [{"start": 0, "end": 2, "label": ""}], "missing_field", "spans"),
        ("multilabel", [" "], "missing_field", "labels"),
        ("boxes", {"boxes": [{"label": "car", "x_min": 90, "y_min": 0, "x_max": 120, "y_max": 9}],
                   "coordinates": "percent"}, "outside_image", "boxes"),
        ("boxes", {"boxes": [{"label": "car", "x_min": -2, "y_min": 0, "x_max": 20, "y_max": 9}],
                   "coordinates": "pixel"}, "outside_image", "boxes"),
    ],
    ids=["empty-box", "blank-text", "blank-span-label", "blank-multilabel", "box-past-100-percent",
         "box-at-a-negative-pixel"],
)  # fmt: skip
def test_an_empty_box_or_blank_answer_is_quarantined_as_from_a_file(
    postgres_dsn, kind, answer, reason, field
):
    schema = f"kind_answers_blank_{uuid.uuid4().hex[:12]}"
    apply_schema(postgres_dsn, schema=schema)
    _run(postgres_dsn, schema, _judgment("bad", kind, answer), _judgment("good", "numeric", 2))
    for method in ("adbc", "copy", "fetch"):
        extract = extract_since(postgres_dsn, since=EPOCH, schema=schema, method=method)
        assert extract.result.judgments["judgment_id"].to_list() == ["good"], method
        (bad,) = extract.result.quarantine.to_dicts()
        assert (bad["reason"], bad["field"]) == (reason, field), (method, bad)


def test_a_multilabel_label_outside_its_projects_set_is_quarantined(postgres_dsn):
    schema = "kind_answers_label_set"
    apply_schema(postgres_dsn, schema=schema)
    _run(
        postgres_dsn,
        schema,
        ("INSERT INTO projects (project, label_set) VALUES ('p', '{cat,dog}')", ()),
        ("INSERT INTO projects (project, label_set) VALUES ('q', '{}')", ()),
        _judgment("in", "multilabel", ["cat"]),
        _judgment("out", "multilabel", ["cat", "eel"]),
        (INSERT.replace("'p'", "'q'"), ("q1", "tq", "a1", "eel", None, None, WHEN)),
    )
    extract = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    assert sorted(extract.result.judgments["judgment_id"]) == ["in", "q1"]
    (bad,) = extract.result.quarantine.to_dicts()
    assert (bad["reason"], bad["field"]) == ("unknown_label", "labels")


def test_an_edit_of_an_answer_is_read_again_as_the_newer_version(postgres_dsn):
    schema = "kind_answers_edit"
    apply_schema(postgres_dsn, schema=schema)
    _run(postgres_dsn, schema, _judgment("j1", "numeric", 2))
    first = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    assert first.result.judgments["value"].to_list() == [2.0]
    _run(postgres_dsn, schema, ("UPDATE judgments SET answer = '5' WHERE judgment_id = 'j1'", ()))
    second = extract_since(
        postgres_dsn, since=first.watermark, seen=first.seen, overlap=timedelta(0), schema=schema
    )
    assert second.result.judgments["value"].to_list() == [5.0]


def test_a_database_without_migration_9_is_read_as_categorical_and_says_so(postgres_dsn):
    schema = "kind_answers_absent"
    migrated_before(postgres_dsn, 9, schema=schema)
    assert not has_kind_answers(postgres_dsn, schema=schema)
    _run(
        postgres_dsn,
        schema,
        (
            "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, "
            "submitted_at) VALUES ('j1', 't1', 'p', 'a1', 'cat', %s)",
            (WHEN,),
        ),
    )
    extract = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    assert not extract.kind_answers
    assert extract.result.judgments["kind"].to_list() == ["categorical"]
    assert 9 in OPTIONAL_MIGRATIONS
    apply_schema(postgres_dsn, schema=schema)
    assert has_kind_answers(postgres_dsn, schema=schema)


def _skipped(dsn: str) -> list[int]:
    return [skipped.version for skipped in apply_schema(dsn)]


def test_each_owner_applies_its_own_step_when_the_pipelines_role_owns_the_tombstones():
    """The pipelines' role granted TRIGGER applied migration 6 itself and owns the tombstone
    tables, whose gold label an older release made NOT NULL; the tool's owner owns `judgments`
    and `gold_labels`. Neither could apply the columns and the tombstones' change as one
    migration; as two, each applies its own (9 waits for 8), and the tool then deletes a kind
    gold label, whose tombstone has no label."""
    with (
        fresh_database("kind_answers_roles") as database,
        tool_and_pipelines_roles(database) as (tool, pipelines),
    ):
        owner = f"postgresql://postgres@127.0.0.1:5432/{database}"
        role = pipelines.split("//")[1].split("@")[0]
        tool_role = tool.split("//")[1].split("@")[0]
        with psycopg.connect(owner, autocommit=True) as connection:
            connection.execute(f"GRANT TRIGGER ON judgments, gold_labels TO {role}")
            connection.execute(f"GRANT INSERT ON annotation_pipelines_migrations TO {tool_role}")
            # `apply_schema` creates its schema if need be, which asks for this even when it is
            # there.
            connection.execute(f'GRANT CREATE ON DATABASE "{database}" TO {tool_role}')
        # 6 and 8 are its own; 9 and 10 change the tool's tables.
        assert _skipped(pipelines) == [9, 10]
        with psycopg.connect(pipelines, autocommit=True) as connection:
            connection.execute("ALTER TABLE gold_label_deletions ALTER COLUMN label SET NOT NULL")
            connection.execute("DELETE FROM annotation_pipelines_migrations WHERE version = 8")

        skipped = apply_schema(tool)
        assert [(s.version, s.locked) for s in skipped] == [(8, False), (9, False), (10, False)]
        assert "must be owner of table gold_label_deletions" in skipped[0].cause
        assert "as the owner of gold_label_deletions" in skipped[0].message()
        assert "apply migration 8 first" in skipped[1].cause
        assert not has_kind_answers(pipelines)

        assert _skipped(pipelines) == [9, 10]  # its own step, 8
        # Then the tool owner's, 9; `projects` (10) is the database owner's here.
        assert _skipped(tool) == [10]
        assert has_kind_answers(pipelines)
        _run(tool, "public", (GOLD, ("t1", None, "numeric", "3")))
        _run(tool, "public", ("DELETE FROM gold_labels WHERE task_id = 't1'", ()))
        extract = extract_since(pipelines, since=EPOCH, until=datetime.now(UTC))
        assert extract.kind_answers
        assert extract.gold_deletions["task_id"].to_list() == ["t1"]


def test_a_kind_or_answer_column_the_tool_already_has_is_refused_not_reinterpreted(postgres_dsn):
    schema = "kind_answers_taken"
    migrated_before(postgres_dsn, 9, schema=schema)
    _run(postgres_dsn, schema, ("ALTER TABLE judgments ADD COLUMN answer text", ()))
    [skipped] = apply_schema(postgres_dsn, schema=schema)
    assert skipped.version == 9 and "judgments.answer exists already" in skipped.cause
    assert not has_kind_answers(postgres_dsn, schema=schema)
    _run(
        postgres_dsn,
        schema,
        (
            "INSERT INTO judgments (judgment_id, task_id, project, annotator_id, label, "
            "submitted_at, answer) VALUES ('j1', 't1', 'p', 'a1', 'cat', %s, 'free text')",
            (WHEN,),
        ),
    )
    extract = extract_since(postgres_dsn, since=EPOCH, schema=schema)
    assert extract.result.judgments["label"].to_list() == ["cat"] and not extract.kind_answers


def test_every_migration_file_run_twice_in_order_changes_nothing(postgres_dsn):
    schema = "kind_answers_twice"
    with psycopg.connect(postgres_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        connection.execute(f"SET search_path TO {schema}")
        for _ in range(2):
            for _, path in migration_files():
                connection.execute(path.read_text())
    assert apply_schema(postgres_dsn, schema=schema) == []
    assert has_kind_answers(postgres_dsn, schema=schema)


# What a judgment or gold label of any kind holds: its kind, its value and where boxes are
# measured. `polygons` and `control` have no place in the DB's row.
KIND_VALUES = ["kind", *(c for c in KIND_COLUMNS if c not in ("kind", "polygons", "control"))]


def _values(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    columns = [key, "label", *KIND_VALUES]
    return (
        frame.select(columns)
        .with_columns(pl.col("kind").fill_null("categorical"))
        .sort(key)
        .cast({name: KIND_COLUMNS.get(name, pl.String()) for name in columns})
    )


def test_a_seeded_kinds_workload_reads_back_with_the_same_values_in_every_read_method(
    postgres_dsn, tmp_path
):
    schema = "kind_answers_seeded"
    summary = generate_workload(
        tmp_path,
        judgments=150,
        start=date(2026, 11, 2),
        days=1,
        seed=4,
        kinds=True,
        judgments_per_kind=300,
    )
    judgments, tasks, gold = (
        pl.read_parquet(tmp_path / table / "**" / "*.parquet")
        for table in ("judgments", "tasks", "gold_labels")
    )
    assert set(judgments["kind"].fill_null("categorical")) == set(KINDS)
    assert set(gold["kind"].fill_null("categorical")) == set(KINDS)
    counts = seed_database(postgres_dsn, judgments=judgments, tasks=tasks, gold=gold, schema=schema)
    assert (counts["judgments"], counts["gold_labels"]) == (summary.judgments, gold.height)
    for method in ("adbc", "copy", "fetch"):
        extract = extract_since(postgres_dsn, since=EPOCH, schema=schema, method=method)
        assert extract.result.quarantine.height == 0, extract.result.quarantine.to_dicts()
        read = extract.result
        assert_frame_equal(
            _values(read.judgments, "judgment_id"), _values(judgments, "judgment_id")
        )
        assert_frame_equal(_values(read.gold, "task_id"), _values(gold, "task_id"))


def test_seeding_refuses_what_an_answer_cannot_hold(postgres_dsn):
    row = {
        "judgment_id": "j1",
        "task_id": "t1",
        "project": "p",
        "annotator_id": "a1",
        "label": None,
        "submitted_at": WHEN,
        "duration_s": 1.0,
    }
    polygons = pl.DataFrame(
        [{**row, "kind": "boxes", "boxes": [], "polygons": [{"label": "x", "points": []}]}],
        schema_overrides={"polygons": KIND_COLUMNS["polygons"], "boxes": KIND_COLUMNS["boxes"]},
    )
    with pytest.raises(
        ValueError, match=r"judgments: row judgment_id='j1' \(boxes\) has `polygons`"
    ):
        seed_database(postgres_dsn, judgments=polygons, schema="kind_answers_refused")
    # An empty outline list is no outline: nothing is lost.
    outlines = polygons.with_columns(pl.lit([], KIND_COLUMNS["polygons"]).alias("polygons"))
    assert (
        seed_database(postgres_dsn, judgments=outlines, schema="kind_answers_outlines")["judgments"]
        == 1
    )
    nan = pl.DataFrame([{**row, "kind": "numeric", "value": float("nan")}])
    with pytest.raises(ValueError, match=r"judgment_id='j1' \(numeric\): a value is not a finite"):
        seed_database(postgres_dsn, judgments=nan, schema="kind_answers_refused")
    unknown = pl.DataFrame([{**row, "kind": "sentiment"}])
    with pytest.raises(ValueError, match="has kind 'sentiment'; expected one of"):
        seed_database(postgres_dsn, judgments=unknown, schema="kind_answers_refused")


def test_a_number_equal_to_a_label_of_its_projects_set_is_spelled_as_the_set_spells_it(
    postgres_dsn,
):
    # A tool that wrote a class code as "1.0" against a label set of {1,2}: the label is
    # the set's "1", as from a file; "1.5" is still unknown_label.
    schema = "kind_answers_numeric_labels"
    apply_schema(postgres_dsn, schema=schema)
    _run(
        postgres_dsn,
        schema,
        ("INSERT INTO projects (project, label_set) VALUES ('p', '{1,2}')", ()),
        ("INSERT INTO projects (project, label_set) VALUES ('q', '{cat}')", ()),
        (INSERT, ("c1", "t1", "a1", "1.0", None, None, WHEN)),
        (INSERT, ("c2", "t2", "a1", "1.5", None, None, WHEN)),
        _judgment("m1", "multilabel", [2.0, 1]),
        (INSERT.replace("'p'", "'q'"), ("q1", "tq", "a1", "cat", None, None, WHEN)),
    )
    for method in ("adbc", "copy", "fetch"):
        extract = extract_since(postgres_dsn, since=EPOCH, schema=schema, method=method)
        judged = extract.result.judgments.sort("judgment_id")
        assert judged.select("judgment_id", "label", "labels").rows() == [
            ("c1", "1", None),
            ("m1", None, ["2", "1"]),
            ("q1", "cat", None),
        ], method
        (bad,) = extract.result.quarantine.to_dicts()
        assert (bad["reason"], bad["field"]) == ("unknown_label", "label"), method
