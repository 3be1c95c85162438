"""Engine file formats: JSON and .pt loads (SGLang's dump), placements, and the exports."""

from __future__ import annotations

import json
from io import BytesIO

import pytest
import torch

from eplb_core import Cluster, rebalance_experts
from eplb_core.io import (
    LoadFormatError,
    map_to_json,
    map_to_pt,
    plan_to_json,
    read_loads,
    read_placement,
)
from eplb_core.replay import replay


def _pt(obj: object) -> bytes:
    buffer = BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _sglang_dump(logical_count: torch.Tensor) -> bytes:
    """What SGLang's expert distribution recorder writes: rank 0's dict, counts per step."""
    return _pt(
        {"rank": 0, "logical_count": logical_count, "average_utilization_rate_over_window": None}
    )


class _NotATensor:
    pass


def test_sglang_dump_round_trips_into_a_replay():
    gen = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 50, (12, 3, 8), generator=gen)  # [steps, layers, experts], int64
    loads = read_loads(_sglang_dump(counts), "expert_distribution_recorder_1700000000.pt")
    assert loads.shape == (12, 3, 8)
    assert loads.dtype == torch.float64
    assert torch.equal(loads, counts.double())

    result = replay(loads, 4, Cluster(12, 2, 2, 4), algorithms=["greedy"])
    assert (result.num_windows, result.dropped_steps) == (3, 0)
    expected = replay(counts.double(), 4, Cluster(12, 2, 2, 4), algorithms=["greedy"])
    assert result.strategies == expected.strategies
    assert len(result.strategies["greedy"].next_window) == 2


def test_read_loads_json_nested_list_and_logical_count_object():
    window = read_loads(b"[[1, 2.5], [3, 0]]", "loads.json")
    assert window.tolist() == [[1, 2.5], [3, 0]]
    series = read_loads(
        b'{"logical_count": [[[1, 2]], [[3, 4]], [[5, 6]]], "rank": 0}', "dump.json"
    )
    assert series.shape == (3, 1, 2)
    assert series[:, 0, 1].tolist() == [2, 4, 6]


def test_read_loads_pt_tensor():
    loads = read_loads(_pt(torch.tensor([[1.0, 2.0], [3.0, 4.0]])), "w.pt")
    assert loads.tolist() == [[1, 2], [3, 4]]


def test_read_loads_csv_by_name_gives_the_csv_readers_matrix():
    loads = read_loads(b"1,2\n3,4\n", "loads.csv")
    assert loads.dtype == torch.float32
    assert loads.tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    "data, shape",
    [
        (_pt(torch.ones(2, 3)), [2, 3]),
        (b'  {"logical_count": [[1, 2, 3]]}', [1, 3]),
        (b"[[1, 2], [3, 4], [5, 6]]", [3, 2]),
        (b"1,2,3\n4,5,6\n", [2, 3]),
    ],
)
def test_read_loads_without_a_suffix_looks_at_the_content(data, shape):
    assert list(read_loads(data, "upload").shape) == shape
    assert list(read_loads(data).shape) == shape


@pytest.mark.parametrize(
    "data, filename, message",
    [
        (
            b'{"counts": [[1]], "rank": 0}',
            "x.json",
            r"found an object with keys 'counts', 'rank'; expected a nested list .*'logical_count'",
        ),
        (
            _pt({"physical_to_logical_map": torch.zeros(2, 4)}),
            "x.pt",
            r"found a dict with keys 'physical_to_logical_map'; expected a tensor "
            r".*'logical_count'",
        ),
        (
            b"[1, 2, 3]",
            "x.json",
            r"found a 1-D array of shape \[3\]; expected 2-D \[layers, experts\] \(one window\) or "
            r"3-D \[steps, layers, experts\]",
        ),
        (_pt(torch.zeros(2, 2, 2, 2)), "x.pt", r"found a 4-D array of shape \[2, 2, 2, 2\]"),
        (_pt(torch.tensor(3.0)), "x.pt", r"found a 0-D array of shape \[\]"),
        (
            _pt({"logical_count": _NotATensor()}),
            "x.pt",
            r"holds a pickled .*_NotATensor, not a tensor; .*torch.load\(weights_only=True\)",
        ),
        (
            b'[[1, "many"]]',
            "x.json",
            r"not a rectangular array of numbers \(\[0, 1\] is a string\)",
        ),
        (b"[[1, null]]", "x.json", "not a rectangular array of numbers"),
        (b"[[1, 2], [3]]", "x.json", "not a rectangular array of numbers"),
        (b'"loads"', "x.json", "found a value of type str; expected a nested list"),
        (b"[[1, -2]]", "x.json", r"found a negative load \(-2 at index \[0, 1\]\)"),
        (b"[[1, NaN]]", "x.json", "found NaN in the JSON; expected finite numbers"),
        (b"[[]]", "x.json", r"found an empty array of shape \[1, 0\]"),
        (b"[[1, 2]", "x.json", "not valid JSON: Expecting"),
        (_pt(torch.ones(2, 2, dtype=torch.bool)), "x.pt", "found a torch.bool tensor"),
        (b"not a torch file", "x.pt", "not a .pt file torch.save wrote"),
        (b"", "x.pt", "the file is empty; expected a .pt file torch.save wrote"),
        (b"\xff\xfe1,2", "x.csv", "not UTF-8 text"),
        (b"1,2\n3,x\n", "x.csv", r"row 2, column 2: 'x' is not a number"),
    ],
)
def test_read_loads_says_what_was_found_and_what_is_expected(data, filename, message):
    with pytest.raises(LoadFormatError, match=message):
        read_loads(data, filename)


