"""Markdown as a GitHub-flavoured renderer shows it: the cells of its tables and the elements
the viewer's browser would act on (images it fetches, links, raw HTML).

The renderer is GitHub's cmark-gfm with every GFM extension, autolink literals among them: the
Dagster UI (react-markdown with remark-gfm) makes links of the same bare addresses."""

from __future__ import annotations

from html.parser import HTMLParser

import cmarkgfm
from cmarkgfm.cmark import Options

from annotation_pipelines.markdown import WORD_JOINER


class _Rendered(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.elements: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag not in ("thead", "tbody", "p", "h1", "h2", "h3", "ul", "li", "code", "pre"):
            self.elements.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            # What the viewer reads: a browser draws no word joiner.
            self.tables[-1][-1].append("".join(self._cell).replace(WORD_JOINER, ""))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rendered(markdown: str) -> tuple[list[list[list[str]]], list[str]]:
    """(every table as rows of cell texts, the tags other than text structure: `img`, `a`,
    `em`, `script`, ...) of `markdown` rendered."""
    parser = _Rendered()
    # Raw HTML kept, so that any that got through shows as an element.
    html = cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)
    parser.feed(html)
    return parser.tables, parser.elements
