"""Load matrices in and out of text files: CSV with one row per layer, one column per expert.

``read_csv_matrix`` accepts what spreadsheets and pandas write: an optional header row, an
optional leading label column, comma, semicolon or tab as the delimiter, blank lines anywhere.
Every error names the row and column as a spreadsheet shows them (1-based, counting the header,
the label column and blank lines), so the user can find the cell.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence

import torch

FLOAT32_MAX = float(torch.finfo(torch.float32).max)

# Tab first, then semicolon: a semicolon file may use the comma as its decimal mark.
_DELIMITERS = ("\t", ";", ",")
# A header's first cell that names the label column ("layer", "Layer id", "label", "#").
_LABEL_HEADER = re.compile(r"^\s*(layers?|labels?|names?|#)\b", re.IGNORECASE)


class LoadFormatError(ValueError):
    """A load file that cannot be read as a [layers, experts] matrix of token counts."""


def read_csv_matrix(text: str) -> torch.Tensor:
    """Parse CSV text into a [layers, experts] float32 tensor of non-negative finite loads.

    The first row is a header when it holds no load: every cell after its first is text, or its
    first cell is empty or names a label column ("layer", "label", "name", "#") and the others
    are the expert numbers 0..E-1 or 1..E. The first column holds labels when a data row starts
    with text, or when the header's first cell is empty or names it; pandas' ``to_csv`` with its
    index is read that way.

    Raises ``LoadFormatError`` naming the row and column of the first bad cell.
    """
    lines = [(number, line) for number, line in enumerate(text.lstrip("\ufeff").splitlines(), 1)
             if line.strip()]
    if not lines:
        raise LoadFormatError("the file is empty: it has no rows")
    delimiter = _sniff_delimiter(lines[0][1])
    rows = [(number, [cell.strip() for cell in next(csv.reader([line], delimiter=delimiter))])
            for number, line in lines]

    header = rows[0][1] if _is_header(rows[0][1]) else None
    data = rows[1:] if header is not None else rows
    if not data:
        raise LoadFormatError(f"the file has a header row (row {rows[0][0]}) but no data rows")
    width = len(rows[0][1])
    for number, cells in rows[1:]:
        if len(cells) != width:
            raise LoadFormatError(f"row {number} has {_columns(len(cells))}, expected "
                                  f"{width} like row {rows[0][0]}")

    first = 1 if _has_label_column(header, data) else 0
    if first == width:
        raise LoadFormatError("the file has a label column but no expert columns")
    values = [[_parse_load(cell, number, column)
               for column, cell in enumerate(cells[first:], first + 1)]
              for number, cells in data]
    return torch.tensor(values, dtype=torch.float32)


def format_csv_matrix(matrix: torch.Tensor | Sequence[Sequence[float]]) -> str:
    """Write a [layers, experts] matrix as CSV: comma-separated, no header, one line per layer.

    Whole numbers are written as integers; other values with enough digits that
    ``read_csv_matrix`` gives back the same float32 (float64 for float64 input).
    """
    matrix = torch.as_tensor(matrix)
    if matrix.dim() != 2:
        raise ValueError(f"a load matrix is 2-D [layers, experts], got shape {list(matrix.shape)}")
    digits = ".17g" if matrix.dtype == torch.float64 else ".9g"
    return "".join(",".join(_format_number(value, digits) for value in row) + "\n"
                   for row in matrix.tolist())


def _format_number(value: float, digits: str) -> str:
    """An integer when the value is whole, else a round-tripping decimal."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return format(value, digits) if isinstance(value, float) else str(value)


def _columns(count: int) -> str:
    return f"{count} column" if count == 1 else f"{count} columns"


def _sniff_delimiter(line: str) -> str:
    """The first of tab, semicolon and comma that the line uses; comma when it has none."""
    return next((candidate for candidate in _DELIMITERS if candidate in line), ",")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_header(cells: list[str]) -> bool:
    """No load in the row: text after the first cell, or a label header then expert numbers."""
    rest = cells[1:] if len(cells) > 1 else cells
    if not any(_is_number(cell) for cell in rest):
        return True
    if not _names_label_column(cells[0]) or not all(cell.isdigit() for cell in rest):
        return False
    start = int(rest[0])
    return start in (0, 1) and [int(cell) for cell in rest] == list(range(start, start + len(rest)))


def _has_label_column(header: list[str] | None, data: list[tuple[int, list[str]]]) -> bool:
    """The first column is labels: a data row starts with text, or the header says so."""
    if any(cells[0] and not _is_number(cells[0]) for _, cells in data):
        return True
    return header is not None and len(header) > 1 and _names_label_column(header[0])


def _names_label_column(cell: str) -> bool:
    """A header cell over a label column: empty, or "layer", "label", "name", "#"."""
    return not cell or bool(_LABEL_HEADER.match(cell))


def _parse_load(cell: str, row: int, column: int) -> float:
    """One token count: a finite number >= 0 that fits a float32."""
    where = f"row {row}, column {column}"
    if not cell:
        raise LoadFormatError(f"{where}: the cell is empty")
    try:
        value = float(cell)
    except ValueError:
        raise LoadFormatError(f"{where}: {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise LoadFormatError(f"{where}: {cell!r} is not a finite number")
    if value < 0:
        raise LoadFormatError(f"{where}: {cell!r} is negative; loads are token counts >= 0")
    if value > FLOAT32_MAX:
        raise LoadFormatError(f"{where}: {cell!r} is too large for a float32 load")
    return value
