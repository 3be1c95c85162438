"""Hostile load and placement files: every refusal is a ``LoadFormatError`` or a ``LimitError``
(an ``EPLBError``, a 422 in the app), never another exception; bombs are refused before they
inflate, with the peak memory of a fresh process as evidence."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pytest
import torch

from eplb_core.errors import EPLBError, LimitError, LoadFormatError
from eplb_core.io import read_loads, read_placement
from eplb_core.limits import Limits

REPO = Path(__file__).resolve().parents[2]
LIMITS = Limits(
    max_layers=1024,
    max_experts=4096,
    max_replicas=16384,
    max_elements=64 * 1024 * 1024,
    names={"max_elements": "EPLB_MAX_ELEMENTS", "max_replicas": "EPLB_MAX_REPLICAS"},
)
READERS = [pytest.param(read_loads, id="loads"), pytest.param(read_placement, id="placement")]


def _pt(obj: object) -> bytes:
    buffer = BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _stride_zero_bomb(shape: tuple[int, ...] = (128, 1024, 4096)) -> bytes:
    """About 1.6 KB declaring ``prod(shape)`` float32 zeros: one stored number, expanded."""
    return _pt(torch.zeros(1).expand(*shape))


def _deflate_bomb(megabytes: int) -> bytes:
    """torch.save's archive of a small tensor whose storage entry is rewritten as a deflated
    run of ``megabytes`` MiB of zeros (about 1 KB each once compressed)."""
    archive = zipfile.ZipFile(BytesIO(_pt(torch.zeros(2, 2))))
    out = BytesIO()
    with zipfile.ZipFile(out, "w") as bomb:
        for entry in archive.infolist():
            if not entry.filename.endswith("/data/0"):
                bomb.writestr(entry, archive.read(entry))
                continue
            deflated = zipfile.ZipInfo(entry.filename)
            deflated.compress_type = zipfile.ZIP_DEFLATED
            with bomb.open(deflated, "w", force_zip64=True) as stream:
                zeros = bytes(1 << 20)
                for _ in range(megabytes):
                    stream.write(zeros)
    return out.getvalue()


def _refusal(read, data: bytes, filename: str, limits: Limits | None = None) -> EPLBError:
    with pytest.raises(EPLBError) as raised:
        read(data, filename, limits=limits)
    return raised.value


# --- JSON -------------------------------------------------------------------------------------


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            b"[" * 100_000 + b"]" * 100_000,
            "^the JSON nests arrays or objects too deeply to read; loads and placements "
            r"nest 3 arrays at most: \[steps\]\[layers\]\[experts\]$",
            id="100k-deep",
        ),
        pytest.param(
            b"[[" + b"7" * 5_000 + b"]]",
            r"^found the number '777777777777'\.\.\. \(5,000 characters\) in the JSON, "
            r"beyond the range of a float64 \(about 1\.8e308\); expected finite numbers$",
            id="5000-digit-integer",
        ),
        pytest.param(
            b"[[1, 1e400]]",
            "^found the number '1e400' in the JSON, beyond the range of a float64",
            id="1e400",
        ),
        pytest.param(b"[[1, -1E+999]]", "^found the number '-1E\\+999' in the JSON", id="-1e999"),
        pytest.param(
            b"[[1, Infinity]]",
            "^found Infinity in the JSON; expected finite numbers$",
            id="Infinity",
        ),
        pytest.param(b"[[-Infinity, 1]]", "^found -Infinity in the JSON", id="-Infinity"),
        pytest.param(b"[[1, true]]", r"\(\[0, 1\] is a boolean\)", id="boolean"),
        pytest.param(b"[[1, {}]]", r"\(\[0, 1\] is an object\)", id="object-in-a-row"),
        pytest.param(b"[[1, 2], [3, [4]]]", r"\(\[1, 1\] is a list\)", id="list-in-a-row"),
    ],
)
def test_hostile_json_is_a_format_error(read, data: bytes, message: str) -> None:
    error = _refusal(read, data, "x.json")

    assert isinstance(error, LoadFormatError)
    assert re.search(message, str(error)), str(error)


def test_a_long_integer_that_fits_a_float64_is_read_as_a_float() -> None:
    """Past 18 digits a JSON integer is read as a float: 20 digits fit, and are one count."""
    assert read_loads(b"[[12345678901234567890, 1]]", "x.json").tolist() == [
        [12345678901234567890.0, 1.0]
    ]


def test_a_ragged_list_that_declares_a_huge_shape_is_refused_before_torch_tensor() -> None:
    """Its first row declares 10,000 x 20,000 numbers; the other rows are empty."""
    data = b"[[" + b"0," * 19_999 + b"0]" + b",[]" * 9_999 + b"]"

    with pytest.raises(
        LoadFormatError,
        match=r"\(\[1\] holds 0 values where \[0\] holds "
        r"20,000 values\)",
    ):
        read_loads(data, "x.json")
    with pytest.raises(
        LimitError,
        match=r"too many load values \(10,000 x 20,000\): "
        r"200,000,000; this server takes at most "
        r"67,108,864 \(EPLB_MAX_ELEMENTS\)",
    ):
        read_loads(
            data, "x.json", limits=Limits(max_elements=LIMITS.max_elements, names=LIMITS.names)
        )


# --- .pt tensors of every kind --------------------------------------------------------------

FLOAT8_DTYPES = [
    getattr(torch, name)
    for name in (
        "float8_e4m3fn",
        "float8_e5m2",
        "float8_e4m3fnuz",
        "float8_e5m2fnuz",
        "float8_e8m0fnu",
    )
    if hasattr(torch, name)
]


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize(
    "dtype", [*FLOAT8_DTYPES, torch.complex64, torch.complex128, torch.bool], ids=str
)
def test_tensors_of_other_dtypes_are_refused_by_name(read, dtype: torch.dtype) -> None:
    tensor = torch.ones(2, 3).to(dtype)

    error = _refusal(read, _pt(tensor), "x.pt")

    assert isinstance(error, LoadFormatError)
    assert str(error) == (
        f"found a {dtype} tensor; expected numbers: integers, or float16, "
        f"bfloat16, float32 or float64"
    )


def _quietly(make: Callable[[], torch.Tensor]) -> torch.Tensor:
    """A tensor of a beta or deprecated kind, made without torch's warning about it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return make()


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize(
    ("tensor", "found"),
    [
        pytest.param(
            torch.eye(3).to_sparse(),
            r"found a sparse tensor \(torch.sparse_coo\); save "
            r"it dense \(tensor.to_dense\(\)\)",
            id="sparse-coo",
        ),
        pytest.param(
            _quietly(torch.eye(3).to_sparse_csr),
            r"found a sparse tensor \(torch.sparse_csr\)",
            id="sparse-csr",
        ),
        pytest.param(
            torch.eye(3).to_sparse_csc(),
            r"found a sparse tensor \(torch.sparse_csc\)",
            id="sparse-csc",
        ),
        pytest.param(
            torch.eye(4).to_sparse_bsr((2, 2)),
            r"found a sparse tensor \(torch.sparse_bsr\)",
            id="sparse-bsr",
        ),
        pytest.param(
            _quietly(lambda: torch.quantize_per_tensor(torch.ones(2, 3), 0.5, 0, torch.quint8)),
            r"found a quantized torch.quint8 tensor; save it dequantized",
            id="quantized",
        ),
        pytest.param(
            _quietly(lambda: torch.nested.nested_tensor([torch.ones(2), torch.ones(3)])),
            r"found a nested tensor \(its rows differ in length\)",
            id="nested",
        ),
    ],
)
@pytest.mark.filterwarnings("ignore:TypedStorage is deprecated")  # torch.load of a quantized one
def test_tensors_of_other_layouts_are_refused_by_name(
    read, tensor: torch.Tensor, found: str
) -> None:
    error = _refusal(read, _pt(tensor), "x.pt")

    assert isinstance(error, LoadFormatError)
    assert re.match(found, str(error)), str(error)


