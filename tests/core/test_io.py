"""CSV load matrices: the layouts spreadsheets and pandas write, the round trip, and errors that
name the row and column."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eplb_core.errors import LimitError
from eplb_core.io import (
    LoadFormatError,
    format_csv_matrix,
    read_csv_matrix,
    read_load_file,
)
from eplb_core.limits import Limits

EXPECTED = [[1.0, 2.0, 3.0], [4.0, 5.5, 0.0]]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("1,2,3\n4,5.5,0\n", id="plain"),
        pytest.param("1;2;3\r\n4;5.5;0\r\n", id="semicolon-crlf"),
        pytest.param("1\t2\t3\n4\t5.5\t0", id="tab-no-final-newline"),
        pytest.param("\n1, 2, 3\n\n  \n4 ,5.5, 0\n\n", id="blank-lines-and-spaces"),
        pytest.param("e0,e1,e2\n1,2,3\n4,5.5,0\n", id="header"),
        pytest.param('"expert 0","expert 1","expert 2"\n1,2,3\n4,5.5,0\n', id="quoted-header"),
        pytest.param("L0,1,2,3\nL1,4,5.5,0\n", id="text-labels"),
        pytest.param("layer;e0;e1;e2\n0;1;2;3\n1;4;5.5;0\n", id="header-and-numeric-labels"),
        pytest.param(",0,1,2\n0,1,2,3\n1,4,5.5,0\n", id="pandas-to-csv-with-index"),
        pytest.param("Layer,1,2,3\n1,1,2,3\n2,4,5.5,0\n", id="numbered-experts-from-one"),
        pytest.param("\ufeff1,2,3\n4,5.5,0\n", id="byte-order-mark"),
        pytest.param("1e0,2,3\n4,5.5,0.0\n", id="exponent"),
    ],
)
def test_reads_common_layouts(text: str) -> None:
    matrix = read_csv_matrix(text)

    assert matrix.dtype == torch.float32
    assert matrix.tolist() == EXPECTED


def test_a_row_of_loads_is_not_taken_for_a_header() -> None:
    """Counting-up loads under a first cell that is not a label header stay data."""
    assert read_csv_matrix("L0,1,2\nL1,3,4\n").tolist() == [[1, 2], [3, 4]]
    assert read_csv_matrix("0,1,2\n5,6,7\n").tolist() == [[0, 1, 2], [5, 6, 7]]


def test_single_column() -> None:
    assert read_csv_matrix("5\n6\n").tolist() == [[5], [6]]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "the file is empty: it has no rows"),
        ("\n  \n\t\n", "the file is empty: it has no rows"),
        ("\n\ne0,e1\n", "the file has a header row (row 3) but no data rows"),
        ("1,2\n\n3\n", "row 3 has 1 column, expected 2 like row 1"),
        ("e0,e1\n1,2,3\n", "row 2 has 3 columns, expected 2 like row 1"),
        ("e0,e1\n1,2\n3,abc\n", "row 3, column 2: 'abc' is not a number"),
        ("L0,1,2\nL1,3,x\n", "row 2, column 3: 'x' is not a number"),
        (
            "1;2\n3;4,5\n",
            ("row 2, column 2: '4,5' has a decimal comma; write 4.5 (a point as the decimal mark)"),
        ),
        ("1,nan\n", "row 1, column 2: 'nan' is not a finite number"),
        ("1,2\n-inf,3\n", "row 2, column 1: '-inf' is not a finite number"),
        ("1,2\n3,-0.5\n", "row 2, column 2: '-0.5' is negative; loads are token counts >= 0"),
        ("1,1e39\n", "row 1, column 2: '1e39' is too large for a float32 load"),
        ("1,\n3,4\n", "row 1, column 2: the cell is empty"),
        ("L0\nL1\n", "the file has a label column but no expert columns"),
    ],
)
def test_errors_name_the_place(text: str, error: str) -> None:
    with pytest.raises(LoadFormatError) as raised:
        read_csv_matrix(text)

    assert str(raised.value) == error
    assert isinstance(raised.value, ValueError)


def test_format_writes_integers_and_no_header() -> None:
    assert format_csv_matrix(torch.tensor([[1.0, 2.5], [300.0, 0.0]])) == "1,2.5\n300,0\n"
    assert format_csv_matrix([[1, 2], [3, 4]]) == "1,2\n3,4\n"


def test_format_rejects_a_matrix_that_is_not_2d() -> None:
    with pytest.raises(ValueError, match=r"2-D \[layers, experts\], got shape \[3\]"):
        format_csv_matrix(torch.ones(3))


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 9),
    st.integers(0, 2**31 - 1),
    st.sampled_from([torch.float32, torch.float64]),
)
def test_round_trip(layers: int, experts: int, seed: int, dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(seed)
    matrix = torch.rand(layers, experts, generator=generator, dtype=dtype) * 10.0**6
    matrix[:, 0] = matrix[:, 0].round()  # whole numbers as well

    back = read_csv_matrix(format_csv_matrix(matrix))

    assert torch.equal(back, matrix.float())


# --- A label column only when it is unambiguous: a typo is an error, never a reshape ------------


def _wide_matrix_text(rows: int = 58, columns: int = 256) -> list[str]:
    return [
        ",".join(str((row * 7 + column) % 97) for column in range(columns)) for row in range(rows)
    ]


def test_one_typo_in_the_first_column_of_a_wide_matrix_is_an_error_not_a_label_column() -> None:
    lines = _wide_matrix_text()
    lines[7] = "5a" + lines[7][lines[7].index(",") :]

    with pytest.raises(LoadFormatError) as raised:
        read_csv_matrix("\n".join(lines))

    assert str(raised.value).startswith(
        "row 8, column 1: '5a' is not a number; column 1 is read as loads"
    )
    assert "a header row whose first cell is 'layer'" in str(raised.value)


def test_the_same_wide_matrix_without_the_typo_keeps_every_column() -> None:
    assert read_csv_matrix("\n".join(_wide_matrix_text())).shape == (58, 256)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param("1,2\n79O,3\n", "row 2, column 1: '79O' is not a number", id="79O"),
        pytest.param("79O,3\n", "row 1, column 1: '79O' is not a number", id="79O-only-row"),
        pytest.param("L0,1\n2,3\n", "row 1, column 1: 'L0' is not a number", id="label-in-one-row"),
    ],
)
def test_a_first_column_that_is_not_all_labels_holds_loads(text: str, error: str) -> None:
    with pytest.raises(LoadFormatError, match=f"^{error}; column 1 is read as loads"):
        read_csv_matrix(text)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param(
            '1,"1,000",3\n4,5,6\n',
            "row 1, column 2: '1,000' has a comma in it: write 1000 if it is a thousands "
            "separator, or 1.000 if it is a decimal comma",
            id="quoted-thousands-comma",
        ),
        pytest.param(
            '"1,000",2\n3,4\n',
            "row 1, column 1: '1,000' has a comma in it: write 1000 if it is a thousands "
            "separator, or 1.000 if it is a decimal comma",
            id="thousands-in-column-1",
        ),
        pytest.param(
            "1,5;2;3\n",
            "row 1, column 1: '1,5' has a decimal comma; write 1.5 (a point as the decimal mark)",
            id="decimal-comma-semicolon-file",
        ),
        pytest.param(
            "1;2\n3;12,25\n",
            "row 2, column 2: '12,25' has a decimal comma; write 12.25 (a point as the "
            "decimal mark)",
            id="decimal-comma-two-decimals",
        ),
        pytest.param(
            "1\t1 000\n",
            "row 1, column 2: '1 000' has a thousands separator; write 1000",
            id="space-thousands-separator",
        ),
        pytest.param(
            "1;1.234.567\n2;3\n",
            "row 1, column 2: '1.234.567' is not a number",
            id="points-as-separators",
        ),
        pytest.param(
            "1,\u0661\u0662\n",
            "row 1, column 2: '\u0661\u0662' is not a number",
            id="digits-other-than-0-9",
        ),
        pytest.param(
            "L0,5a\nL1,7\n", "row 1, column 2: '5a' is not a number", id="a-typo-is-no-header"
        ),
        pytest.param(
            "1,1_000\n",
            "row 1, column 2: '1_000' has a thousands separator; write 1000",
            id="underscore-separator",
        ),
    ],
)
def test_thousands_separators_and_decimal_commas_are_refused_with_what_to_write(
    text: str, error: str
) -> None:
    with pytest.raises(LoadFormatError) as raised:
        read_csv_matrix(text)

    assert str(raised.value) == error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(",0,1,2\n0,1,2,3\n1,4,5.5,0\n", EXPECTED, id="pandas-to-csv-with-index"),
        pytest.param("L0,1,2,3\nL1,4,5.5,0\n", EXPECTED, id="L0-rows"),
        pytest.param(
            "layer,e0,e1,e2\n0,1,2,3\n1,4,5.5,0\n", EXPECTED, id="header-and-label-column"
        ),
        pytest.param(
            "model.layers.3.mlp;1;2;3\nmodel.layers.4.mlp;4;5.5;0\n", EXPECTED, id="module-names"
        ),
        pytest.param("layer_3\t1\t2\t3\nlayer_4\t4\t5.5\t0\n", EXPECTED, id="layer_3-tab"),
        pytest.param("L0,1,2,3\n", [EXPECTED[0]], id="one-labelled-row"),
        pytest.param("#,0,1,2\n7,1,2,3\n9,4,5.5,0\n", EXPECTED, id="hash-header"),
    ],
)
def test_unambiguous_label_columns_are_still_read(text: str, expected: list) -> None:
    assert read_csv_matrix(text).tolist() == expected


def test_a_label_header_with_a_cell_that_is_no_expert_number_is_explained() -> None:
    """``'²'.isdigit()`` is true but ``int('²')`` fails: the row is data, and the error says why
    it is not a header."""
    with pytest.raises(LoadFormatError) as raised:
        read_csv_matrix("layer,0,\u00b2\n0,1,2\n")

    assert str(raised.value) == (
        "row 1, column 1: 'layer' is not a number; row 1 is read as data, not as a header: its "
        "cell '\u00b2' in column 3 is not the expert number 1 (a header holds text, or the "
        "expert numbers 0, 1, ... or 1, 2, ...)"
    )


def test_a_cell_over_the_csv_field_limit_is_a_format_error() -> None:
    with pytest.raises(
        LoadFormatError,
        match=r"^row 2 has a cell of more than 131,072 "
        r"characters; a cell holds one number$",
    ):
        read_csv_matrix("1,2\n3," + "9" * 200_000 + "\n")


def test_a_long_cell_under_the_field_limit_is_quoted_short() -> None:
    with pytest.raises(
        LoadFormatError,
        match=r"^row 2, column 2: 'xxxxxxxxxxxx'\.\.\. "
        r"\(5,000 characters\) is not a number$",
    ):
        read_csv_matrix("3,4\n1," + "x" * 5_000 + "\n")


LIMITS = Limits(
    max_layers=4,
    max_experts=3,
    max_elements=10,
    names={
        "max_layers": "EPLB_MAX_LAYERS",
        "max_experts": "EPLB_MAX_EXPERTS",
        "max_elements": "EPLB_MAX_ELEMENTS",
    },
)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param(
            "1,2\n" * 9,
            "too many layers: 9; this server takes at most 4 (EPLB_MAX_LAYERS)",
            id="rows-counted-to-the-end",
        ),
        pytest.param(
            "1,2,3,4\n",
            "too many experts: 4; this server takes at most 3 (EPLB_MAX_EXPERTS)",
            id="columns",
        ),
        pytest.param(
            "L0,1,2,3,4\n",
            "too many experts: 4; this server takes at most 3 (EPLB_MAX_EXPERTS)",
            id="columns-after-a-label",
        ),
        pytest.param(
            "1,2,3\n" * 4,
            "too many numbers in the file (4 rows x 3 columns): 12; this "
            "server takes at most 10 (EPLB_MAX_ELEMENTS)",
            id="elements",
        ),
    ],
)
def test_csv_limits_are_checked_before_the_cells_are_converted(text: str, error: str) -> None:
    with pytest.raises(LimitError) as raised:
        read_csv_matrix(text, limits=LIMITS)

    assert str(raised.value) == error


def test_within_the_limits_the_matrix_is_read() -> None:
    assert read_csv_matrix("L0,1,2,3\nL1,4,5.5,0\n", limits=LIMITS).tolist() == EXPECTED


@pytest.mark.parametrize(
    ("text", "notes"),
    [
        pytest.param(
            ",0,1\n0,1,2\n1,3,4\n",
            ("row 1 read as a header", "column 1 read as row labels"),
            id="pandas",
        ),
        pytest.param("\n\nL0,1,2\nL1,3,4\n", ("column 1 read as row labels",), id="labels"),
        pytest.param("1,2\n3,4\n", (), id="plain"),
    ],
)
def test_read_load_file_notes_what_the_csv_reader_recognised(text: str, notes: tuple) -> None:
    assert read_load_file(text.encode(), "loads.csv").notes == notes


def test_a_numeric_row_index_without_a_header_is_read_as_data_with_a_note() -> None:
    """pandas' ``to_csv(header=False)`` keeps its index: ambiguous, so it stays a column of
    loads, and the note says how to mark it."""
    found = read_load_file(b"0,5,6\n1,7,8\n2,9,1\n", "loads.csv")

    assert found.loads.tolist() == [[0, 5, 6], [1, 7, 8], [2, 9, 1]]
    assert found.notes == (
        (
            "column 1 holds 0, 1, ..., 2 and is read as the loads of the first "
            "expert; if it is a row index (pandas' to_csv with header=False), "
            "remove it or add a header row whose first cell is 'layer'"
        ),
    )


def test_a_first_row_labelled_like_the_rest_is_data_even_when_it_counts_up() -> None:
    """'layer 0' labels a row; it does not name the label column: row 1 stays data."""
    assert read_csv_matrix("layer 0,0,1\nlayer 1,5,6\n").tolist() == [[0, 1], [5, 6]]


@pytest.mark.parametrize("first_cell", ["layer", "Layer id", "layer_idx", "#", "name"])
def test_label_headers_name_the_label_column(first_cell: str) -> None:
    assert read_csv_matrix(f"{first_cell},0,1\n3,5,6\n").tolist() == [[5, 6]]
