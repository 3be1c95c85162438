"""Load and placement files in and out: CSV, JSON and ``.pt`` (SGLang's expert distribution dumps).

Readers
-------
``read_load_file`` reads a load file and says what it found: the loads, 2-D ``[layers, experts]``
(one window) or 3-D ``[steps, layers, experts]`` (a time series), notes for the user, and the
placement in use when the file carries one. ``read_loads`` returns the loads alone,
``read_placement`` reads a placement phy2log ``[layers, slots]``, ``read_csv_matrix`` parses CSV
text. Every reader takes ``limits`` (``eplb_core.limits.Limits``) and checks the declared shape
against it (layers, experts or slots, numbers in all) before anything is materialised or
converted; a refusal is a ``LimitError`` naming the limit, or a ``LoadFormatError`` saying what was
found and what is expected.

CSV: one row per layer, one column per expert; comma, semicolon or tab; an optional header row;
blank lines anywhere. A leading label column is recognised only when it is unambiguous: the
header's first cell is empty or names it ("layer", "Layer id", "layer_idx", "label", "name", "#"),
or every data row starts with a label that begins with a letter (``L0``, ``layer_3``,
``model.layers.3.mlp``). Otherwise
the first column holds loads, and a cell that is not a number is an error naming its row and
column as a spreadsheet numbers them (1-based, counting the header and blank lines). Numbers are
written with ASCII digits and a point as the decimal mark; a thousands separator (``1,000``) or a
decimal comma (``1,5``) is refused with what to write instead, never guessed.

JSON is a nested list, or an object with a ``logical_count`` key. NaN, Infinity, numbers beyond
float64 (``1e400``, integers of thousands of digits) and nesting too deep to parse are refused.

``.pt`` files are read with ``torch.load(weights_only=True)`` after their zip directory is
checked: torch.save stores every entry uncompressed, so a compressed entry (which could inflate
far beyond the file) or sizes beyond the file are refused before loading, and so is torch's
legacy (pre-zip) format, whose storage sizes cannot be checked first. A tensor must be dense,
unquantized and hold integers (any width: exact below 2**53) or 16/32/64-bit floats; it is read
detached from autograd; its shape is checked before it is converted (a stride-0 view can declare
far more numbers than the file holds).

SGLang's expert distribution recorder
-------------------------------------
Verified in SGLang's source (github.com/sgl-project/sglang, as stored for this project):

* ``python/sglang/srt/eplb/expert_distribution.py`` (commit dd780ab9): in ``stat`` and
  ``stat_approx`` mode ``_StatAccumulator.dump`` writes, from rank 0 only,
  ``expert_distribution_recorder_{time}.pt`` holding ``{"rank", "logical_count",
  "average_utilization_rate_over_window"}``; ``logical_count`` is int32
  ``[buffer_size, num_layers, num_logical_experts]``, all-reduced over the ranks (the whole
  cluster's counts), one step per forward pass. The steps come from ``_CircularBuffer``: zeros
  until written; ``append`` writes at ``_curr_index`` and wraps; ``reset`` (after every dump)
  zeroes the buffer but keeps ``_curr_index``, so a later recording starts where the previous one
  stopped and may wrap before the buffer fills. The write position is not saved in the dump, so a
  full buffer's oldest step cannot be found; a buffer size of -1 selects ``_InfiniteBuffer``,
  which dumps only the written steps, in order. Every ``ModelRunner.forward`` appends a step,
  also one whose MoE layers run inside ``disable_this_region`` (speculative draft passes), so
  all-zero steps can also lie between busy ones.
* Same file: ``per_pass`` and ``per_token`` mode (``_DetailAccumulator``) write one file per rank,
  ``expert_distribution_recorder_{time}_{rank}.pt``, holding ``{"records": [...],
  "last_physical_to_logical_map": [num_layers, num_physical_experts]}`` (the map at the dump; the
  source notes it may change during recording). Each record is a dict with ``forward_pass_id``,
  ``rank`` and ``gatherer_key``; in ``per_pass`` mode ``global_physical_count``
  ``[num_layers, num_physical_experts]`` (this rank's share: the tokens it routed to each
  physical slot, or with DeepEP the tokens its own slots received, zeros elsewhere), in
  ``per_token`` mode ``topk_ids_of_layer`` int32 ``[num_layers, num_tokens, top_k]`` (physical ids
  after ``topk_ids_logical_to_physical``; -1 where no expert) with the batch's ``input_ids``,
  ``positions`` and more. Counts map to logical experts by adding each slot's count to the expert
  ``physical_to_logical_map`` names, as ``_convert_global_physical_count_to_logical_count`` does;
  ``python/sglang/srt/eplb/eplb_simulator/reader.py`` (``read_mode_per_pass``) sums the ranks'
  records of one ``forward_pass_id`` and orders the passes by id.
* ``python/sglang/srt/eplb/expert_location.py`` (commit 6270b014): ``num_layers`` is
  ``physical_to_logical_map.shape[0]``, the model's ``get_model_config_for_expert_location``
  ``num_layers``, which DeepseekV2/V3 (``python/sglang/srt/models/deepseek_v2.py``) set to
  ``config.num_hidden_layers``: 61 rows for DeepSeek-V3, indexed by ``layer_id``; its 3 dense
  layers never select experts, so their rows stay zero. ``--init-expert-location`` reads a
  ``.pt`` or ``.json`` dict with ``physical_to_logical_map`` or ``logical_count`` (2-D or 3-D).
* ``python/sglang/srt/server_args.py``: the buffer size defaults to
  ``eplb_rebalance_num_iterations`` when set, else 1,000 steps.

The readers keep all-zero layers and steps as they are (the planner leaves idle layers out of its
means; the replay trims idle steps at either end) and keep the steps in the file's order; the
notes say when the order may not be the time order.
"""

from __future__ import annotations

import csv
import json
import math
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO, StringIO
from pathlib import PurePath
from typing import Any