def test_load_format_errors_are_value_errors():
    with pytest.raises(ValueError):
        read_loads(b"[1]", "x.json")


PLACEMENT = torch.tensor([[0, 1, 2, 0], [2, 1, 0, 1]])


@pytest.mark.parametrize(
    "data, filename",
    [
        (b"[[0, 1, 2, 0], [2, 1, 0, 1]]", "current.json"),
        (b'{"phy2log": [[0, 1, 2, 0], [2, 1, 0, 1]]}', "current.json"),
        (b"0,1,2,0\n2,1,0,1\n", "current.csv"),
        (map_to_json(PLACEMENT).encode(), "map.json"),
        (map_to_pt(PLACEMENT), "map.pt"),
        (_pt(PLACEMENT.int()), "phy2log.pt"),
    ],
)
def test_read_placement_in_each_format(data, filename):
    placement = read_placement(data, filename)
    assert placement.dtype == torch.int64
    assert torch.equal(placement, PLACEMENT)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"[[0, 1.5]]", "found fractions; a placement holds whole expert ids"),
        (b"[0, 1, 2]", r"found shape \[3\]; a placement is 2-D \[layers, slots\]"),
        (
            b'{"logical_count": [[1]]}',
            r"keys 'logical_count'; expected .*'phy2log', 'physical_to_logical_map' or "
            r"'last_physical_to_logical_map' key",
        ),
    ],
)
def test_read_placement_says_what_is_wrong(data, message):
    with pytest.raises(LoadFormatError, match=message):
        read_placement(data, "current.json")


@pytest.fixture(scope="module")
def plan() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    weight = torch.tensor([[90.0, 10, 40, 5, 70, 20, 30, 60], [1, 2, 3, 4, 5, 6, 7, 80]])
    return rebalance_experts(weight, 12, 2, 2, 4, algorithm="greedy")


def test_map_to_pt_loads_back_as_sglang_reads_it(plan):
    phy2log = plan[0]
    loaded = torch.load(BytesIO(map_to_pt(phy2log)), weights_only=True)
    # SGLang passes the dict's items as keyword arguments, so it must hold that key alone.
    assert list(loaded) == ["physical_to_logical_map"]
    exported = loaded["physical_to_logical_map"]
    assert exported.dtype == torch.int64
    assert exported.shape == (2, 12)
    assert torch.equal(exported, phy2log)


def test_map_to_pt_writes_int64_from_any_integer_dtype():
    loaded = torch.load(BytesIO(map_to_pt(PLACEMENT.int())), weights_only=True)
    assert loaded["physical_to_logical_map"].dtype == torch.int64


def test_map_to_json_holds_the_map_alone(plan):
    phy2log = plan[0]
    assert json.loads(map_to_json(phy2log)) == {"physical_to_logical_map": phy2log.tolist()}


def test_plan_to_json_holds_the_whole_plan(plan):
    phy2log, log2phy, logcnt = plan
    assert json.loads(plan_to_json(phy2log, log2phy, logcnt)) == {
        "phy2log": phy2log.tolist(),
        "log2phy": log2phy.tolist(),
        "logcnt": logcnt.tolist(),
    }
