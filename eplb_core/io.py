"""Load matrices in and out of text files: CSV with one row per layer, one column per expert.

``read_csv_matrix`` accepts what spreadsheets and pandas write: an optional header row, an
optional leading label column, comma, semicolon or tab as the delimiter, blank lines anywhere.
Every error names the row and column as a spreadsheet shows them (1-based, counting the header,
the label column and blank lines), so the user can find the cell.

``read_loads`` also reads JSON and ``.pt`` files (SGLang's expert distribution dump), one
window or a time series; ``read_placement`` reads the placement in use; ``map_to_json``,
``map_to_pt`` and ``plan_to_json`` write the files engines load.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Sequence
from io import BytesIO
from pathlib import PurePath

import torch

from .errors import LoadFormatError

FLOAT32_MAX = float(torch.finfo(torch.float32).max)

# Tab first, then semicolon: a semicolon file may use the comma as its decimal mark.
_DELIMITERS = ("\t", ";", ",")
# A header's first cell that names the label column ("layer", "Layer id", "label", "#").
_LABEL_HEADER = re.compile(r"^\s*(layers?|labels?|names?|#)\b", re.IGNORECASE)


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
    if all(cell and not _is_number(cell) for cell in rest):
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


# --- Engine files: JSON and .pt loads (SGLang's expert distribution dump), placements, exports.

LOGICAL_COUNT = "logical_count"  # SGLang's recorder dump and --init-expert-location key
PHYSICAL_TO_LOGICAL_MAP = "physical_to_logical_map"  # SGLang's placement key
PLACEMENT_KEYS = ("phy2log", PHYSICAL_TO_LOGICAL_MAP)
_LOADS_SHAPES = "[layers, experts] (one window) or [steps, layers, experts] (a time series)"


def read_loads(data: bytes, filename: str = "") -> torch.Tensor:
    """Read a load file: CSV, JSON or ``.pt`` (by the file name's suffix, else by its content).

    JSON holds a nested list or an object with a ``logical_count`` key; ``.pt`` holds a tensor
    or a dict with ``logical_count`` (SGLang's expert distribution dump), read with
    ``torch.load(weights_only=True)``. Returns loads >= 0 as a float tensor, 2-D
    ``[layers, experts]`` (one window) or 3-D ``[steps, layers, experts]`` (a time series):
    float32 from CSV, float64 from JSON and ``.pt`` (exact for integer counts).

    Raises ``LoadFormatError`` saying what was found and what is expected.
    """
    kind = _file_kind(data, filename)
    if kind == "csv":
        return read_csv_matrix(_text(data))
    loads = _read_structured(data, kind, (LOGICAL_COUNT,), _LOADS_SHAPES)
    _check_loads(loads)
    return loads.double()


def read_placement(data: bytes, filename: str = "") -> torch.Tensor:
    """Read a placement in use, phy2log ``[layers, slots]`` of expert ids, as int64.

    CSV (one row per layer), JSON (a nested list, or an object with a ``phy2log`` or
    ``physical_to_logical_map`` key) or ``.pt`` (a tensor, or a dict with one of those keys, as
    ``map_to_pt`` writes). Only the form is checked here; ``migration.validate_placement``
    checks it against a plan's shape.
    """
    kind = _file_kind(data, filename)
    if kind == "csv":
        placement = read_csv_matrix(_text(data))
    else:
        placement = _read_structured(data, kind, PLACEMENT_KEYS, "[layers, slots] of expert ids")
    if placement.dim() != 2 or placement.numel() == 0:
        raise LoadFormatError(f"found shape {list(placement.shape)}; a placement is 2-D "
                              f"[layers, slots] and not empty")
    if placement.is_floating_point() and not bool((placement == placement.round()).all()):
        raise LoadFormatError("found fractions; a placement holds whole expert ids")
    return placement.long()


def map_to_json(phy2log: torch.Tensor) -> str:
    """``{"physical_to_logical_map": [[...]]}``, the JSON SGLang's --init-expert-location reads."""
    return json.dumps({PHYSICAL_TO_LOGICAL_MAP: phy2log.tolist()})


def map_to_pt(phy2log: torch.Tensor) -> bytes:
    """The same map as ``torch.save`` bytes: a dict with one int64 [layers, slots] tensor."""
    buffer = BytesIO()
    torch.save({PHYSICAL_TO_LOGICAL_MAP: phy2log.detach().to("cpu", torch.int64).contiguous()},
               buffer)
    return buffer.getvalue()


def plan_to_json(phy2log: torch.Tensor, log2phy: torch.Tensor, logcnt: torch.Tensor) -> str:
    """The full plan as JSON: ``phy2log``, ``log2phy`` (padded with -1) and ``logcnt``."""
    return json.dumps({"phy2log": phy2log.tolist(), "log2phy": log2phy.tolist(),
                       "logcnt": logcnt.tolist()})


def _file_kind(data: bytes, filename: str) -> str:
    """"pt", "json" or "csv": by the file name's suffix, else by the first bytes."""
    suffix = PurePath(filename).suffix.lower()
    if suffix in (".pt", ".pth"):
        return "pt"
    if suffix == ".json":
        return "json"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    if data.startswith(b"PK\x03\x04") or data.startswith(b"\x80"):  # torch.save zip / pickle
        return "pt"
    return "json" if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{") else "csv"


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LoadFormatError(f"the file is not UTF-8 text (byte {error.start} is "
                              f"{data[error.start]:#04x}); expected CSV, JSON or a .pt file "
                              f"(name it .pt)") from None


def _read_json(data: bytes) -> object:
    try:
        return json.loads(_text(data).lstrip("\ufeff"))
    except json.JSONDecodeError as error:
        raise LoadFormatError(f"the file is not valid JSON: {error}") from None


def _read_pt(data: bytes) -> object:
    """``torch.load(weights_only=True)`` on CPU; its refusals become ``LoadFormatError``."""
    try:
        return torch.load(BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # a foreign or truncated file fails in many ways inside torch
        text = str(error)
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if refused:
            raise LoadFormatError(f"the .pt file holds a pickled {refused.group(1)}, not a tensor; "
                                  f"expected tensors, or dicts and lists of them, that "
                                  f"torch.load(weights_only=True) accepts") from None
        inner = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        reason = inner.group(1) if inner else text.split(". ")[0] or type(error).__name__
        raise LoadFormatError(f"the file is not a .pt file torch.save wrote ({reason})") from None


def _read_structured(data: bytes, kind: str, keys: tuple[str, ...], shapes: str) -> torch.Tensor:
    """The array in a JSON or ``.pt`` file: the whole content, or the value of the first of
    ``keys`` in a dict. ``shapes`` says what the array should be, for the errors."""
    if kind == "json":
        found, whole, mapping = _read_json(data), "a nested list", "an object"
    else:
        found, whole, mapping = _read_pt(data), "a tensor", "a dict"
    key_names = " or ".join(repr(key) for key in keys)
    expected = f"expected {whole} {shapes}, or {mapping} with a {key_names} key holding one"
    if isinstance(found, dict):
        key = next((key for key in keys if key in found), None)
        if key is None:
            names = ", ".join(repr(str(name)) for name in found) or "no keys"
            raise LoadFormatError(f"found {mapping} with keys {names}; {expected}")
        found = found[key]
    if isinstance(found, torch.Tensor):
        tensor = found
    elif isinstance(found, list):
        try:
            tensor = torch.tensor(found, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as error:
            raise LoadFormatError(f"found a list that is not a rectangular array of numbers "
                                  f"({error}); {expected}") from None
    else:
        raise LoadFormatError(f"found a value of type {type(found).__name__}; {expected}")
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise LoadFormatError(f"found a {tensor.dtype} tensor; expected numbers")
    return tensor


def _check_loads(loads: torch.Tensor) -> None:
    """Loads are 2-D or 3-D, not empty, finite and >= 0."""
    if loads.dim() not in (2, 3):
        raise LoadFormatError(f"found a {loads.dim()}-D array of shape {list(loads.shape)}; "
                              f"expected 2-D [layers, experts] (one window) or 3-D "
                              f"[steps, layers, experts] (a time series)")
    if loads.numel() == 0:
        raise LoadFormatError(f"found an empty array of shape {list(loads.shape)}")
    if loads.is_floating_point() and not bool(torch.isfinite(loads).all()):
        raise LoadFormatError("found NaN or infinite loads; loads are token counts >= 0")
    if bool((loads < 0).any()):
        index = [int(i) for i in (loads < 0).nonzero()[0]]
        raise LoadFormatError(f"found a negative load ({float(loads[tuple(index)]):g} at index "
                              f"{index}); loads are token counts >= 0")