import torch

from .errors import LoadError, LoadFormatError
from .limits import NO_LIMITS, Limits

FLOAT32_MAX = float(torch.finfo(torch.float32).max)

LOGICAL_COUNT = "logical_count"  # SGLang's recorder dump and --init-expert-location key
PHYSICAL_TO_LOGICAL_MAP = "physical_to_logical_map"  # SGLang's placement key
LAST_PHYSICAL_TO_LOGICAL_MAP = "last_physical_to_logical_map"  # in SGLang's per-pass dumps
PLACEMENT_KEYS = ("phy2log", PHYSICAL_TO_LOGICAL_MAP, LAST_PHYSICAL_TO_LOGICAL_MAP)
RECORDS = "records"  # SGLang's per_pass / per_token dump
_PER_PASS_COUNT = "global_physical_count"
_PER_TOKEN_IDS = "topk_ids_of_layer"
_LOADS_SHAPES = "[layers, experts] (one window) or [steps, layers, experts] (a time series)"
_MAX_ID = 2**31 - 1  # expert ids a placement may hold


@dataclass(frozen=True)
class LoadFile:
    """What a load file holds.

    ``loads``: 2-D ``[layers, experts]`` or 3-D ``[steps, layers, experts]``, >= 0 and finite;
    float32 from CSV, float64 from JSON and ``.pt``. ``notes``: what the reader found worth
    telling the user. ``placement``: the placement in use that the file carries (SGLang's
    ``last_physical_to_logical_map``), int64 ``[layers, slots]``, else None.
    """

    loads: torch.Tensor
    notes: tuple[str, ...] = ()
    placement: torch.Tensor | None = None

    def in_use(self, given: torch.Tensor | None) -> tuple[torch.Tensor | None, tuple[str, ...]]:
        """The placement in use: ``given`` when there is one, else the one the file carries;
        and the notes to show with the figures (the file's, and where the placement came
        from)."""
        if given is not None or self.placement is None:
            return given, self.notes
        return self.placement, (
            *self.notes,
            "the placement in use is the one the dump carries (last_physical_to_logical_map)",
        )


def read_load_file(data: bytes, filename: str = "", *, limits: Limits | None = None) -> LoadFile:
    """Read a load file: CSV, JSON or ``.pt``, by the file name's suffix, else by its content.

    JSON holds a nested list or an object with a ``logical_count`` key; ``.pt`` holds a tensor,
    a dict with ``logical_count`` (SGLang's ``stat`` dump) or SGLang's ``per_pass`` /
    ``per_token`` dump (records counted per logical expert with the dump's
    ``last_physical_to_logical_map``, which becomes ``placement``).

    Raises ``LimitError`` when the declared shape is over ``limits`` (checked before the
    numbers are read), else ``LoadFormatError`` saying what was found and what is expected.
    """
    limits = limits or NO_LIMITS
    kind = _file_kind(data, filename)
    if kind == "csv":
        loads, notes = _read_csv(_text(data), limits, placement=False)
        return LoadFile(loads, notes)
    found = _read_json(data) if kind == "json" else _read_pt(data)
    if isinstance(found, dict) and RECORDS in found and LOGICAL_COUNT not in found:
        return _read_recorder_records(found, kind, len(data), limits)
    if isinstance(found, dict):
        _, value = _value_of(found, (LOGICAL_COUNT,), kind, _LOADS_SHAPES)
        loads = _loads_array(value, kind, limits)
        placement_key = next((key for key in PLACEMENT_KEYS if key in found), None)
        placement = (
            None
            if placement_key is None
            else _placement_array(found[placement_key], kind, limits, placement_key)
        )
        notes = _stat_dump_notes(loads) if "rank" in found and loads.dim() == 3 else ()
        return LoadFile(loads, notes, placement)
    if not isinstance(found, (torch.Tensor, list)):
        raise LoadFormatError(
            f"found a value of type {type(found).__name__}; "
            f"{_expected(kind, (LOGICAL_COUNT,), _LOADS_SHAPES)}"
        )
    return LoadFile(_loads_array(found, kind, limits))


def read_loads(data: bytes, filename: str = "", *, limits: Limits | None = None) -> torch.Tensor:
    """The loads of ``read_load_file``: 2-D ``[layers, experts]`` or 3-D
    ``[steps, layers, experts]``, float32 from CSV, float64 from JSON and ``.pt``."""
    return read_load_file(data, filename, limits=limits).loads


def read_placement(
    data: bytes, filename: str = "", *, limits: Limits | None = None
) -> torch.Tensor:
    """Read a placement in use, phy2log ``[layers, slots]`` of expert ids, as int64.

    CSV (one row per layer), JSON (a nested list, or an object with a ``phy2log``,
    ``physical_to_logical_map`` or ``last_physical_to_logical_map`` key) or ``.pt`` (a tensor, or
    a dict with one of those keys: ``map_to_pt``'s file, SGLang's per-pass dump). The ids must be
    whole numbers >= 0; ``migration.validate_placement`` checks them against a plan's shape.
    Layers are checked against ``limits.max_layers``, slots against ``limits.max_replicas``.
    """
    limits = limits or NO_LIMITS
    kind = _file_kind(data, filename)
    if kind == "csv":
        placement, _ = _read_csv(_text(data), limits, placement=True)
        return _placement_ids(placement)
    found = _read_json(data) if kind == "json" else _read_pt(data)
    if isinstance(found, dict):
        key, value = _value_of(found, PLACEMENT_KEYS, kind, _PLACEMENT_SHAPE)
        return _placement_array(value, kind, limits, key)
    return _placement_array(found, kind, limits, None)


