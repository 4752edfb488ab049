"""Reading a report page back in tests: its sections, tables, images and ids, and its embedded PNGs."""
from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import numpy as np
import pandas as pd
from matplotlib import image as mpimg


class Page(HTMLParser):
    """Sections, tables (by id, as lists of cell texts), image sources and tags of a report."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.tags: set[str] = set()
        self.ids: dict[str, str] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._id_text: tuple[str, list[str]] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "section":
            self.sections.append(attrs["id"])
        elif tag == "table":
            self._table = attrs["id"]
            self.tables[self._table] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(attrs["src"])
        if "id" in attrs and tag not in ("section", "table"):
            self._id_text = (attrs["id"], [])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        if self._id_text is not None and tag != "section":
            self.ids[self._id_text[0]] = "".join(self._id_text[1])
            self._id_text = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._id_text is not None:
            self._id_text[1].append(data)

    def table(self, table_id: str) -> pd.DataFrame:
        """A table as strings, first column as the index."""
        rows = self.tables[table_id]
        frame = pd.DataFrame(rows[1:], columns=rows[0])
        return frame.set_index(rows[0][0])


def decode_png(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return mpimg.imread(io.BytesIO(base64.b64decode(uri.split(",", 1)[1], validate=True)), format="png")
