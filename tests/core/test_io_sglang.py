"""SGLang's expert distribution dumps as its recorder writes them (see ``eplb_core.io``'s
docstring for what was verified in SGLang's source): stat mode's circular buffer, per_pass and
per_token records with ``last_physical_to_logical_map``."""

from __future__ import annotations

import dataclasses
import json
from io import BytesIO

import pytest
import torch

from eplb_core.errors import LimitError, LoadFormatError
from eplb_core.io import LoadFile, read_load_file, read_loads, read_placement
from eplb_core.limits import Limits

NUM_LAYERS, NUM_EXPERTS, DENSE_LAYERS = 61, 256, 3  # DeepSeek-V3 as SGLang records it


def _pt(obj: object) -> bytes:
    buffer = BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _busy_steps(count: int, seed: int = 0) -> torch.Tensor:
    """``count`` recorded steps [count, 61, 256] int32; the 3 dense layers stay zero."""
    generator = torch.Generator().manual_seed(seed)
    steps = torch.randint(
        1, 50, (count, NUM_LAYERS, NUM_EXPERTS), generator=generator, dtype=torch.int32
    )
    steps[:, :DENSE_LAYERS] = 0
    return steps


def _idle_steps(count: int) -> torch.Tensor:
    return torch.zeros(count, NUM_LAYERS, NUM_EXPERTS, dtype=torch.int32)


def _stat_dump(logical_count: torch.Tensor) -> bytes:
    """``_StatAccumulator.dump``'s file: rank 0's dict."""
    return _pt(
        {"rank": 0, "logical_count": logical_count, "average_utilization_rate_over_window": None}
    )


STAT_FOUND = "SGLang expert distribution dump (stat mode): {} steps x 61 layers x 256 experts"


def test_a_stat_dump_keeps_its_dense_layers_and_idle_steps() -> None:
    """A buffer that had not filled: idle steps at both ends, kept (the replay trims them); the
    dense layers stay all-zero rows."""
    counts = torch.cat([_idle_steps(2), _busy_steps(5), _idle_steps(3)])

    found = read_load_file(_stat_dump(counts), "expert_distribution_recorder_1700000000.pt")

    assert found.loads.dtype == torch.float64
    assert torch.equal(found.loads, counts.double())
    assert not found.loads[:, :DENSE_LAYERS].any()
    assert found.notes == (STAT_FOUND.format(10),)
    assert found.placement is None


def test_a_wrapped_buffer_is_noted_and_kept_in_the_files_order() -> None:
    """SGLang's reset keeps the write position: a recording that starts near the buffer's end
    wraps before the buffer fills, leaving the unwritten steps between newest and oldest."""
    counts = torch.cat([_busy_steps(3, seed=1), _idle_steps(4), _busy_steps(3, seed=2)])

    found = read_load_file(_stat_dump(counts), "dump.pt")

    assert torch.equal(found.loads, counts.double())
    assert found.notes == (
        STAT_FOUND.format(10),
        (
            "steps 3-6 hold no counts between steps with counts: SGLang's circular buffer wrapped, "
            "it seems (a recording continues where the previous one stopped), so steps 7-9 were "
            "recorded before steps 0-2; they are kept in the file's order"
        ),
    )


def test_a_full_buffer_is_noted_as_possibly_wrapped() -> None:
    found = read_load_file(_stat_dump(_busy_steps(6)), "dump.pt")

    assert found.notes[1].startswith(
        "all 6 steps hold counts: if the recording ran more "
        "forward passes than SGLang's circular buffer holds"
    )


def test_scattered_idle_steps_are_noted_as_empty_passes() -> None:
    counts = torch.cat(
        [_busy_steps(2), _idle_steps(1), _busy_steps(2), _idle_steps(1), _busy_steps(1)]
    )

    found = read_load_file(_stat_dump(counts), "dump.pt")

    assert found.notes[1].startswith(
        "2 steps between steps with counts hold none (SGLang "
        "records an empty step for a forward pass"
    )


def test_a_one_window_logical_count_has_no_buffer_notes() -> None:
    """SGLang's --init-expert-location also takes a 2-D ``logical_count``."""
    window = _busy_steps(1)[0]

    found = read_load_file(_pt({"logical_count": window}), "init.pt")

    assert found == LoadFile(found.loads, (), None)
    assert torch.equal(found.loads, window.double())


def test_the_same_dump_as_json_reads_the_same() -> None:
    counts = torch.cat([_busy_steps(2), _idle_steps(2), _busy_steps(2)])
    as_json = json.dumps({"rank": 0, "logical_count": counts.tolist()}).encode()

    from_json = read_load_file(as_json, "dump.json")
    from_pt = read_load_file(_stat_dump(counts), "dump.pt")

    assert torch.equal(from_json.loads, from_pt.loads)
    assert from_json.notes == from_pt.notes