def read_csv_matrix(text: str, *, limits: Limits | None = None) -> torch.Tensor:
    """Parse CSV text into a [layers, experts] float32 tensor of non-negative finite loads.

    The first row is a header when it holds no load: every cell after its first is text (not a
    number, nor a mistyped one), or its first cell is empty or names a label column ("layer",
    "Layer id", "label", "name", "#") and the others are the expert numbers 0..E-1 or 1..E.
    The first column holds labels when the header's first cell is empty or names it (pandas'
    ``to_csv`` with its index), or when every data row starts with a label beginning with a
    letter; otherwise it holds loads.

    Raises ``LoadFormatError`` naming the row and column of the first bad cell, ``LimitError``
    as soon as the rows or columns pass ``limits``.
    """
    return _read_csv(text, limits or NO_LIMITS, placement=False)[0]


def format_csv_matrix(matrix: torch.Tensor | Sequence[Sequence[float]]) -> str:
    """Write a [layers, experts] matrix as CSV: comma-separated, no header, one line per layer.

    Whole numbers are written as integers; other values with enough digits that
    ``read_csv_matrix`` gives back the same float32 (float64 for float64 input).
    """
    matrix = torch.as_tensor(matrix)
    if matrix.dim() != 2:
        raise LoadError(f"a load matrix is 2-D [layers, experts], got shape {list(matrix.shape)}")
    digits = ".17g" if matrix.dtype == torch.float64 else ".9g"
    return "".join(
        ",".join(_format_number(value, digits) for value in row) + "\n" for row in matrix.tolist()
    )


def map_to_json(phy2log: torch.Tensor) -> str:
    """``{"physical_to_logical_map": [[...]]}``, the JSON SGLang's --init-expert-location reads."""
    return json.dumps({PHYSICAL_TO_LOGICAL_MAP: phy2log.tolist()})


def map_to_pt(phy2log: torch.Tensor) -> bytes:
    """The same map as ``torch.save`` bytes: a dict with one int64 [layers, slots] tensor."""
    buffer = BytesIO()
    torch.save(
        {PHYSICAL_TO_LOGICAL_MAP: phy2log.detach().to("cpu", torch.int64).contiguous()}, buffer
    )
    return buffer.getvalue()


def plan_to_json(phy2log: torch.Tensor, log2phy: torch.Tensor, logcnt: torch.Tensor) -> str:
    """The full plan as JSON: ``phy2log``, ``log2phy`` (padded with -1) and ``logcnt``."""
    return json.dumps(
        {"phy2log": phy2log.tolist(), "log2phy": log2phy.tolist(), "logcnt": logcnt.tolist()}
    )


