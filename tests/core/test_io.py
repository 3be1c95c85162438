"""CSV load matrices: the layouts spreadsheets and pandas write, the round trip, and errors that
name the row and column."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eplb_core.io import LoadFormatError, format_csv_matrix, read_csv_matrix

EXPECTED = [[1.0, 2.0, 3.0], [4.0, 5.5, 0.0]]


@pytest.mark.parametrize("text", [
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
])
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


@pytest.mark.parametrize(("text", "error"), [
    ("", "the file is empty: it has no rows"),
    ("\n  \n\t\n", "the file is empty: it has no rows"),
    ("\n\ne0,e1\n", "the file has a header row (row 3) but no data rows"),
    ("1,2\n\n3\n", "row 3 has 1 column, expected 2 like row 1"),
    ("e0,e1\n1,2,3\n", "row 2 has 3 columns, expected 2 like row 1"),
    ("e0,e1\n1,2\n3,abc\n", "row 3, column 2: 'abc' is not a number"),
    ("L0,1,2\nL1,3,x\n", "row 2, column 3: 'x' is not a number"),
    ("1;2\n3;4,5\n", "row 2, column 2: '4,5' is not a number"),
    ("1,nan\n", "row 1, column 2: 'nan' is not a finite number"),
    ("1,2\n-inf,3\n", "row 2, column 1: '-inf' is not a finite number"),
    ("1,2\n3,-0.5\n", "row 2, column 2: '-0.5' is negative; loads are token counts >= 0"),
    ("1,1e39\n", "row 1, column 2: '1e39' is too large for a float32 load"),
    ("1,\n3,4\n", "row 1, column 2: the cell is empty"),
    ("L0\nL1\n", "the file has a label column but no expert columns"),
])
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
@given(st.integers(1, 6), st.integers(1, 9), st.integers(0, 2**31 - 1),
       st.sampled_from([torch.float32, torch.float64]))
def test_round_trip(layers: int, experts: int, seed: int, dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(seed)
    matrix = (torch.rand(layers, experts, generator=generator, dtype=dtype) * 10.0 ** 6)
    matrix[:, 0] = matrix[:, 0].round()  # whole numbers as well

    back = read_csv_matrix(format_csv_matrix(matrix))

    assert torch.equal(back, matrix.float())
