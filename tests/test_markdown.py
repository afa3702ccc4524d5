"""Frames as the markdown tables the Dagster UI shows in metadata."""

import polars as pl
from markdown_it import MarkdownIt

from annotation_pipelines.markdown import WORD_JOINER, frame_to_markdown
from tests.markdown_render import rendered


def _cells(markdown: str) -> list[list[str]]:
    rows = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def test_a_table_reads_like_a_report_not_a_dump():
    reason = "needs 331.8 annotator-hours/week to meet the 3-day SLA, staffed 310.7; " * 2
    frame = pl.DataFrame(
        {
            "project": ["intent", "tags"],
            "scenario_cost_usd": [3_933_264.2584, None],
            "backlog": [13_636, 0],
            "risk_reason": [reason.strip(), None],
        }
    )
    header, _, intent, tags = _cells(frame_to_markdown(frame))
    assert header == ["project", "scenario_cost_usd", "backlog", "risk_reason"]
    # Thousands grouped; a reason in full (it is what the reader acts on); no "null".
    assert intent == ["intent", "3,933,264.2584", "13,636", reason.strip()]
    assert tags == ["tags", "—", "0", "—"]


def test_every_column_is_shown_and_hidden_rows_are_counted():
    wide = pl.DataFrame({f"column_{i}": [i] * 30 for i in range(30)})
    markdown = frame_to_markdown(wide, rows=10)
    header = _cells(markdown)[0]
    assert header == [f"column_{i}" for i in range(30)]
    assert len(_cells(markdown)) == 2 + 10
    assert markdown.rstrip().endswith("_20 more rows_")


# What annotators and export files can put in a label, an id or a file name.
HOSTILE = [
    "pos|neg",
    "line one\n| forged | row |",
    "![](https://e.vil/b.png)",
    "[click](https://e.vil)",
    "<img src=x onerror=alert(1)>",
    "*bold* _italic_ ~~gone~~ `code` a\\b &amp; <https://e.vil>",
    "null",
    "snake_case_name",
    "crlf\r\nand\rcr\u2028ls",
]


def test_a_cell_shows_its_text_whatever_the_text_holds():
    """A `|` split a row into extra cells, a line break forged a row, and links, images and
    HTML in a label rendered as such in the UI (an image fetched from anyone's host)."""
    frame = pl.DataFrame({"label": HOSTILE, "n": list(range(len(HOSTILE)))})
    [table], elements = rendered(frame_to_markdown(frame))
    assert table[0] == ["label", "n"]
    assert table[1:] == [[shown(text), str(n)] for n, text in enumerate(HOSTILE)]
    assert elements == []


def test_column_names_and_missing_values_are_text_too():
    frame = pl.DataFrame({"a|b": ["null", None], "[x](y)": [None, 1.5]})
    [table], elements = rendered(frame_to_markdown(frame))
    # A label "null" is the text null; only a missing value is a dash.
    assert table == [["a|b", "[x](y)"], ["null", "—"], ["—", "1.5000"]]
    assert elements == []


def test_long_text_is_cut_without_leaving_half_an_escape():
    frame = pl.DataFrame({"label": ["ab|cd" * 10, "x" * 9 + "|y"]})
    [table], _ = rendered(frame_to_markdown(frame, text_width=10))
    assert [row[0] for row in table[1:]] == ["ab|cdab|cd…", "x" * 9 + "|…"]


def test_list_and_struct_cells_are_text():
    frame = pl.DataFrame(
        {"spans": [[{"start": 0, "end": 4, "label": "P|ER\n| x |"}]], "labels": [["a|b", "[c]"]]}
    )
    [table], elements = rendered(frame_to_markdown(frame))
    assert len(table) == 2 and len(table[1]) == 2
    # Nested values as JSON, whose strings show a line break as \n.
    assert table[1][0] == '[{"start": 0, "end": 4, "label": "P|ER\\n| x |"}]'
    assert table[1][1] == '["a|b", "[c]"]'
    assert elements == []


def shown(text: str) -> str:
    """A cell's text as the table shows it: each line break as one ↵."""
    for brk in ("\r\n", "\r", "\n", "\u2028"):
        text = text.replace(brk, "↵")
    return text


def test_a_chart_name_is_its_alt_text_not_markup():
    """Charts are named after clusters, which telemetry names: a `]` closed the alt text and
    the rest of the name added an image from anyone's host."""
    from assets.common.metadata import png_markdown

    name = "earth](https://e.vil/beacon.png) ![x"
    markdown = png_markdown(b"\x89PNG", alt=name).value
    html = MarkdownIt("commonmark").render(markdown)
    assert html.count("<img") == 1 and "e.vil" not in html.split('alt="', 1)[0]
    assert 'src="data:image/png;base64,' in html


# Addresses a GFM renderer links with no markup around them (autolink literals).
ADDRESSES = [
    "https://e.vil/x",
    "[t](http://e.vil)",
    "see www.e.vil.",
    "a.b+c@e.vil",
    "mailto:a@e.vil",
    "xmpp:a@e.vil/r",
    "ftp://e.vil/f",
]


def test_a_bare_address_in_a_cell_is_text_not_a_link():
    """Escaping kept `[t](http://h)` from being a link, but GFM's autolink literals (remark-gfm
    in the Dagster UI, cmark-gfm on GitHub) still made a link the viewer could click of the
    address, and of any bare `https://…`, `www.…` or email address."""
    for text in ADDRESSES:
        frame = pl.DataFrame({"label": [text]})
        markdown = frame_to_markdown(frame)
        # The cell as escaping alone wrote it: the renderer links it.
        _, elements = rendered(markdown.replace(WORD_JOINER, ""))
        assert elements == ["a"], text
        [table], elements = rendered(markdown)
        assert elements == [], text
        assert table == [["label"], [text]]


def test_a_location_no_renderer_links_is_left_to_copy():
    # A snapshot's location is copied from the table into a shell: no joiner in it.
    for location in ("s3://lake/datasets/p/v1", "file:///data/lake/datasets/p/v1", "gs://b/x"):
        assert WORD_JOINER not in frame_to_markdown(pl.DataFrame({"location": [location]}))
    assert WORD_JOINER in frame_to_markdown(pl.DataFrame({"location": ["HTTPS://e.vil"]}))


def test_a_cell_formatter_writes_every_cell_and_the_rest_of_the_table_stays():
    frame = pl.DataFrame({"a|b": [1, 2, 3], "c": [None, "x", "y"]})
    table = frame_to_markdown(frame, rows=2, cell=lambda value: f"<{value}>")
    assert table.splitlines() == [
        "| a\\|b | c |",
        "|---|---|",
        "| <1> | <None> |",
        "| <2> | <x> |",
        "",
        "_1 more rows_",
    ]