def _format_number(value: float, digits: str) -> str:
    """An integer when the value is whole, else a round-tripping decimal."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return format(value, digits) if isinstance(value, float) else str(value)


# --- CSV ------------------------------------------------------------------------------------

# Tab first, then semicolon: a semicolon file may use the comma as its decimal mark.
_DELIMITERS = ("\t", ";", ",")
_DELIMITER_NAMES = {"\t": "tabs", ";": "semicolons", ",": "commas"}
# A header's first cell that names the label column: "layer", "Layer id", "layer_idx", "label",
# "name", "#"; not "layer 3", a data row's label.
_LABEL_HEADER = re.compile(
    r"\s*(?:layers?|labels?|names?|#)(?:[\s_-]*(?:ids?|idx|index|no\.?|"
    r"numbers?|names?|#))?\s*",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_THOUSANDS = re.compile(
    r"[+-]?[0-9]{1,3}(?:([,' _\u00a0\u202f])[0-9]{3})(?:\1[0-9]{3})*"
    r"(?:\.[0-9]+)?"
)
_DECIMAL_COMMA = re.compile(r"[+-]?[0-9]*,[0-9]+")
_EXPERT_NUMBER = re.compile(r"[0-9]+")
_LABEL_HINT = (
    "; column 1 is read as loads: a label column needs a label starting with a "
    "letter (like L0) in every row, or a header row whose first cell is 'layer'"
)


def _read_csv(
    text: str,
    limits: Limits,
    *,
    placement: bool,
) -> tuple[torch.Tensor, tuple[str, ...]]:
    """CSV text -> ([rows, columns] float32, notes); ``placement`` reads expert ids.

    Two passes over the text: the first finds the header, the width and the label column and
    checks the row and column counts against ``limits``; the second converts the cells into a
    tensor allocated once at its final size.
    """
    columns_limit, columns_name = (
        ("max_replicas", "slots") if placement else ("max_experts", "experts")
    )
    rows = _csv_rows(text)
    first = next(rows, None)
    if first is None:
        raise LoadFormatError("the file is empty: it has no rows")
    first_number, first_cells = first
    width = len(first_cells)
    header = first_cells if _is_header(first_cells) else None
    labelled_by_header = header is not None and width > 1 and _names_label_column(header[0])

    data_rows = rows if header is not None else _chain_first(first, rows)
    first_cells_of_rows: list[str] = []
    for number, cells in data_rows:
        if len(cells) != width:
            raise LoadFormatError(
                f"row {number} has {_columns(len(cells))}, expected {width} like row {first_number}"
            )
        if not first_cells_of_rows:  # a label column is possible only if this row has a label
            has_labels = width > 1 and (labelled_by_header or _is_label(cells[0]))
            limits.check(columns_limit, width - has_labels, columns_name)
        first_cells_of_rows.append(cells[0])
        if limits.max_layers is not None and len(first_cells_of_rows) > limits.max_layers:
            limits.check("max_layers", len(first_cells_of_rows) + _count_rows(data_rows), "layers")
    num_rows = len(first_cells_of_rows)
    if num_rows == 0:
        raise LoadFormatError(f"the file has a header row (row {first_number}) but no data rows")

    labelled = labelled_by_header or all(map(_is_label, first_cells_of_rows))
    first_column = 1 if labelled else 0
    num_columns = width - first_column
    if num_columns == 0:
        raise LoadFormatError("the file has a label column but no expert columns")
    limits.check(
        "max_elements",
        num_rows * num_columns,
        f"numbers in the file ({num_rows:,} rows x {num_columns:,} columns)",
    )

    matrix = torch.empty(num_rows, num_columns, dtype=torch.float32)
    converted = _csv_rows(text)
    if header is not None:
        next(converted)
    label_hint = "" if labelled else _LABEL_HINT
    first_row_hint = "" if header is not None else _not_a_header(first_number, first_cells)
    for index, (number, cells) in enumerate(converted):
        hint = first_row_hint if index == 0 and first_row_hint else label_hint
        matrix[index] = torch.tensor(
            [
                _parse_cell(cell, number, column, placement, hint if column == 1 else "")
                for column, cell in enumerate(cells[first_column:], first_column + 1)
            ],
            dtype=torch.float64,
        )
    return matrix, _csv_notes(first_number, header, labelled, matrix, placement)


def _csv_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """(row number, stripped cells) of each non-blank line; the delimiter is the first line's.

    Lines end at \\n, \\r\\n or \\r, as spreadsheets count them."""
    delimiter = None
    for number, raw in enumerate(StringIO(text.removeprefix("\ufeff"), newline=None), 1):
        line = raw.rstrip("\n")
        if not line.strip():
            continue
        if delimiter is None:
            delimiter = next((mark for mark in _DELIMITERS if mark in line), ",")
        try:
            cells = next(csv.reader([line], delimiter=delimiter))
        except csv.Error as error:
            limit = csv.field_size_limit()
            if len(line) > limit and "field limit" in str(error):
                raise LoadFormatError(
                    f"row {number} has a cell of more than {limit:,} "
                    f"characters; a cell holds one number"
                ) from None
            raise LoadFormatError(
                f"row {number} cannot be read as CSV ({error}); expected "
                f"numbers separated by {_DELIMITER_NAMES[delimiter]}"
            ) from None
        yield number, [cell.strip() for cell in cells]


def _chain_first(
    first: tuple[int, list[str]],
    rest: Iterator[tuple[int, list[str]]],
) -> Iterator[tuple[int, list[str]]]:
    yield first
    yield from rest


def _count_rows(rows: Iterator[tuple[int, list[str]]]) -> int:
    """How many rows are left (to name the total in a limit error)."""
    return sum(1 for _ in rows)


def _columns(count: int) -> str:
    return f"{count} column" if count == 1 else f"{count} columns"


def _looks_numeric(cell: str) -> bool:
    """A number, or what a number becomes in another notation (1,5  1,000  NaN)."""
    return any(
        pattern.fullmatch(cell) for pattern in (_NUMBER, _NON_FINITE, _THOUSANDS, _DECIMAL_COMMA)
    )


def _is_header(cells: list[str]) -> bool:
    """No load in the row: text after the first cell, or a label header then expert numbers."""
    rest = cells[1:] if len(cells) > 1 else cells
    if all(map(_is_text, rest)):
        return True
    if not _names_label_column(cells[0]) or not all(map(_EXPERT_NUMBER.fullmatch, rest)):
        return False
    start = int(rest[0])
    return start in (0, 1) and [int(cell) for cell in rest] == list(range(start, start + len(rest)))


def _not_a_header(number: int, cells: list[str]) -> str:
    """Why a first row that starts like a label header ("layer") is read as data, or ""."""
    if len(cells) < 2 or not cells[0] or not _LABEL_HEADER.fullmatch(cells[0]):
        return ""
    start = 1 if cells[1] == "1" else 0
    column, cell = next(
        (
            (column, cell)
            for column, cell in enumerate(cells[1:], 2)
            if cell != str(start + column - 2)
        ),
        (0, ""),
    )
    return (
        (
            f"; row {number} is read as data, not as a header: its cell {_excerpt(cell)} in "
            f"column {column} is not the expert number {start + column - 2} (a header holds "
            f"text, or the expert numbers 0, 1, ... or 1, 2, ...)"
        )
        if column
        else ""
    )


def _is_text(cell: str) -> bool:
    """A header cell: text that is not a number, nor a mistyped one (5a, 1.234.567, 1,000)."""
    return bool(cell) and not _looks_numeric(cell) and not (cell[0].isdigit() or cell[0] in "+-.,")


def _names_label_column(cell: str) -> bool:
    """A header cell over a label column: empty, or "layer", "label", "name", "#"."""
    return not cell or bool(_LABEL_HEADER.fullmatch(cell))


def _is_label(cell: str) -> bool:
    """A row label: text starting with a letter or "_" (L0, layer_3, model.layers.3.mlp), not a
    mistyped number (5a, 79O, 1,000) nor NaN."""
    return bool(cell) and (cell[0].isalpha() or cell[0] == "_") and not _looks_numeric(cell)


def _parse_cell(cell: str, row: int, column: int, placement: bool, hint: str) -> float:
    """One CSV number: finite, >= 0, within float32. ``hint`` ends a "not a number" error."""
    where = f"row {row}, column {column}"
    if not cell:
        raise LoadFormatError(f"{where}: the cell is empty")
    if _NUMBER.fullmatch(cell):
        value = float(cell)
        if not math.isfinite(value) or value > FLOAT32_MAX:
            raise LoadFormatError(
                f"{where}: {cell!r} is too large for a float32 "
                f"{'expert id' if placement else 'load'}"
            )
        if value < 0:
            rule = "expert ids are >= 0" if placement else "loads are token counts >= 0"
            raise LoadFormatError(f"{where}: {cell!r} is negative; {rule}")
        return value
    if _NON_FINITE.fullmatch(cell):
        raise LoadFormatError(f"{where}: {cell!r} is not a finite number")
    if _THOUSANDS.fullmatch(cell):
        plain = re.sub(r"[^0-9.+-]", "", cell)
        if "," in cell and "." not in cell:
            raise LoadFormatError(
                f"{where}: {cell!r} has a comma in it: write {plain} if it "
                f"is a thousands separator, or {cell.replace(',', '.')} if it "
                f"is a decimal comma"
            )
        raise LoadFormatError(f"{where}: {cell!r} has a thousands separator; write {plain}")
    if _DECIMAL_COMMA.fullmatch(cell):
        raise LoadFormatError(
            f"{where}: {cell!r} has a decimal comma; write "
            f"{cell.replace(',', '.')} (a point as the decimal mark)"
        )
    raise LoadFormatError(f"{where}: {_excerpt(cell)} is not a number{hint}")


def _csv_notes(
    first_number: int,
    header: list[str] | None,
    labelled: bool,
    matrix: torch.Tensor,
    placement: bool,
) -> tuple[str, ...]:
    """What the CSV reader recognised: a header row, a label column, a row index read as data."""
    notes = []
    if header is not None:
        notes.append(f"row {first_number} read as a header")
    if labelled:
        notes.append("column 1 read as row labels")
    elif (
        not placement
        and matrix.shape[0] > 2
        and matrix.shape[1] > 1
        and torch.equal(matrix[:, 0], torch.arange(matrix.shape[0], dtype=matrix.dtype))
    ):
        notes.append(
            f"column 1 holds 0, 1, ..., {matrix.shape[0] - 1} and is read as the "
            f"loads of the first expert; if it is a row index (pandas' to_csv with "
            f"header=False), remove it or add a header row whose first cell is 'layer'"
        )
    return tuple(notes)


# --- JSON and .pt -----------------------------------------------------------------------------

_PLACEMENT_SHAPE = "[layers, slots] of expert ids"
# Dtypes read as counts: integers of any width convert to float64 exactly below 2**53; 8-bit and
# smaller floats (float8_*, float4) hold too few digits for counts and are refused.
_NUMBER_DTYPES = frozenset(
    {
        torch.uint8,
        torch.uint16,
        torch.uint32,
        torch.uint64,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
    }
)
_ZIP_MAGIC = b"PK\x03\x04"
_NOT_TORCH_SAVE = "the file is not a .pt file torch.save wrote"


def _file_kind(data: bytes, filename: str) -> str:
    """ "pt", "json" or "csv": by the file name's suffix, else by the first bytes."""
    suffix = PurePath(filename).suffix.lower()
    if suffix in (".pt", ".pth"):
        return "pt"
    if suffix == ".json":
        return "json"
    if suffix in (".csv", ".tsv", ".txt"):
        return "csv"
    if data.startswith((_ZIP_MAGIC, b"\x80")):  # torch.save's zip, or a pickle
        return "pt"
    return "json" if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"[", b"{") else "csv"


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise LoadFormatError(
            f"the file is not UTF-8 text (byte {error.start} is "
            f"{data[error.start]:#04x}); expected CSV, JSON or a .pt file "
            f"(name it .pt)"
        ) from None


