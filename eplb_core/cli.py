"""Command line: plan a placement from a load file, or replay a load time series.

    eplb rebalance LOADS --replicas 288 --groups 8 --nodes 4 --gpus 32 [-o plan.json]
    eplb replay LOADS --window 100 --replicas 288 --groups 8 --nodes 4 --gpus 32

LOADS is a CSV, JSON or ``.pt`` file (see ``eplb_core.io.read_loads``). Bad input ends the
command with exit status 1 and one line ``eplb: error: ...``; bad usage with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

import torch

from .io import (LoadFormatError, map_to_json, map_to_pt, plan_to_json, read_loads,
                 read_placement)
from .metrics import balancedness_bound, evaluate, trivial_placement
from .migration import build_log2phy, count_moves, deploy, validate_placement
from .packing import ALGORITHMS
from .policy import policy_name, rebalance_experts
from .replay import NO_REBALANCING, Replay, replay

PROG = "eplb"
_BAR_WIDTH = 30


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like the input errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``eplb`` parser with its ``rebalance`` and ``replay`` commands."""
    common = _Parser(add_help=False)
    common.add_argument("loads", type=Path, help="load file: .csv, .json or .pt")
    cluster = common.add_argument_group("cluster")
    cluster.add_argument("--replicas", type=int, required=True, help="physical slots per layer")
    cluster.add_argument("--groups", type=int, required=True, help="expert groups")
    cluster.add_argument("--nodes", type=int, required=True, help="server nodes")
    cluster.add_argument("--gpus", type=int, required=True, help="GPUs in all")
    common.add_argument("--seed", type=int, default=0, help="seed of the hybrid (default 0)")
    common.add_argument("--current", type=Path, metavar="PHY2LOG",
                        help="the placement in use (.json, .csv or .pt) instead of the trivial "
                             "layout; moves are counted from it")
    common.add_argument("--keep-slots", action="store_true",
                        help="keep experts that stay on a GPU in their old slots (fewer moves, "
                             "same loads)")
    common.add_argument("--renumber-gpus", action="store_true",
                        help="renumber nodes and GPUs to keep the most experts where they are "
                             "(fewer moves, same balancedness; GPUs may swap loads)")

    parser = _Parser(prog=PROG, description="Expert-parallelism load balancer for MoE inference.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rebalance_parser = commands.add_parser(
        "rebalance", parents=[common], help="plan a placement from a load file",
        description="Plan a placement; a time series is summed over its steps first.")
    rebalance_parser.add_argument("--algorithm", choices=ALGORITHMS, default="hybrid")
    rebalance_parser.add_argument("-o", "--output", type=Path, metavar="PLAN.json",
                                  help="write the full plan (phy2log, log2phy, logcnt) as JSON")
    rebalance_parser.add_argument("--export-json", type=Path, metavar="MAP.json",
                                  help="write physical_to_logical_map as JSON, for SGLang")
    rebalance_parser.add_argument("--export-pt", type=Path, metavar="MAP.pt",
                                  help="write physical_to_logical_map as .pt, for SGLang")
    rebalance_parser.set_defaults(run=_rebalance)

    replay_parser = commands.add_parser(
        "replay", parents=[common], help="plan on each window of a time series, score on the next",
        description="Plan on each window of W steps and score the plan on the next window.")
    replay_parser.add_argument("--window", type=int, required=True, help="steps per window")
    replay_parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS,
                               default=list(ALGORITHMS), help="algorithms to replay (default: all)")
    replay_parser.add_argument("--json", type=Path, metavar="OUT.json",
                               help="write every window's figures as JSON")
    replay_parser.add_argument("--progress", action=argparse.BooleanOptionalAction,
                               help="show a progress bar on stderr (default: when a terminal)")
    replay_parser.set_defaults(run=_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``eplb``; returns the exit status: 0, 1 for bad input, 2 for bad usage (after
    argparse's one-line error; 0 after --help), 130 when interrupted."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        args.run(args)
    except (LoadFormatError, ValueError, OSError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


def _read(path: Path) -> bytes:
    """A file's bytes, with an error that names the file."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise OSError(f"cannot read {path}: {error.strerror or error}") from None


def _write(path: Path, data: bytes | str) -> None:
    """Write a file, with an error that names it; says where it went."""
    try:
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
    except OSError as error:
        raise OSError(f"cannot write {path}: {error.strerror or error}") from None
    print(f"wrote {path}")


def _current_placement(args: argparse.Namespace, num_layers: int,
                       num_experts: int) -> torch.Tensor | None:
    """The ``--current`` placement, checked against the loads and the cluster, or None."""
    if args.current is None:
        return None
    placement = read_placement(_read(args.current), args.current.name)
    validate_placement(placement, num_layers, num_experts, args.replicas)
    return placement


def _rebalance(args: argparse.Namespace) -> None:
    loads = read_loads(_read(args.loads), args.loads.name)
    steps = f" ({loads.shape[0]} steps summed)" if loads.dim() == 3 else ""
    weight = loads.sum(0) if loads.dim() == 3 else loads
    num_layers, num_experts = weight.shape
    current = _current_placement(args, num_layers, num_experts)
    shape = (args.replicas, args.groups, args.nodes, args.gpus)
    phy2log, log2phy, logcnt = rebalance_experts(weight, *shape, algorithm=args.algorithm,
                                                 seed=args.seed)
    before = current if current is not None else trivial_placement(num_layers, num_experts,
                                                                   args.replicas)
    if args.renumber_gpus or args.keep_slots:
        phy2log = deploy(before, phy2log, logcnt, args.gpus, args.nodes,
                         renumber_gpus=args.renumber_gpus, keep_old_slots=args.keep_slots)
        log2phy = build_log2phy(phy2log, logcnt)

    print(f"loads: {num_layers} layers x {num_experts} experts{steps}")
    print(f"cluster: {args.replicas} slots, {args.groups} groups, {args.nodes} nodes, "
          f"{args.gpus} GPUs; policy {policy_name(args.groups, args.nodes)}")
    start = evaluate(weight, before, args.gpus, args.nodes)
    plan = evaluate(weight, phy2log, args.gpus, args.nodes, logcnt)
    bound = float(balancedness_bound(weight, args.replicas, args.gpus).mean())
    rows = [("current" if current is not None else "trivial", start.mean_balancedness,
             start.worst_max_over_mean),
            (args.algorithm, plan.mean_balancedness, plan.worst_max_over_mean)]
    print(f"{'placement':<12}{'balancedness':>14}{'worst max/mean':>16}")
    for name, mean, worst in rows:
        print(f"{name:<12}{mean:>14.4f}{worst:>16.4f}")
    print(f"{'upper bound':<12}{bound:>14.4f}")
    moves = count_moves(before, phy2log)
    kept = [name for name, asked in (("GPUs renumbered", args.renumber_gpus),
                                     ("slots kept", args.keep_slots)) if asked]
    print(f"moves: {moves.total} of {phy2log.numel()} slots change expert"
          f"{' (' + ', '.join(kept) + ')' if kept else ''}")

    if args.output is not None:
        _write(args.output, plan_to_json(phy2log, log2phy, logcnt))
    if args.export_json is not None:
        _write(args.export_json, map_to_json(phy2log))
    if args.export_pt is not None:
        _write(args.export_pt, map_to_pt(phy2log))


def _replay(args: argparse.Namespace) -> None:
    series = read_loads(_read(args.loads), args.loads.name)
    if series.dim() != 3:
        raise ValueError(f"replay needs a time series [steps, layers, experts]; {args.loads} "
                         f"holds one window of shape {list(series.shape)}")
    current = _current_placement(args, series.shape[1], series.shape[2])
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    result = replay(series, args.window, args.replicas, args.groups, args.nodes, args.gpus,
                    algorithms=args.algorithms, seed=args.seed, current=current,
                    preserve_slots=args.keep_slots, renumber_gpus=args.renumber_gpus,
                    progress=_ProgressBar(sys.stderr) if show_progress else None)
    _print_replay(result, series.shape)
    if args.json is not None:
        _write(args.json, json.dumps(result.as_dict(), indent=1))


def _print_replay(result: Replay, shape: torch.Size) -> None:
    """The means of each strategy, in-sample and on the next window, and the moves."""
    steps, num_layers, num_experts = shape
    print(f"series: {steps} steps x {num_layers} layers x {num_experts} experts; "
          f"{result.num_windows} windows of {result.window} steps "
          f"({result.dropped_steps} steps dropped), {result.num_windows - 1} scored")
    print(f"{'strategy':<10}{'in-sample':>11}{'next window':>13}{'moves/window':>14}")
    for name, figures in result.strategies.items():
        moves = figures.total_moves / len(figures.moves)
        print(f"{name:<10}{figures.mean_in_sample:>11.4f}{figures.mean_next_window:>13.4f}"
              f"{moves:>14.1f}")
    print(f"balancedness is mean over layers of mean/max GPU load; \"{NO_REBALANCING}\" keeps "
          f"the placement in use")


class _ProgressBar:
    """A text progress bar redrawn in place on a stream: ``planning [####....] 8/38 windows``."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, done: int, total: int) -> None:
        filled = _BAR_WIDTH * done // total
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        end = "\n" if done == total else ""
        self.stream.write(f"\rplanning [{bar}] {done}/{total} windows{end}")
        self.stream.flush()


if __name__ == "__main__":
    sys.exit(main())
