"""The ``eplb`` command line: output, files written, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import torch

from eplb_core import Cluster, PlanOptions, rebalance_experts
from eplb_core.cli import main
from eplb_core.io import format_csv_matrix, read_csv_matrix
from eplb_core.metrics import score
from eplb_core.replay import replay
from eplb_core.sweep import sweep
from eplb_core.synthetic import EXAMPLE_SEED, drifting_series, zipf_loads

CLUSTER = ["--replicas", "24", "--groups", "4", "--nodes", "2", "--gpus", "8"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def window_csv(tmp_path: Path) -> Path:
    path = tmp_path / "loads.csv"
    path.write_text(format_csv_matrix(zipf_loads(layers=6, experts=16)))
    return path


@pytest.fixture
def series() -> torch.Tensor:
    return drifting_series(40, layers=6, experts=16).long()


@pytest.fixture
def dump_pt(tmp_path: Path, series: torch.Tensor) -> Path:
    """A file shaped like SGLang's expert distribution dump."""
    path = tmp_path / "expert_distribution_recorder_1.pt"
    torch.save(
        {"rank": 0, "logical_count": series, "average_utilization_rate_over_window": None}, path
    )
    return path


def test_rebalance_prints_a_table_and_writes_the_files(window_csv, tmp_path, capsys):
    plan, map_json, map_pt = tmp_path / "plan.json", tmp_path / "map.json", tmp_path / "map.pt"
    code = main(
        [
            "rebalance",
            str(window_csv),
            *CLUSTER,
            "--algorithm",
            "greedy",
            "-o",
            str(plan),
            "--export-json",
            str(map_json),
            "--export-pt",
            str(map_pt),
        ]
    )
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")

    weight = zipf_loads(layers=6, experts=16)
    phy2log, log2phy, logcnt = rebalance_experts(weight, 24, 4, 2, 8, algorithm="greedy")
    balance = score(weight, phy2log, Cluster(24, 4, 2, 8), logcnt).mean_balancedness
    lines = out.splitlines()
    assert lines[0] == "loads: 6 layers x 16 experts"
    assert lines[1] == "cluster: 24 slots, 4 groups, 2 nodes, 8 GPUs; policy hierarchical"
    assert lines[4].split()[:2] == ["greedy", f"{balance:.4f}"]
    assert f"wrote {plan}" in lines

    assert json.loads(plan.read_text()) == {
        "phy2log": phy2log.tolist(),
        "log2phy": log2phy.tolist(),
        "logcnt": logcnt.tolist(),
    }
    assert json.loads(map_json.read_text()) == {"physical_to_logical_map": phy2log.tolist()}
    exported = torch.load(map_pt, weights_only=True)["physical_to_logical_map"]
    assert (exported.dtype, tuple(exported.shape)) == (torch.int64, (6, 24))
    assert torch.equal(exported, phy2log)