@pytest.mark.parametrize(
    ("dtype", "count"),
    [
        (torch.uint16, 65_535),
        (torch.uint32, 4_000_000_000),
        (torch.uint64, 2**53),
        (torch.int8, 127),
        (torch.int16, 32_767),
        (torch.bfloat16, 256.0),
        (torch.float16, 2048.0),
    ],
)
def test_integer_and_half_precision_counts_convert_exactly(
    dtype: torch.dtype, count: float
) -> None:
    tensor = torch.tensor([[count, 0], [1, 2]], dtype=dtype)

    loads = read_loads(_pt(tensor), "x.pt")

    assert loads.dtype == torch.float64
    assert loads.tolist() == [[count, 0], [1, 2]]


@pytest.mark.parametrize(
    "tensor",
    [
        pytest.param(torch.ones(2, 3, requires_grad=True), id="requires-grad"),
        pytest.param(torch.nn.Parameter(torch.ones(2, 3)), id="parameter"),
    ],
)
def test_a_tensor_that_requires_grad_is_read_detached(tensor: torch.Tensor) -> None:
    loads = read_loads(_pt(tensor), "x.pt")
    placement = read_placement(_pt(tensor), "x.pt")

    assert type(loads) is torch.Tensor and not loads.requires_grad
    assert loads.tolist() == [[1, 1, 1], [1, 1, 1]]
    assert type(placement) is torch.Tensor and not placement.requires_grad


