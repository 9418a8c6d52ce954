"""Tables as text: aligned columns for a terminal, or a markdown pipe table. The one formatter behind
predict's output, bench's results and the report's markdown. No torch, no pandas."""

from __future__ import annotations

from collections.abc import Sequence


def text_table(rows: Sequence[Sequence[object]], right: Sequence[int] = ()) -> str:
    """Rows (the first is the header) as space-aligned columns; columns listed in `right` right-aligned."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(cells[0]))]
    lines = []
    for row in cells:
        padded = [
            cell.rjust(width) if column in right else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def markdown_table(rows: Sequence[Sequence[object]], text_columns: int) -> str:
    """A pipe table from rows (the first is the header): the first `text_columns` left-aligned, the rest
    (numbers) right-aligned; pipes inside cells escaped."""
    header, *body = rows
    align = [":---" if index < text_columns else "---:" for index in range(len(header))]
    lines = [header, align, *body]
    return "\n".join("| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in lines)