def _read_json(data: bytes) -> object:
    """The parsed JSON; non-finite and out-of-range numbers and too deep nesting refused."""
    try:
        return json.loads(
            _text(data).removeprefix("\ufeff"),
            parse_int=_json_int,
            parse_float=_json_float,
            parse_constant=_json_constant,
        )
    except json.JSONDecodeError as error:
        raise LoadFormatError(f"the file is not valid JSON: {error}") from None
    except RecursionError:
        raise LoadFormatError(
            "the JSON nests arrays or objects too deeply to read; loads and "
            "placements nest 3 arrays at most: [steps][layers][experts]",
        ) from None


def _json_int(text: str) -> int | float:
    """A JSON integer; past 18 digits a float (Python refuses to parse over 4,300 digits)."""
    return int(text) if len(text) <= 18 else _json_float(text)


def _json_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise LoadFormatError(
            f"found the number {_excerpt(text)} in the JSON, beyond the range "
            f"of a float64 (about 1.8e308); expected finite numbers"
        )
    return value


def _json_constant(name: str) -> float:
    raise LoadFormatError(f"found {name} in the JSON; expected finite numbers")


def _read_pt(data: bytes) -> object:
    """``torch.load(weights_only=True)`` on CPU, after ``_check_pt_archive``; its refusals
    become ``LoadFormatError``."""
    if not data:
        raise LoadFormatError("the file is empty; expected a .pt file torch.save wrote")
    if data.startswith(b"\x80"):
        raise LoadFormatError(
            f"{_NOT_TORCH_SAVE} (a pickle, such as torch's legacy format from "
            f"torch < 1.6 or _use_new_zipfile_serialization=False, which is not "
            f"read because its sizes cannot be checked before loading); save it "
            f"again with torch.save"
        )
    if not data.startswith(_ZIP_MAGIC):
        raise LoadFormatError(f"{_NOT_TORCH_SAVE} (it is not a zip archive)")
    _check_pt_archive(data)
    try:
        return torch.load(BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:
        text = str(error)
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if refused:
            raise LoadFormatError(
                f"the .pt file holds a pickled {refused.group(1)}, not a tensor; "
                f"expected tensors, or dicts and lists of them, that "
                f"torch.load(weights_only=True) accepts"
            ) from None
        inner = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        reason = (
            inner.group(1) if inner else text.split(". ", maxsplit=1)[0] or type(error).__name__
        )
        raise LoadFormatError(f"{_NOT_TORCH_SAVE} ({reason})") from None


def _check_pt_archive(data: bytes) -> None:
    """The zip directory before ``torch.load``: every entry stored uncompressed, as torch.save
    writes them, and no more bytes declared than the file holds, so that loading allocates no
    more than the file's size."""
    try:
        with zipfile.ZipFile(BytesIO(data)) as archive:
            entries = archive.infolist()
    except Exception as error:
        raise LoadFormatError(
            f"{_NOT_TORCH_SAVE} (a damaged or truncated zip archive: {error})",
        ) from None
    declared = 0
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED:
            method = {
                zipfile.ZIP_DEFLATED: "deflate",
                zipfile.ZIP_BZIP2: "bzip2",
                zipfile.ZIP_LZMA: "lzma",
            }.get(entry.compress_type, f"method {entry.compress_type}")
            raise LoadFormatError(
                f"{_NOT_TORCH_SAVE} (its entry {entry.filename!r} is "
                f"compressed, {method}: {entry.compress_size:,} bytes that "
                f"unpack to {entry.file_size:,}; torch.save stores its entries "
                f"uncompressed): upload the file torch.save wrote"
            )
        declared += entry.file_size
    if declared > len(data):
        raise LoadFormatError(
            f"{_NOT_TORCH_SAVE} (its entries declare {declared:,} bytes but "
            f"the file holds {len(data):,})"
        )


def _expected(kind: str, keys: tuple[str, ...], shapes: str) -> str:
    whole, mapping = ("a nested list", "an object") if kind == "json" else ("a tensor", "a dict")
    names = [repr(key) for key in keys]
    key_names = " or ".join(filter(None, [", ".join(names[:-1]), names[-1]]))
    return f"expected {whole} {shapes}, or {mapping} with a {key_names} key holding one"


def _value_of(
    found: dict[object, object],
    keys: tuple[str, ...],
    kind: str,
    shapes: str,
) -> tuple[str, object]:
    """The first of ``keys`` in a JSON object or a ``.pt`` dict, and its value."""
    key = next((key for key in keys if key in found), None)
    if key is None:
        mapping = "an object" if kind == "json" else "a dict"
        shown = [
            repr(name) if isinstance(name, (str, int)) else type(name).__name__
            for name in list(found)[:10]
        ]
        names = ", ".join(shown) + (", ..." if len(found) > 10 else "") or "no keys"
        extra = (
            "; or SGLang's per_pass / per_token dump (keys 'records' and "
            "'last_physical_to_logical_map')"
            if keys == (LOGICAL_COUNT,) and kind == "pt"
            else ""
        )
        raise LoadFormatError(
            f"found {mapping} with keys {names}; {_expected(kind, keys, shapes)}{extra}"
        )
    return key, found[key]


def _loads_array(value: object, kind: str, limits: Limits) -> torch.Tensor:
    """A load array from a tensor or a nested list: shape and limits checked before its numbers
    are read, then float64 [layers, experts] or [steps, layers, experts], finite and >= 0."""
    expected = _expected(kind, (LOGICAL_COUNT,), _LOADS_SHAPES)
    tensor = _numbers(value, expected, lambda shape: _check_loads_shape(shape, limits))
    _check_load_values(tensor)
    return tensor


def _placement_array(value: object, kind: str, limits: Limits, key: str | None) -> torch.Tensor:
    """A placement from a tensor or a nested list: int64 [layers, slots] of whole ids >= 0."""
    expected = _expected(kind, PLACEMENT_KEYS, _PLACEMENT_SHAPE)
    where = f"{key!r}: " if key else ""
    try:
        tensor = _numbers(value, expected, lambda shape: check_placement_shape(shape, limits))
        return _placement_ids(tensor)
    except LoadFormatError as error:
        raise LoadFormatError(f"{where}{error}") from None


def _numbers(
    value: object, expected: str, check_shape: Callable[[tuple[int, ...]], None]
) -> torch.Tensor:
    """A tensor or a nested list -> a float64 tensor, after ``check_shape(shape)`` (dims,
    limits) has accepted the shape it declares."""
    if isinstance(value, torch.Tensor):
        tensor = _plain_tensor(value, expected)
        check_shape(tuple(tensor.shape))
        return torch.empty(tensor.shape, dtype=torch.float64).copy_(tensor)
    if isinstance(value, list):
        shape = _list_shape(value)
        check_shape(shape)
        _check_rectangular(value, shape, expected)
        try:
            return torch.tensor(value, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError, OverflowError) as error:
            raise LoadFormatError(
                f"found a list that is not a rectangular array of numbers ({error}); {expected}"
            ) from None
    raise LoadFormatError(f"found a value of type {type(value).__name__}; {expected}")


def _plain_tensor(tensor: torch.Tensor, expected: str) -> torch.Tensor:
    """A dense tensor of real numbers, detached; its form checked before any value is read."""
    if tensor.is_nested:
        raise LoadFormatError(f"found a nested tensor (its rows differ in length); {expected}")
    if tensor.layout != torch.strided:
        raise LoadFormatError(
            f"found a sparse tensor ({tensor.layout}); save it dense "
            f"(tensor.to_dense()): {expected}"
        )
    if tensor.is_quantized:
        raise LoadFormatError(
            f"found a quantized {tensor.dtype} tensor; save it dequantized "
            f"(tensor.dequantize()): {expected}"
        )
    if tensor.dtype not in _NUMBER_DTYPES:
        raise LoadFormatError(
            f"found a {tensor.dtype} tensor; expected numbers: integers, or "
            f"float16, bfloat16, float32 or float64"
        )
    return tensor.detach()


def _list_shape(value: list[Any]) -> tuple[int, ...]:
    """The shape a nested list declares along its first elements."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return tuple(shape)


def _check_rectangular(value: list[Any], shape: tuple[int, ...], expected: str) -> None:
    """Every list at depth d has ``shape[d]`` items, and the innermost hold only numbers."""
    level: list[Any] = [value]
    for depth in range(len(shape)):
        for position, item in enumerate(level):
            if not isinstance(item, list) or len(item) != shape[depth]:
                found = _values(len(item)) if isinstance(item, list) else _json_type(item)
                raise LoadFormatError(
                    f"found a list that is not a rectangular array of numbers "
                    f"({_index(position, shape[:depth])} holds {found} where "
                    f"{_index(0, shape[:depth])} holds {_values(shape[depth])}); {expected}"
                )
        if depth < len(shape) - 1:
            level = [child for item in level for child in item]
    for position, row in enumerate(level):
        if not set(map(type, row)) <= {int, float}:
            column = next(i for i, item in enumerate(row) if type(item) not in (int, float))
            raise LoadFormatError(
                f"found a list that is not a rectangular array of numbers "
                f"({_index(position * shape[-1] + column, shape)} is "
                f"{_json_type(row[column])}); {expected}"
            )


def _index(flat: int, shape: tuple[int, ...]) -> str:
    """The index [i, j, ...] of the ``flat``-th item of an array of ``shape``."""
    index = []
    for size in reversed(shape):
        flat, rest = divmod(flat, size)
        index.append(rest)
    return str(index[::-1])


def _values(count: int) -> str:
    return "1 value" if count == 1 else f"{count:,} values"


def _json_type(value: object) -> str:
    """What a value is, in JSON's words: "a string", "null", "a number"..."""
    return {
        str: "a string",
        type(None): "null",
        bool: "a boolean",
        dict: "an object",
        list: "a list",
        int: "a number",
        float: "a number",
    }.get(type(value), f"a {type(value).__name__}")


def _check_loads_shape(shape: tuple[int, ...], limits: Limits) -> None:
    """2-D or 3-D, not empty, within ``limits``: checked before any number is read."""
    if len(shape) not in (2, 3):
        raise LoadFormatError(
            f"found a {len(shape)}-D array of shape {_shape_text(shape)}; "
            f"expected 2-D [layers, experts] (one window) or 3-D "
            f"[steps, layers, experts] (a time series)"
        )
    if 0 in shape:
        raise LoadFormatError(f"found an empty array of shape {list(shape)}")
    limits.check("max_layers", shape[-2], "layers")
    limits.check("max_experts", shape[-1], "experts")
    limits.check(
        "max_elements",
        math.prod(shape),
        "load values (" + " x ".join(f"{size:,}" for size in shape) + ")",
    )


def check_placement_shape(shape: tuple[int, ...], limits: Limits) -> None:
    """``LoadFormatError`` unless a placement is 2-D and not empty; ``LimitError`` past the
    layers, slots or entries ``limits`` allow."""
    if len(shape) != 2 or 0 in shape:
        raise LoadFormatError(
            f"found shape {_shape_text(shape)}; a placement is 2-D [layers, slots] and not empty"
        )
    limits.check("max_layers", shape[0], "layers")
    limits.check("max_replicas", shape[1], "slots")
    limits.check(
        "max_elements",
        shape[0] * shape[1],
        f"placement entries ({shape[0]:,} layers x {shape[1]:,} slots)",
    )


def _shape_text(shape: tuple[int, ...]) -> str:
    return str(list(shape)) if len(shape) <= 8 else str(list(shape[:8]))[:-1] + ", ...]"


def _check_load_values(loads: torch.Tensor) -> None:
    """Loads are finite and >= 0; the first bad one is named with its index."""
    bad = ~torch.isfinite(loads) | (loads < 0)
    if bool(bad.any()):
        index = [int(i) for i in bad.nonzero()[0]]
        value = float(loads[tuple(index)])
        problem = "a negative load" if value < 0 else "a load that is not a finite number"
        raise LoadFormatError(
            f"found {problem} ({value:g} at index {index}); loads are token counts >= 0"
        )


def _placement_ids(placement: torch.Tensor) -> torch.Tensor:
    """Whole expert ids from 0 to 2**31 - 1 as int64 (a float placement with fractions is
    refused)."""
    if placement.is_floating_point():
        finite = torch.isfinite(placement)
        if not bool(finite.all()):
            raise LoadFormatError(
                "found an expert id that is not a finite number; a placement holds whole expert ids"
            )
        if not bool((placement == placement.round()).all()):
            raise LoadFormatError("found fractions; a placement holds whole expert ids")
    out_of_range = (placement < 0) | (placement > _MAX_ID)
    if bool(out_of_range.any()):
        index = [int(i) for i in out_of_range.nonzero()[0]]
        raise LoadFormatError(
            f"found expert id {float(placement[tuple(index)]):g} at index "
            f"{index}; expert ids are whole numbers from 0"
        )
    return placement.to(torch.int64)


def _excerpt(text: str) -> str:
    """A cell or a number as a message quotes it: at most 24 characters."""
    if len(text) <= 24:
        return repr(text)
    return f"{text[:12]!r}... ({len(text):,} characters)"


# --- SGLang's expert distribution dumps -------------------------------------------------------


def _stat_dump_notes(series: torch.Tensor) -> tuple[str, ...]:
    """What an SGLang ``stat`` dump's idle steps say about the order of its series
    [steps, layers, experts] (see the module docstring for SGLang's circular buffer)."""
    num_steps, num_layers, num_experts = series.shape
    notes = [
        (
            f"SGLang expert distribution dump (stat mode): {num_steps:,} steps x "
            f"{num_layers} layers x {num_experts} experts"
        )
    ]
    busy = (series.flatten(1) > 0).any(-1)
    busy_steps = busy.nonzero().flatten()
    if num_steps < 2 or len(busy_steps) == 0:
        return tuple(notes)
    first, last = int(busy_steps[0]), int(busy_steps[-1])
    inner_idle = (~busy[first : last + 1]).nonzero().flatten() + first
    one_gap = len(inner_idle) > 0 and int(inner_idle[-1] - inner_idle[0]) + 1 == len(inner_idle)
    if len(busy_steps) == num_steps:
        notes.append(
            f"all {num_steps:,} steps hold counts: if the recording ran more forward "
            f"passes than SGLang's circular buffer holds, the oldest were overwritten "
            f"and the steps do not start at the oldest (SGLang does not save where it "
            f"wrote last); they are kept in the file's order"
        )
    elif first == 0 and last == num_steps - 1 and one_gap:
        gap_start, gap_end = int(inner_idle[0]), int(inner_idle[-1])
        notes.append(
            f"steps {gap_start}-{gap_end} hold no counts between steps with counts: "
            f"SGLang's circular buffer wrapped, it seems (a recording continues where "
            f"the previous one stopped), so steps {gap_end + 1}-{num_steps - 1} were "
            f"recorded before steps 0-{gap_start - 1}; they are kept in the file's order"
        )
    elif len(inner_idle):
        notes.append(
            f"{len(inner_idle):,} steps between steps with counts hold none (SGLang "
            f"records an empty step for a forward pass that routes no token, such as a "
            f"speculative draft pass); they are kept"
        )
    return tuple(notes)


def _read_recorder_records(
    dump: dict[object, object], kind: str, file_bytes: int, limits: Limits
) -> LoadFile:
    """SGLang's per_pass / per_token dump -> loads [passes, layers, experts] counted per logical
    expert with ``last_physical_to_logical_map``, which becomes the placement."""
    records = dump[RECORDS]
    if LAST_PHYSICAL_TO_LOGICAL_MAP not in dump:
        raise LoadFormatError(
            "found SGLang's per_pass / per_token records without "
            "'last_physical_to_logical_map'; expected the dump as SGLang writes "
            "it, which maps its physical slots to experts"
        )
    placement = _placement_array(
        dump[LAST_PHYSICAL_TO_LOGICAL_MAP], kind, limits, LAST_PHYSICAL_TO_LOGICAL_MAP
    )
    if (
        not isinstance(records, list)
        or not records
        or not all(isinstance(record, dict) for record in records)
    ):
        raise LoadFormatError(
            "found 'records' that is not a non-empty list of dicts; expected "
            "SGLang's per_pass / per_token records"
        )
    mode, field = (
        ("per_token", _PER_TOKEN_IDS)
        if _PER_TOKEN_IDS in records[0]
        else ("per_pass", _PER_PASS_COUNT)
    )
    for position, record in enumerate(records):
        if not isinstance(record.get(field), torch.Tensor):
            raise LoadFormatError(
                f"record {position} holds no tensor under {field!r}; expected "
                f"SGLang's per_pass records ({_PER_PASS_COUNT!r}) or per_token "
                f"records ({_PER_TOKEN_IDS!r})"
            )
    tensors = [_plain_tensor(record[field], "expected integer ids or counts") for record in records]
    declared = sum(tensor.numel() * tensor.element_size() for tensor in tensors)
    if declared > file_bytes:
        raise LoadFormatError(
            f"the records' tensors declare {declared:,} bytes but the file "
            f"holds {file_bytes:,}: they repeat or expand their data; expected "
            f"the dump as SGLang writes it"
        )

    num_layers = placement.shape[0]
    num_experts = int(placement.max()) + 1
    pass_ids = [record.get("forward_pass_id", position) for position, record in enumerate(records)]
    if not all(isinstance(pass_id, int) for pass_id in pass_ids):
        raise LoadFormatError("found a record whose forward_pass_id is not an integer")
    step_of = {pass_id: step for step, pass_id in enumerate(sorted(set(pass_ids)))}
    _check_loads_shape((len(step_of), num_layers, num_experts), limits)

    loads = torch.zeros(len(step_of), num_layers, num_experts, dtype=torch.float64)
    for position, (pass_id, tensor) in enumerate(zip(pass_ids, tensors)):
        where = f"record {position} ({field})"
        if tensor.is_floating_point():
            raise LoadFormatError(f"{where}: found a {tensor.dtype} tensor; expected integers")
        slot_counts = (
            _per_pass_counts(tensor, placement.shape, where)
            if mode == "per_pass"
            else _per_token_counts(tensor, placement.shape, where)
        )
        loads[step_of[pass_id]].scatter_add_(1, placement, slot_counts)

    ranks = sorted({record["rank"] for record in records if isinstance(record.get("rank"), int)})
    notes = [
        (
            f"SGLang expert distribution dump ({mode} mode): {len(step_of):,} forward passes "
            f"x {num_layers} layers x {num_experts} experts, each slot's count added to the "
            f"expert that last_physical_to_logical_map places there (the map at the dump: "
            f"passes recorded before a rebalance are counted with it too)"
        )
    ]
    if ranks:
        which = f"rank {ranks[0]}" if len(ranks) == 1 else "ranks " + ", ".join(map(str, ranks))
        notes.append(
            f"the file holds the records of {which}: SGLang writes one file per rank, "
            f"each with its rank's share of the tokens"
        )
    return LoadFile(loads, tuple(notes), placement)


def _per_pass_counts(counts: torch.Tensor, map_shape: torch.Size, where: str) -> torch.Tensor:
    """One per_pass record's slot counts [layers, slots] as float64."""
    if tuple(counts.shape) != tuple(map_shape):
        raise LoadFormatError(
            f"{where}: found shape {list(counts.shape)}; expected "
            f"{list(map_shape)} like last_physical_to_logical_map"
        )
    counts = counts.to(torch.float64)
    if bool((counts < 0).any()):
        raise LoadFormatError(f"{where}: found a negative count; counts are >= 0")
    return counts


def _per_token_counts(topk_ids: torch.Tensor, map_shape: torch.Size, where: str) -> torch.Tensor:
    """One per_token record [layers, tokens, top_k] of slot ids (-1: none) -> how many tokens
    each slot got, [layers, slots] float64."""
    num_layers, num_slots = map_shape
    if topk_ids.dim() != 3 or topk_ids.shape[0] != num_layers:
        raise LoadFormatError(
            f"{where}: found shape {list(topk_ids.shape)}; expected [{num_layers}, tokens, top_k]"
        )
    ids = topk_ids.reshape(num_layers, -1).to(torch.int64)
    bad = (ids < -1) | (ids >= num_slots)
    if bool(bad.any()):
        raise LoadFormatError(
            f"{where}: found slot id {int(ids[bad][0])}; "
            f"last_physical_to_logical_map has slots 0-{num_slots - 1}"
        )
    unused = ids < 0
    counts = torch.zeros(num_layers, num_slots + 1, dtype=torch.float64)
    counts.scatter_add_(
        1, ids.masked_fill(unused, num_slots), torch.ones_like(ids, dtype=torch.float64)
    )
    return counts[:, :num_slots]