def test_a_stride_zero_view_within_the_limits_is_read_as_a_plain_tensor() -> None:
    loads = read_loads(_stride_zero_bomb((2, 3)), "x.pt", limits=LIMITS)

    assert loads.tolist() == [[0, 0, 0], [0, 0, 0]]
    assert loads.is_contiguous()
    loads[0, 0] = 1  # a copy: writing one element writes one element
    assert loads.sum() == 1


# --- .pt containers ---------------------------------------------------------------------------


def _legacy_pt() -> bytes:
    buffer = BytesIO()
    torch.save(torch.ones(2, 2), buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


GOOD_PT = _pt(torch.ones(2, 2))


@pytest.mark.parametrize("read", READERS)
@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "the file is empty; expected a .pt file torch.save wrote", id="empty"),
        pytest.param(
            b"GIF89a\x01\x00",
            "the file is not a .pt file torch.save wrote (it is not a zip archive)",
            id="neither-zip-nor-pickle",
        ),
        pytest.param(
            b"[[1, 2]]",
            "the file is not a .pt file torch.save wrote (it is not a zip archive)",
            id="json-named-pt",
        ),
        pytest.param(
            _legacy_pt(),
            "the file is not a .pt file torch.save wrote (a pickle, such as "
            "torch's legacy format from torch < 1.6",
            id="legacy-pickle",
        ),
        pytest.param(
            b"\x80\x04junk",
            "the file is not a .pt file torch.save wrote (a pickle,",
            id="other-pickle",
        ),
        pytest.param(
            GOOD_PT[: len(GOOD_PT) // 2],
            "the file is not a .pt file torch.save wrote (a "
            "damaged or truncated zip archive: File is not a "
            "zip file)",
            id="truncated-half",
        ),
        pytest.param(
            GOOD_PT[:-8],
            "the file is not a .pt file torch.save wrote (a damaged or truncated zip archive",
            id="truncated-end",
        ),
        pytest.param(
            b"PK\x03\x04" + bytes(200),
            "the file is not a .pt file torch.save wrote (a damaged or truncated zip archive",
            id="zip-magic-only",
        ),
        pytest.param(
            _deflate_bomb(1),
            "the file is not a .pt file torch.save wrote (its entry "
            "'archive/data/0' is compressed, deflate: ",
            id="compressed-entry",
        ),
    ],
)
def test_files_that_are_not_torch_save_archives_are_refused(
    read, data: bytes, message: str
) -> None:
    error = _refusal(read, data, "x.pt")

    assert isinstance(error, LoadFormatError)
    assert str(error).startswith(message), str(error)


def test_a_compressed_entry_message_says_what_it_unpacks_to() -> None:
    error = _refusal(read_loads, _deflate_bomb(4), "x.pt")

    assert str(error).endswith(
        "bytes that unpack to 4,194,304; torch.save stores its entries "
        "uncompressed): upload the file torch.save wrote"
    )


def _declaring(data: bytes, name_suffix: str, size: int) -> bytes:
    """``data`` with the central directory record of the entry ending in ``name_suffix``
    declaring ``size`` bytes, compressed and uncompressed (the entry stays stored)."""
    patched = bytearray(data)
    offset = patched.find(b"PK\x01\x02")
    while offset >= 0:
        name_length = int.from_bytes(patched[offset + 28 : offset + 30], "little")
        if patched[offset + 46 : offset + 46 + name_length].decode().endswith(name_suffix):
            patched[offset + 20 : offset + 28] = size.to_bytes(4, "little") * 2
            return bytes(patched)
        offset = patched.find(b"PK\x01\x02", offset + 4)
    raise AssertionError(f"no entry ending in {name_suffix}")


@pytest.mark.parametrize("read", READERS)
def test_an_entry_that_declares_more_bytes_than_the_file_holds_is_refused(read) -> None:
    data = _declaring(GOOD_PT, "/data/0", 1 << 30)

    error = _refusal(read, data, "x.pt")

    assert isinstance(error, LoadFormatError)
    assert re.fullmatch(
        rf"the file is not a \.pt file torch\.save wrote \(its entries declare "
        rf"1,073,74\d,\d{{3}} bytes but the file holds {len(data):,}\)",
        str(error),
    ), str(error)


