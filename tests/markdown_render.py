"""Markdown as a GitHub-flavoured renderer shows it: the cells of its tables and the elements
the viewer's browser would act on (images it fetches, links, raw HTML)."""

from __future__ import annotations

from html.parser import HTMLParser

from markdown_it import MarkdownIt

# CommonMark with GFM's tables and strikethrough: what the Dagster UI (react-markdown with
# remark-gfm) and GitHub render.
_RENDERER = MarkdownIt("commonmark").enable(["table", "strikethrough"])


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
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def rendered(markdown: str) -> tuple[list[list[list[str]]], list[str]]:
    """(every table as rows of cell texts, the tags other than text structure: `img`, `a`,
    `em`, `script`, ...) of `markdown` rendered."""
    parser = _Rendered()
    parser.feed(_RENDERER.render(markdown))
    return parser.tables, parser.elements