def test_rebalance_from_the_current_placement_keeping_slots(window_csv, tmp_path, capsys):
    current = tmp_path / "current.pt"
    main(
        [
            "rebalance",
            str(window_csv),
            *CLUSTER,
            "--algorithm",
            "greedy",
            "--export-pt",
            str(current),
        ]
    )
    capsys.readouterr()
    # Re-planning the same loads from the plan already in place moves nothing once slots are
    # kept: the plan's GPUs hold the same experts.
    assert (
        main(
            [
                "rebalance",
                str(window_csv),
                *CLUSTER,
                "--algorithm",
                "greedy",
                "--current",
                str(current),
                "--keep-slots",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "moves: 0 of 144 slots change expert (slots kept)" in out
    assert out.splitlines()[3].split()[0] == "current"


def test_rebalance_renumbering_gpus_finds_a_relabelled_plan_in_place(window_csv, tmp_path, capsys):
    current = tmp_path / "current.json"
    main(
        [
            "rebalance",
            str(window_csv),
            *CLUSTER,
            "--algorithm",
            "greedy",
            "--export-json",
            str(current),
        ]
    )
    placement = torch.tensor(json.loads(current.read_text())["physical_to_logical_map"])
    # The same plan with its two nodes swapped: renumbering the nodes puts it back.
    swapped = tmp_path / "swapped.json"
    halves = placement.view(placement.shape[0], 2, -1).flip(1).flatten(1)
    swapped.write_text(json.dumps({"phy2log": halves.tolist()}))
    capsys.readouterr()
    assert (
        main(
            [
                "rebalance",
                str(window_csv),
                *CLUSTER,
                "--algorithm",
                "greedy",
                "--current",
                str(swapped),
                "--renumber-gpus",
                "--keep-slots",
            ]
        )
        == 0
    )
    assert "moves: 0 of 144 slots change expert (GPUs renumbered, slots kept)" in (
        capsys.readouterr().out
    )


def test_replay_of_an_sglang_dump(dump_pt, series, tmp_path, capsys):
    out_json = tmp_path / "replay.json"
    code = main(
        [
            "replay",
            str(dump_pt),
            "--window",
            "10",
            *CLUSTER,
            "--algorithms",
            "greedy",
            "--json",
            str(out_json),
            "--no-progress",
        ]
    )
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")

    expected = replay(series.double(), 10, Cluster(24, 4, 2, 8), algorithms=["greedy"])
    lines = out.splitlines()
    assert lines[0] == (
        "series: 40 steps x 6 layers x 16 experts; 4 windows of 10 steps "
        "(0 steps dropped), 3 scored"
    )
    assert lines[1].split() == [
        "strategy",
        "in-sample",
        "next",
        "window",
        "moves/window",
        "GiB/window",
    ]
    greedy = expected.strategies["greedy"]
    gib = greedy.total_moves / 3 * 44_040_192 / (1 << 30)
    assert lines[3].split() == [
        "greedy",
        f"{greedy.mean_in_sample:.4f}",
        f"{greedy.mean_next_window:.4f}",
        f"{greedy.total_moves / 3:.1f}",
        f"{gib:.1f}",
    ]
    written = json.loads(out_json.read_text())
    document = json.loads(json.dumps(expected.as_dict()))
    assert written.pop("elapsed_ms") > 0 and document.pop("elapsed_ms") > 0
    # The file's own notes come first (what the reader recognised), then the replay's.
    notes, replay_notes = written.pop("notes"), document.pop("notes")
    assert (
        notes[0] == "SGLang expert distribution dump (stat mode): 40 steps x 6 layers x 16 experts"
    )
    assert notes[len(notes) - len(replay_notes) :] == replay_notes
    assert written == document


def test_replay_progress_bar_on_stderr(dump_pt, capsys):
    assert (
        main(
            [
                "replay",
                str(dump_pt),
                "--window",
                "10",
                *CLUSTER,
                "--algorithms",
                "greedy",
                "--progress",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    assert err.endswith("planning [##############################] 3/3 windows\n")


@pytest.mark.parametrize(
    "make_args, message",
    [
        (
            lambda paths: ["rebalance", str(paths["missing"]), *CLUSTER],
            "cannot read {missing}: No such file or directory",
        ),
        (
            lambda paths: ["rebalance", str(paths["bad"]), *CLUSTER],
            "found an object with keys 'counts'; expected a nested list",
        ),
        (
            lambda paths: [
                "rebalance",
                str(paths["csv"]),
                "--replicas",
                "25",
                "--groups",
                "4",
                "--nodes",
                "2",
                "--gpus",
                "8",
            ],
            "25 slots cannot be split evenly over 8 GPUs",
        ),
        (
            lambda paths: ["replay", str(paths["csv"]), "--window", "10", *CLUSTER],
            "replay needs a time series [steps, layers, experts]; {csv} holds one window of shape "
            "[6, 16]",
        ),
        (
            lambda paths: ["replay", str(paths["dump"]), "--window", "30", *CLUSTER],
            "a replay needs at least 2 windows of 30 steps; the series has 40 steps with load",
        ),
        (
            lambda paths: [
                "replay",
                str(paths["dump"]),
                "--window",
                "10",
                *CLUSTER,
                "--current",
                str(paths["csv"]),
            ],
            "the placement has shape [6, 16]; this plan needs [6, 24] (layers, slots)",
        ),
    ],
)
def test_bad_input_exits_1_with_one_line(make_args, message, window_csv, dump_pt, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"counts": [[1, 2]]}')
    paths = {"missing": tmp_path / "missing.pt", "bad": bad, "csv": window_csv, "dump": dump_pt}
    code = main(make_args(paths))
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1
    assert err.startswith(f"eplb: error: {message.format(**paths)}")


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "eplb: error: the following arguments are required: COMMAND"),
        (
            ["rebalance", "x.csv"],
            "eplb: error: the following arguments are required: --replicas, "
            "--groups, --nodes, --gpus (or --preset)",
        ),
        (
            ["replay", "x.pt", "--window", "ten", *CLUSTER],
            "eplb: error: argument --window: invalid int value: 'ten'",
        ),
        (
            ["rebalance", "x.csv", *CLUSTER, "--algorithm", "magic"],
            "eplb: error: argument --algorithm: invalid choice: 'magic'",
        ),
    ],
)
def test_bad_usage_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(message)


def test_help_exits_0(capsys):
    assert main(["replay", "--help"]) == 0
    assert "--window" in capsys.readouterr().out


def test_the_eplb_script_is_declared():
    (script,) = [point for point in entry_points(group="console_scripts") if point.name == "eplb"]
    assert script.value == "eplb_core.cli:main"


def test_python_m_runs_the_cli(dump_pt, tmp_path):
    command = [
        sys.executable,
        "-m",
        "eplb_core.cli",
        "replay",
        str(dump_pt),
        "--window",
        "20",
        *CLUSTER,
        "--algorithms",
        "greedy",
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("series: 40 steps x 6 layers x 16 experts; 2 windows")
    assert "Traceback" not in done.stderr

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    done = subprocess.run(
        [*command[:4], str(bad), *command[5:]],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("eplb: error: the file is not a .pt file torch.save wrote (")
    assert done.stderr.count("\n") == 1


def test_evaluate_scores_a_plan_as_rebalance_did(window_csv, tmp_path, capsys):
    plan_pt = tmp_path / "plan.pt"
    assert (
        main(
            [
                "rebalance",
                str(window_csv),
                *CLUSTER,
                "--algorithm",
                "greedy",
                "--export-pt",
                str(plan_pt),
                "--json",
                str(tmp_path / "plan.json"),
            ]
        )
        == 0
    )
    planned = json.loads((tmp_path / "plan.json").read_text())
    trivial = tmp_path / "trivial.csv"
    trivial.write_text(format_csv_matrix(torch.arange(24).remainder(16).expand(6, 24)))
    capsys.readouterr()

    assert (
        main(
            [
                "evaluate",
                str(window_csv),
                *CLUSTER,
                "--placement",
                str(plan_pt),
                "--compare",
                str(trivial),
                "--json",
            ]
        )
        == 0
    )
    evaluated = json.loads(capsys.readouterr().out)

    assert evaluated["placement"] == planned["after"]
    assert evaluated["compare"] == planned["before"]
    assert evaluated["moves"] == planned["moves"]
    assert evaluated["speedup"] == pytest.approx(planned["speedup"])

    assert (
        main(
            [
                "evaluate",
                str(window_csv),
                *CLUSTER,
                "--placement",
                str(plan_pt),
                "--compare",
                str(trivial),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert out[2].split() == [
        "plan.pt",
        f"{planned['after']['mean_balancedness']:.4f}",
        f"{planned['after']['worst_max_over_mean']:.4f}",
    ]
    assert out[-1].startswith(
        f"moves: {planned['moves']['total']} slots differ; expected MoE "
        f"speed-up of plan.pt over trivial.csv: "
    )


def test_sweep_prints_each_point_and_the_json_document(dump_pt, capsys):
    assert (
        main(
            [
                "sweep",
                str(dump_pt),
                *CLUSTER[2:],
                "--replicas",
                "16",
                "24",
                "--windows",
                "10",
                "--policies",
                "hierarchical",
                "global",
                "--algorithm",
                "greedy",
                "--no-progress",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in lines[2:6]]
    assert [(row[0], row[1], row[7]) for row in rows] == [
        ("hierarchical", "16", "10"),
        ("hierarchical", "24", "10"),
        ("global", "16", "10"),
        ("global", "24", "10"),
    ]

    assert (
        main(
            [
                "sweep",
                str(dump_pt),
                *CLUSTER[2:],
                "--replicas",
                "16",
                "24",
                "--algorithm",
                "greedy",
                "--json",
            ]
        )
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert [point["num_replicas"] for point in document["points"]] == [16, 24]
    # The in-sample figure does not depend on the window: the table printed it to 4 places.
    assert document["points"][0]["mean_balancedness"] == pytest.approx(float(rows[0][4]), abs=5e-5)


def test_example_writes_files_the_other_commands_read(tmp_path, capsys):
    csv, dump = tmp_path / "loads.csv", tmp_path / "dump.pt"
    assert main(["example", str(csv)]) == 0
    assert main(["example", str(dump), "--steps", "20"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"wrote {csv}", f"wrote {dump}"]

    assert torch.equal(read_csv_matrix(csv.read_text()), zipf_loads(seed=EXAMPLE_SEED))
    counts = torch.load(dump, weights_only=True)["logical_count"]
    assert (counts.dtype, tuple(counts.shape)) == (torch.int32, (20, 61, 256))
    assert int(counts[:, :3].abs().sum()) == 0 and bool((counts[:, 3:].sum(-1) > 0).all())

    assert (
        main(["rebalance", str(dump), "--preset", "deepseek-v3-prefill", "--algorithm", "greedy"])
        == 0
    )
    out = capsys.readouterr().out
    assert "3 of 61 layers carry no load" in out
    assert main(["example", str(tmp_path / "x.txt")]) == 1


def test_rebalance_under_a_move_budget_and_replay_of_budgets(window_csv, dump_pt, tmp_path, capsys):
    in_use = tmp_path / "in-use.csv"
    in_use.write_text(format_csv_matrix(torch.arange(24).remainder(16).expand(6, 24)))
    assert (
        main(
            [
                "rebalance",
                str(window_csv),
                "--replicas",
                "24",
                "--groups",
                "1",
                "--nodes",
                "2",
                "--gpus",
                "8",
                "--current",
                str(in_use),
                "--max-moves",
                "10",
                "--expert-bytes",
                str(1 << 30),
                "--link-gbps",
                "1",
                "--json",
            ]
        )
        == 0
    )
    document = json.loads(capsys.readouterr().out)
    assert document["params"]["max_moves"] == 10 and 0 < document["moves"]["total"] <= 10
    assert document["migration"]["total_bytes"] == document["moves"]["total"] << 30

    assert (
        main(
            [
                "replay",
                str(dump_pt),
                "--window",
                "10",
                *CLUSTER,
                "--algorithms",
                "greedy",
                "--budgets",
                "0.05",
                "full",
                "--no-progress",
            ]
        )
        == 0
    )
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:7]]
    assert rows == ["none", "greedy", "greedy@0.05", "greedy@full", "balancedness:"]


def test_the_bound_is_taken_over_the_layers_with_load_as_the_sweeps(tmp_path, capsys):
    # A dump's dense layers carry no load: their bound (1.0) is left out, as in a sweep.
    series = drifting_series(20, layers=6, experts=16).long()
    series[:, :2] = 0
    path = tmp_path / "dump.pt"
    torch.save({"logical_count": series}, path)
    cluster = Cluster(24, 4, 2, 8)

    assert main(["rebalance", str(path), *CLUSTER, "--algorithm", "greedy"]) == 0
    (line,) = [line for line in capsys.readouterr().out.splitlines() if "upper bound" in line]

    greedy = PlanOptions(algorithm="greedy")
    (point,) = sweep(series.double(), cluster, greedy, num_replicas=[24]).points
    assert line.split()[-1] == f"{point.bound:.4f}"


def test_json_on_stdout_is_the_document_alone_when_files_are_written(window_csv, tmp_path, capsys):
    plan = tmp_path / "plan.json"
    argv = ["rebalance", str(window_csv), *CLUSTER, "--json", "-o", str(plan)]
    assert main(argv) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["plan"]["phy2log"] == json.loads(plan.read_text())["phy2log"]


def test_a_sweep_without_slot_counts_compares_the_default_ones(window_csv, capsys):
    # No --replicas (and no preset): the default slot counts, 16 experts + 0, 1, 2, 4, 8 per GPU.
    assert main(["sweep", str(window_csv), *CLUSTER[2:], "--algorithm", "greedy"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:7]
    assert [int(row.split()[1]) for row in rows] == [16, 24, 32, 48, 80]


def test_a_request_beyond_the_machines_memory_is_one_line(window_csv, capsys, monkeypatch):
    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 1 << 18}  # a machine of 1 GiB
    monkeypatch.setattr(os, "sysconf", pages.__getitem__)
    argv = ["rebalance", str(window_csv), "--replicas", "3200000", *CLUSTER[2:]]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("eplb: error: too many bytes of estimated memory")
    assert "(this machine's memory)" in err and len(err.splitlines()) == 1