# --- placements -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (
            _pt(torch.tensor([[0.0, 1.5]])),
            "x.pt",
            "found fractions; a placement holds whole expert ids",
        ),
        (
            _pt(torch.tensor([[0.0, float("nan")]])),
            "x.pt",
            "found an expert id that is not a finite number; a placement holds whole expert ids",
        ),
        (
            _pt(torch.tensor([[0, -1]])),
            "x.pt",
            r"found expert id -1 at index \[0, 1\]; expert ids are whole numbers from 0",
        ),
        (
            _pt(torch.tensor([[0, 2**40]])),
            "x.pt",
            r"found expert id 1\.09951e\+12 at index \[0, 1\]",
        ),
        (b"[[0, 1e300]]", "x.json", r"found expert id 1e\+300 at index \[0, 1\]"),
        (b"0;-1\n", "x.csv", "row 1, column 2: '-1' is negative; expert ids are >= 0"),
        (
            b'{"phy2log": [[0, 1], [2]]}',
            "x.json",
            r"^'phy2log': found a list that is not a rectangular array",
        ),
    ],
)
def test_placements_hold_whole_ids_from_zero(data: bytes, filename: str, message: str) -> None:
    with pytest.raises(LoadFormatError, match=message):
        read_placement(data, filename)


def test_placement_limits_count_slots_against_max_replicas() -> None:
    with pytest.raises(
        LimitError,
        match=r"^too many slots: 1,073,741,824; this server takes at "
        r"most 16,384 \(EPLB_MAX_REPLICAS\)$",
    ):
        read_placement(_stride_zero_bomb((2, 1 << 30)), "x.pt", limits=LIMITS)


# --- bombs: refused before they inflate, in a fresh process -----------------------------------

_MEASURE = """
import json, resource, sys
from eplb_core.io import read_loads, read_placement
from eplb_core.limits import Limits

limits = Limits(**json.loads(sys.argv[1]))
read_loads(open(sys.argv[2], "rb").read(), "warm-up.pt")  # torch.load's lazy imports
results = {}
for path in sys.argv[3:]:
    data = open(path, "rb").read()
    read = read_placement if "placement" in path else read_loads
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        read(data, "bomb.pt", limits=limits)
        outcome = "read"
    except Exception as error:
        outcome = f"{type(error).__name__}: {error}"
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results[path] = {"outcome": outcome, "grew_mib": (after - before) / 1024, "size": len(data)}
print(json.dumps(results))
"""
BOMB_LIMITS = {
    "max_layers": 1024,
    "max_experts": 4096,
    "max_replicas": 16384,
    "max_elements": 16 * 1024 * 1024,
}
BOUNDED_MIB = 64  # a bomb's own payload is 128 MiB (deflate) to 2 GiB and more (stride 0)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Each bomb read once in one fresh process: its outcome and how much the peak RSS grew."""
    folder = tmp_path_factory.mktemp("bombs")
    deflated = _deflate_bomb(128)
    files = {
        "stride0-loads": _stride_zero_bomb((128, 1024, 4096)),  # 2 GiB as float32, 4 as float64
        "stride0-placement": _stride_zero_bomb((1024, 1 << 20)),
        "deflate-loads": deflated,
        "deflate-placement": deflated,
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.pt"
        paths[name].write_bytes(data)
    warm_up = folder / "warm-up.pt"
    warm_up.write_bytes(GOOD_PT)
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            _MEASURE,
            json.dumps(BOMB_LIMITS),
            str(warm_up),
            *map(str, paths.values()),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    measured = json.loads(run.stdout)
    return {name: measured[str(path)] for name, path in paths.items()}


def test_the_stride_zero_bomb_is_refused_on_its_declared_shape(bombs: dict) -> None:
    result = bombs["stride0-loads"]

    assert result["size"] < 2_000
    assert result["outcome"] == (
        "LimitError: too many load values (128 x 1,024 x 4,096): "
        "536,870,912; this server takes at most 16,777,216 "
        "(max_elements)"
    )
    assert result["grew_mib"] < BOUNDED_MIB


def test_the_stride_zero_placement_is_refused_on_its_declared_shape(bombs: dict) -> None:
    result = bombs["stride0-placement"]

    assert result["outcome"].startswith("LimitError: too many slots: 1,048,576")
    assert result["grew_mib"] < BOUNDED_MIB


@pytest.mark.parametrize("name", ["deflate-loads", "deflate-placement"])
def test_the_deflate_bomb_is_refused_before_it_inflates(bombs: dict, name: str) -> None:
    result = bombs[name]

    assert result["size"] < 150_000
    assert result["outcome"].startswith(
        "LoadFormatError: the file is not a .pt file torch.save "
        "wrote (its entry 'archive/data/0' is compressed, "
        "deflate: "
    )
    assert "unpack to 134,217,728;" in result["outcome"]
    assert result["grew_mib"] < BOUNDED_MIB
