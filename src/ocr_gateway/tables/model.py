"""A table's one shape, shared by the worker, the result message, `pages.tables` and the
workbook: `{"bbox": [x0, y0, x1, y1], "rows": [[{"text", "row_span", "col_span"}]]}`.

Coordinates are the page PNG's pixels, like OCR boxes. Rows are top to bottom; each row lists,
left to right, the cells that START in it, as in an HTML table: a cell spanning two rows is
listed once, in its top row, with `row_span: 2`, and the row below omits it. `positions()`
turns that back into grid coordinates (what an XLSX merge needs).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pydantic import BaseModel, ConfigDict, Field


class TableCell(BaseModel):
    """One cell; `text` has the cell's lines joined by newlines ("" for an empty cell)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    text: str = ""
    row_span: int = Field(default=1, ge=1)
    col_span: int = Field(default=1, ge=1)


class Table(BaseModel):
    """A table on a page: its bounding box in PNG pixels, and its rows of cells."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    bbox: tuple[float, float, float, float]
    rows: list[list[TableCell]]

    def positions(self) -> Iterator[tuple[int, int, TableCell]]:
        """Each cell with its 0-based (row, column) in the grid, spans taken into account."""
        taken: set[tuple[int, int]] = set()
        for row_index, row in enumerate(self.rows):
            column = 0
            for cell in row:
                while (row_index, column) in taken:
                    column += 1
                yield row_index, column, cell
                for dr in range(cell.row_span):
                    for dc in range(cell.col_span):
                        taken.add((row_index + dr, column + dc))
                column += cell.col_span

    def grid(self) -> list[list[str]]:
        """The table as a full rectangle of strings: a merged cell's text in its top-left
        position, "" in the positions it covers."""
        placed = list(self.positions())
        height = max((r + cell.row_span for r, _, cell in placed), default=0)
        width = max((c + cell.col_span for _, c, cell in placed), default=0)
        out = [[""] * width for _ in range(height)]
        for r, c, cell in placed:
            out[r][c] = cell.text
        return out


def from_grid(
    bbox: tuple[float, float, float, float], grid: Sequence[Sequence[tuple[object, str]]]
) -> Table:
    """A table from a full grid where each position holds `(cell_key, text)`: neighbouring
    positions with the same key are one merged cell (how img2table reports spans)."""
    height = len(grid)
    rows: list[list[TableCell]] = []
    for r, line in enumerate(grid):
        row: list[TableCell] = []
        for c, (key, text) in enumerate(line):
            if c > 0 and line[c - 1][0] == key:
                continue  # covered from the left
            if r > 0 and c < len(grid[r - 1]) and grid[r - 1][c][0] == key:
                continue  # covered from above
            col_span = 1
            while c + col_span < len(line) and line[c + col_span][0] == key:
                col_span += 1
            row_span = 1
            while (
                r + row_span < height
                and c < len(grid[r + row_span])
                and grid[r + row_span][c][0] == key
            ):
                row_span += 1
            row.append(TableCell(text=text, row_span=row_span, col_span=col_span))
        rows.append(row)
    x0, y0, x1, y1 = (round(v, 1) for v in bbox)
    return Table(bbox=(x0, y0, x1, y1), rows=rows)