def test_read_loads_is_read_load_files_loads() -> None:
    data = _stat_dump(_busy_steps(3))

    assert torch.equal(read_loads(data, "dump.pt"), read_load_file(data, "dump.pt").loads)


def test_load_file_is_frozen() -> None:
    found = read_load_file(b"1,2\n", "x.csv")

    with pytest.raises(dataclasses.FrozenInstanceError):
        found.loads = torch.zeros(1)  # type: ignore[misc]


# --- per_pass and per_token: one file per rank, physical slots mapped to experts --------------

# 2 layers, 4 slots, 3 experts: slot s of layer l holds expert MAP[l, s].
MAP = torch.tensor([[0, 1, 2, 0], [1, 1, 0, 2]])
SLOT_ONES = torch.ones(2, 4, dtype=torch.int32)


def _record(pass_id: int, rank: int = 0, **data: object) -> dict:
    return {"forward_pass_id": pass_id, "rank": rank, "gatherer_key": "primary", **data}


def _detail_dump(records: list[dict], placement: torch.Tensor = MAP) -> bytes:
    """``_DetailAccumulator.dump``'s file."""
    return _pt({"records": records, "last_physical_to_logical_map": placement})


def test_a_per_pass_dump_counts_each_pass_per_expert_in_pass_order() -> None:
    slots = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]], dtype=torch.int32)
    records = [
        _record(7, global_physical_count=slots * 3),
        _record(2, global_physical_count=slots),
        _record(5, global_physical_count=slots * 2),
    ]

    found = read_load_file(_detail_dump(records), "expert_distribution_recorder_1.0_0.pt")

    # layer 0: expert 0 <- slots 0 and 3 (1 + 4), expert 1 <- slot 1, expert 2 <- slot 2;
    # layer 1: expert 0 <- slot 2 (7), expert 1 <- slots 0 and 1 (5 + 6), expert 2 <- slot 3.
    one_pass = torch.tensor([[5.0, 2, 3], [7, 11, 8]])
    assert found.loads.dtype == torch.float64
    assert torch.equal(found.loads, torch.stack([one_pass, one_pass * 2, one_pass * 3]))
    assert torch.equal(found.placement, MAP)
    assert found.notes == (
        (
            "SGLang expert distribution dump (per_pass mode): 3 forward passes x 2 layers x 3 "
            "experts, each slot's count added to the expert that last_physical_to_logical_map "
            "places there (the map at the dump: passes recorded before a rebalance are counted "
            "with it too)"
        ),
        (
            "the file holds the records of rank 0: SGLang writes one file per rank, each with its "
            "rank's share of the tokens"
        ),
    )


def test_records_of_one_pass_from_several_ranks_add_up() -> None:
    """As SGLang's eplb_simulator reader merges the ranks' files."""
    ones = torch.ones(2, 4, dtype=torch.int32)
    records = [
        _record(0, rank=0, global_physical_count=ones),
        _record(0, rank=1, global_physical_count=ones * 10),
    ]

    found = read_load_file(_detail_dump(records), "dump.pt")

    assert found.loads.tolist() == [[[22, 11, 11], [11, 22, 11]]]
    assert found.notes[1].startswith("the file holds the records of ranks 0, 1:")


def test_a_per_token_dump_counts_the_tokens_routed_to_each_slot() -> None:
    topk = torch.tensor(
        [
            [[0, 3], [1, -1], [2, 2]],  # layer 0: 3 tokens, top-2, -1 unused
            [[3, 0], [1, 1], [2, -1]],
        ],
        dtype=torch.int32,
    )
    records = [
        _record(
            pass_id,
            rank=1,
            input_ids=[11, 12, 13],
            positions=[0, 1, 2],
            extend_seq_lens=[3],
            forward_mode=1,
            topk_ids_of_layer=topk,
            misc_objects=[],
        )
        for pass_id in (0, 1)
    ]

    found = read_load_file(_detail_dump(records), "dump.pt")

    # layer 0 slots [1, 1, 2, 1] -> experts [0: 1 + 1, 1: 1, 2: 2];
    # layer 1 slots [1, 2, 1, 1] -> experts [0: 1, 1: 1 + 2, 2: 1].
    assert found.loads.tolist() == [[[2, 1, 2], [1, 3, 1]]] * 2
    assert found.notes[0].startswith(
        "SGLang expert distribution dump (per_token mode): 2 forward passes x 2 layers x 3 experts"
    )
    assert found.notes[1].startswith("the file holds the records of rank 1:")


def test_read_placement_reads_the_map_a_dump_carries() -> None:
    records = [_record(0, global_physical_count=SLOT_ONES)]

    placement = read_placement(_detail_dump(records), "dump.pt")

    assert placement.dtype == torch.int64
    assert torch.equal(placement, MAP)


@pytest.mark.parametrize(
    ("dump", "message"),
    [
        pytest.param(
            {"records": [_record(0, global_physical_count=torch.ones(2, 4))]},
            "found SGLang's per_pass / per_token records without 'last_physical_to_logical_map'",
            id="no-map",
        ),
        pytest.param(
            {"records": [], "last_physical_to_logical_map": MAP},
            "found 'records' that is not a non-empty list of dicts",
            id="no-records",
        ),
        pytest.param(
            {"records": [_record(0, counts=[1, 2])], "last_physical_to_logical_map": MAP},
            "record 0 holds no tensor under 'global_physical_count'; expected SGLang's "
            "per_pass records",
            id="unknown-record",
        ),
        pytest.param(
            {
                "records": [_record(0, global_physical_count=SLOT_ONES[:, :3])],
                "last_physical_to_logical_map": MAP,
            },
            r"record 0 (global_physical_count): found shape [2, 3]; expected [2, 4] like "
            "last_physical_to_logical_map",
            id="per-pass-shape",
        ),
        pytest.param(
            {
                "records": [_record(0, global_physical_count=torch.ones(2, 4))],
                "last_physical_to_logical_map": MAP,
            },
            "record 0 (global_physical_count): found a torch.float32 tensor; expected integers",
            id="per-pass-floats",
        ),
        pytest.param(
            {
                "records": [_record(0, global_physical_count=-SLOT_ONES)],
                "last_physical_to_logical_map": MAP,
            },
            "record 0 (global_physical_count): found a negative count",
            id="negative",
        ),
        pytest.param(
            {
                "records": [_record(0, topk_ids_of_layer=torch.full((2, 1, 2), 4))],
                "last_physical_to_logical_map": MAP,
            },
            "record 0 (topk_ids_of_layer): found slot id 4; last_physical_to_logical_map "
            "has slots 0-3",
            id="per-token-slot-out-of-range",
        ),
        pytest.param(
            {
                "records": [_record(0, topk_ids_of_layer=torch.zeros(3, 1, 2, dtype=torch.int32))],
                "last_physical_to_logical_map": MAP,
            },
            "record 0 (topk_ids_of_layer): found shape [3, 1, 2]; expected [2, tokens, top_k]",
            id="per-token-layers",
        ),
        pytest.param(
            {
                "records": [_record(0, global_physical_count=SLOT_ONES)],
                "last_physical_to_logical_map": MAP.double() / 2,
            },
            "'last_physical_to_logical_map': found fractions",
            id="map-with-fractions",
        ),
    ],
)
def test_malformed_detail_dumps_are_format_errors(dump: dict, message: str) -> None:
    with pytest.raises(LoadFormatError) as raised:
        read_load_file(_pt(dump), "dump.pt")

    assert str(raised.value).startswith(message), str(raised.value)


def test_records_that_repeat_one_tensor_beyond_the_file_are_refused() -> None:
    """Each record's counts are a stride-0 view of one number: they declare far more bytes
    than the file holds, and would cost that much work."""
    wide_map = torch.arange(8192).repeat(2, 1)
    repeated = torch.zeros(1, dtype=torch.int32).expand(2, 8192)
    dump = _detail_dump(
        [_record(pass_id, global_physical_count=repeated) for pass_id in range(50)], wide_map
    )

    with pytest.raises(
        LoadFormatError,
        match=r"^the records' tensors declare 3,276,800 bytes but "
        r"the file holds [\d,]+: they repeat or expand",
    ):
        read_load_file(dump, "dump.pt")


def test_detail_dump_limits_are_checked_before_counting() -> None:
    records = [
        _record(pass_id, global_physical_count=torch.ones(2, 4, dtype=torch.int32))
        for pass_id in range(4)
    ]
    limits = Limits(max_elements=20, names={"max_elements": "EPLB_MAX_ELEMENTS"})

    with pytest.raises(
        LimitError,
        match=r"^too many load values \(4 x 2 x 3\): 24; this server "
        r"takes at most 20 \(EPLB_MAX_ELEMENTS\)$",
    ):
        read_load_file(_detail_dump(records), "dump.pt", limits=limits)
    with pytest.raises(LimitError, match="too many slots: 4"):
        read_load_file(_detail_dump(records), "dump.pt", limits=Limits(max_replicas=3))


def test_a_placement_next_to_logical_count_is_read_as_the_placement() -> None:
    data = json.dumps(
        {"logical_count": [[1, 2, 3], [4, 5, 6]], "physical_to_logical_map": MAP.tolist()}
    ).encode()

    found = read_load_file(data, "loads.json")

    assert torch.equal(found.placement, MAP)
    assert found.loads.tolist() == [[1, 2, 3], [4, 5, 6]]
