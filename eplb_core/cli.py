"""Command line: plan a placement from a load file, or replay a load time series.

    eplb rebalance LOADS --replicas 288 --groups 8 --nodes 4 --gpus 32 [-o plan.json]
    eplb replay LOADS --window 100 --preset deepseek-v3-prefill
    eplb evaluate LOADS --placement PHY2LOG [--compare PHY2LOG] --preset deepseek-v3-prefill

LOADS is a CSV, JSON or ``.pt`` file (see ``eplb_core.io.read_loads``). Bad input ends the
command with exit status 1 and one line ``eplb: error: ...``; bad usage with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path
from typing import Any, NoReturn, TextIO

import torch

from .cluster import DEEPSEEK_V3_EXPERT_BYTES, POLICIES, PRESETS, Cluster
from .errors import EPLBError
from .io import (
    LoadFile,
    format_csv_matrix,
    map_to_json,
    map_to_pt,
    plan_to_json,
    read_load_file,
    read_placement,
)
from .limits import Limits
from .packing import ALGORITHMS
from .plan import Evaluation, PlanOptions, Rebalance, evaluate, rebalance
from .replay import GIB, NO_REBALANCING, Budget, Replay, max_moves_of, replay
from .sweep import Sweep, policy_choice, sweep
from .synthetic import EXAMPLE_SEED, sglang_dump, zipf_loads

PROG = "eplb"
_BAR_WIDTH = 30


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line, like the input errors."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message}\n")


def _common(*, several_replicas: bool = False) -> _Parser:
    """The options every command takes: the loads, the cluster, the policy, --json."""
    common = _Parser(add_help=False)
    common.add_argument("loads", type=Path, help="load file: .csv, .json or .pt")
    cluster = common.add_argument_group(
        "cluster", "the four counts, or --preset and any of them to override"
    )
    cluster.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a named cluster: "
        + "; ".join(f"{name}: {preset.description}" for name, preset in PRESETS.items()),
    )
    if several_replicas:
        cluster.add_argument(
            "--replicas",
            type=int,
            nargs="+",
            metavar="SLOTS",
            help="the slot counts to compare (default: the fewest that hold "
            "every expert, plus 0, 1, 2, 4, 8 per GPU)",
        )
    else:
        cluster.add_argument("--replicas", type=int, help="physical slots per layer")
    cluster.add_argument("--groups", type=int, help="expert groups")
    cluster.add_argument("--nodes", type=int, help="server nodes")
    cluster.add_argument("--gpus", type=int, help="GPUs in all")
    common.add_argument(
        "--policy",
        choices=POLICIES,
        default="auto",
        help="auto (default): hierarchical when groups split evenly over "
        "nodes, else global; spill: hierarchical plus --spill-slots per "
        "GPU for other nodes' experts",
    )
    common.add_argument(
        "--spill-slots",
        type=int,
        default=1,
        help="the spill policy's slots per GPU for other nodes' experts (default 1)",
    )
    common.add_argument(
        "--json",
        nargs="?",
        const="-",
        type=str,
        metavar="OUT.json",
        help="the API's JSON document, on stdout (no file named) or to a file",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``eplb`` parser with its ``rebalance``, ``replay``, ``evaluate`` and ``sweep``
    commands."""
    common = _common()
    planning = _Parser(add_help=False, parents=[common])
    planning.add_argument("--seed", type=int, default=0, help="seed of the hybrid (default 0)")
    planning.add_argument(
        "--current",
        type=Path,
        metavar="PHY2LOG",
        help="the placement in use (.json, .csv or .pt) instead of the "
        "trivial layout; moves are counted from it",
    )
    planning.add_argument(
        "--keep-slots",
        action="store_true",
        help="keep experts that stay on a GPU in their old slots (fewer moves, same loads)",
    )
    planning.add_argument(
        "--renumber-gpus",
        action="store_true",
        help="renumber nodes and GPUs to keep the most experts where they "
        "are (fewer moves, same balancedness; GPUs may swap loads)",
    )
    budget = planning.add_mutually_exclusive_group()
    budget.add_argument(
        "--max-moves",
        type=int,
        metavar="SLOTS",
        help="the most slots whose expert may change from the placement in "
        "use: the best plan within that budget",
    )
    budget.add_argument(
        "--move-budget",
        type=float,
        metavar="SHARE",
        help="the same budget as a share of all slots (0..1)",
    )
    planning.add_argument(
        "--expert-bytes",
        type=int,
        default=DEEPSEEK_V3_EXPERT_BYTES,
        help="one expert's weights in one layer, for the bytes moved "
        "(default DeepSeek-V3 FP8: %(default)s)",
    )

    parser = _Parser(prog=PROG, description="Expert-parallelism load balancer for MoE inference.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rebalance_parser = commands.add_parser(
        "rebalance",
        parents=[planning],
        help="plan a placement from a load file",
        description="Plan a placement; a time series is summed over its steps first.",
    )
    rebalance_parser.add_argument("--algorithm", choices=ALGORITHMS, default="hybrid")
    rebalance_parser.add_argument(
        "--link-gbps",
        type=float,
        metavar="GB/S",
        help="each GPU's link bandwidth: with it, the time the migration takes",
    )
    rebalance_parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PLAN.json",
        help="write the full plan (phy2log, log2phy, logcnt) as JSON",
    )
    rebalance_parser.add_argument(
        "--export-json",
        type=Path,
        metavar="MAP.json",
        help="write physical_to_logical_map as JSON, for SGLang",
    )
    rebalance_parser.add_argument(
        "--export-pt",
        type=Path,
        metavar="MAP.pt",
        help="write physical_to_logical_map as .pt, for SGLang",
    )
    rebalance_parser.set_defaults(run=_rebalance)

    replay_parser = commands.add_parser(
        "replay",
        parents=[planning],
        help="plan on each window of a time series, score on the next",
        description="Plan on each window of W steps and score the plan on the next window.",
    )
    replay_parser.add_argument("--window", type=int, required=True, help="steps per window")
    replay_parser.add_argument(
        "--algorithms",
        nargs="+",
        choices=ALGORITHMS,
        default=list(ALGORITHMS),
        help="algorithms to replay (default: all)",
    )
    replay_parser.add_argument(
        "--budgets",
        type=_budget,
        nargs="+",
        metavar="BUDGET",
        help="move budgets per rebalance to replay too: a share of all "
        "slots (0.1), a number of slots (500) or 'full'",
    )
    replay_parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="show a progress bar on stderr (default: when a terminal)",
    )
    replay_parser.set_defaults(run=_replay)

    evaluate_parser = commands.add_parser(
        "evaluate",
        parents=[common],
        help="score a placement on loads, without planning",
        description="Score a placement (and a second one beside it) on a load file.",
    )
    evaluate_parser.add_argument(
        "--placement",
        type=Path,
        required=True,
        metavar="PHY2LOG",
        help="the placement to score (.json, .csv or .pt)",
    )
    evaluate_parser.add_argument(
        "--compare",
        type=Path,
        metavar="PHY2LOG",
        help="a second placement: its figures, the moves between the "
        "two and the expected MoE speed-up",
    )
    evaluate_parser.set_defaults(run=_evaluate)

    sweep_parser = commands.add_parser(
        "sweep",
        parents=[_common(several_replicas=True)],
        help="compare slot counts (and rebalance windows): balance, memory, moves",
        description="Plan for each slot count; with --windows, replay a time series for each "
        "window too (how often to rebalance).",
    )
    sweep_parser.add_argument(
        "--windows",
        type=int,
        nargs="+",
        metavar="STEPS",
        help="steps between rebalances to replay (a time series only)",
    )
    sweep_parser.add_argument(
        "--policies",
        nargs="+",
        metavar="POLICY[:SPILL_SLOTS]",
        help="policies to compare, e.g. hierarchical spill:1 global (default: --policy); "
        "spill alone has --spill-slots",
    )
    sweep_parser.add_argument("--algorithm", choices=ALGORITHMS, default="hybrid")
    sweep_parser.add_argument("--seed", type=int, default=0, help="seed of the hybrid")
    sweep_parser.add_argument(
        "--expert-bytes",
        type=int,
        default=DEEPSEEK_V3_EXPERT_BYTES,
        help="one expert's weights in one layer (default DeepSeek-V3 FP8: %(default)s)",
    )
    sweep_parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="show a progress bar on stderr (default: when a terminal)",
    )
    sweep_parser.set_defaults(run=_sweep)

    example_parser = commands.add_parser(
        "example",
        help="write an example load file to try the other commands on",
        description="A .csv is one window of 58 x 256 DeepSeek-V3 shaped loads (the "
        "dashboard's example); a .pt is a time series shaped like SGLang's "
        "expert distribution dump (61 hidden layers, the 3 dense ones all zero).",
    )
    example_parser.add_argument("output", type=Path, metavar="FILE.csv|FILE.pt")
    example_parser.add_argument(
        "--steps", type=int, default=1000, help="steps of a .pt time series (default 1000)"
    )
    example_parser.add_argument("--seed", type=int, default=0)
    example_parser.set_defaults(run=_example, cluster=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``eplb``; returns the exit status: 0, 1 for bad input, 2 for bad usage (after
    argparse's one-line error; 0 after --help), 130 when interrupted."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command != "example":
            args.cluster = _cluster(args, parser)
    except SystemExit as stop:
        return int(stop.code or 0)
    try:
        args.run(args)
    except (EPLBError, OSError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


def machine_limits() -> Limits:
    """What a command may ask for here: no more estimated memory than the machine has (the
    estimate errs high), so that an impossible request is one line, not an allocation
    failure's traceback."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows): no bound
        return Limits()
    return Limits(max_memory_bytes=memory, names={"max_memory_bytes": "this machine's memory"})


def _cluster(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Cluster:
    """The cluster of ``--preset`` and the four counts (the counts win); usage error when one
    is missing, input error (exit 1) when the counts do not make a cluster."""
    base = PRESETS[args.preset].cluster if args.preset else None
    # A sweep's cluster is its first slot count (each point has its own).
    replicas = args.replicas[0] if isinstance(args.replicas, list) else args.replicas
    counts = {
        "num_replicas": replicas,
        "num_groups": args.groups,
        "num_nodes": args.nodes,
        "num_gpus": args.gpus,
    }
    if base is not None:
        counts = {
            name: getattr(base, name) if value is None else value for name, value in counts.items()
        }
    if args.command == "sweep" and counts["num_replicas"] is None:
        # Without --replicas a sweep compares its default slot counts; the cluster's is unused.
        counts["num_replicas"] = counts["num_gpus"]
    missing = [
        f"--{flag}"
        for flag, value in zip(("replicas", "groups", "nodes", "gpus"), counts.values())
        if value is None and not (flag == "replicas" and args.command == "sweep")
    ]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)} (or --preset)")
    try:
        return Cluster(**counts)
    except EPLBError as error:
        parser.exit(1, f"{PROG}: error: {error}\n")


def _read(path: Path) -> bytes:
    """A file's bytes, with an error that names the file."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise OSError(f"cannot read {path}: {error.strerror or error}") from None


def _write(path: Path, data: bytes | str, *, quiet: bool = False) -> None:
    """Write a file, with an error that names it; says where it went unless ``quiet``."""
    try:
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
    except OSError as error:
        raise OSError(f"cannot write {path}: {error.strerror or error}") from None
    if not quiet:
        print(f"wrote {path}")


def _options(args: argparse.Namespace, num_layers: int, algorithm: str = "hybrid") -> PlanOptions:
    max_moves = max_moves_of(
        args.max_moves, args.move_budget, num_layers, args.cluster.num_replicas
    )
    return PlanOptions(
        algorithm=algorithm,
        seed=args.seed,
        policy=args.policy,
        spill_slots=args.spill_slots,
        keep_slots=args.keep_slots,
        renumber_gpus=args.renumber_gpus,
        max_moves=max_moves,
    )


def _budget(text: str) -> Budget:
    """``0.1`` -> a share of all slots; ``500`` -> slots; ``full`` -> the full plan."""
    if text.lower() == "full":
        return None
    try:
        return int(text) if text.isdigit() else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a share (0.1), a number of slots (500) or 'full', got {text!r}"
        ) from None


def _placement(path: Path | None) -> torch.Tensor | None:
    """A placement file (checked against the loads by the pipeline), or None."""
    return None if path is None else read_placement(_read(path), path.name)


def _emit_json(args: argparse.Namespace, document: dict[str, Any]) -> None:
    """``--json``: the document on stdout, or written to the file named."""
    text = json.dumps(document)
    if args.json == "-":
        print(text)
    else:
        _write(Path(args.json), text, quiet=True)


def _load_file(args: argparse.Namespace) -> LoadFile:
    return read_load_file(_read(args.loads), args.loads.name)


def _rebalance(args: argparse.Namespace) -> None:
    loaded = _load_file(args)
    current, notes = loaded.in_use(_placement(args.current))
    result = rebalance(
        loaded.loads,
        args.cluster,
        _options(args, loaded.loads.shape[-2], args.algorithm),
        current,
        notes,
        expert_bytes=args.expert_bytes,
        link_gb_per_s=args.link_gbps,
        limits=machine_limits(),
    )
    if args.json != "-":
        _print_rebalance(result)
    if args.json is not None:
        _emit_json(args, result.as_dict())
    plan = result.plan
    quiet = args.json == "-"  # stdout holds the JSON document alone
    if args.output is not None:
        _write(args.output, plan_to_json(plan.phy2log, plan.log2phy, plan.logcnt), quiet=quiet)
    if args.export_json is not None:
        _write(args.export_json, map_to_json(plan.phy2log), quiet=quiet)
    if args.export_pt is not None:
        _write(args.export_pt, map_to_pt(plan.phy2log), quiet=quiet)


def _print_rebalance(result: Rebalance) -> None:
    """The figures of a plan, as the API answers them."""
    cluster = result.cluster
    num_layers, num_experts = result.plan.logcnt.shape
    steps = f" ({result.num_steps} steps summed)" if result.num_steps is not None else ""
    print(f"loads: {num_layers} layers x {num_experts} experts{steps}")
    print(
        f"cluster: {cluster.num_replicas} slots, {cluster.num_groups} groups, "
        f"{cluster.num_nodes} nodes, {cluster.num_gpus} GPUs; policy {result.policy}"
    )
    rows = [(result.baseline, result.before), (result.options.algorithm, result.after)]
    print(f"{'placement':<12}{'balancedness':>14}{'worst max/mean':>16}{'nodes/token':>13}")
    for name, scores in rows:
        traffic = scores.mean_nodes_per_token
        print(
            f"{name:<12}{scores.mean_balancedness:>14.4f}{scores.worst_max_over_mean:>16.4f}"
            f"{'-' if traffic is None else format(traffic, '.3f'):>13}"
        )
    print(f"{'upper bound':<12}{result.mean_bound:>14.4f}")
    kept = [
        name
        for name, asked in (
            ("GPUs renumbered", result.options.renumber_gpus),
            ("slots kept", result.options.keep_slots),
        )
        if asked
    ]
    print(
        f"moves: {result.moves.total} of {result.plan.phy2log.numel()} slots change expert"
        f"{' (' + ', '.join(kept) + ')' if kept else ''}"
    )
    cost = result.migration
    time_taken = (
        "" if cost.seconds is None else f", {cost.seconds:.2f} s at {cost.link_gb_per_s:g} GB/s"
    )
    print(
        f"migration: {cost.total_bytes / GIB:.2f} GiB in all, {cost.max_gpu_bytes / GIB:.2f} GiB "
        f"into the busiest GPU (GPU {cost.busiest_gpu}){time_taken}"
    )
    for note in result.notes:
        print(f"note: {note}")


def _replay(args: argparse.Namespace) -> None:
    loaded = _load_file(args)
    series = loaded.loads
    if series.dim() != 3:
        raise EPLBError(
            f"replay needs a time series [steps, layers, experts]; {args.loads} "
            f"holds one window of shape {list(series.shape)}"
        )
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    current, notes = loaded.in_use(_placement(args.current))
    result = replay(
        series,
        args.window,
        args.cluster,
        _options(args, series.shape[1]),
        algorithms=args.algorithms,
        current=current,
        progress=_ProgressBar(sys.stderr) if show_progress else None,
        budgets=args.budgets or (),
        notes=notes,
        expert_bytes=args.expert_bytes,
        limits=machine_limits(),
    )
    if args.json != "-":
        _print_replay(result, series.shape)
    if args.json is not None:
        _emit_json(args, result.as_dict())


def _print_replay(result: Replay, shape: torch.Size) -> None:
    """The means of each strategy, in-sample and on the next window, and the moves."""
    steps, num_layers, num_experts = shape
    print(
        f"series: {steps} steps x {num_layers} layers x {num_experts} experts; "
        f"{result.num_windows} windows of {result.window} steps "
        f"({result.dropped_steps} steps dropped), {result.num_windows - 1} scored"
    )
    print(
        f"{'strategy':<16}{'in-sample':>11}{'next window':>13}{'moves/window':>14}"
        f"{'GiB/window':>12}"
    )
    rows = [
        *result.strategies.items(),
        *(
            (f"{entry.algorithm}@{'full' if entry.budget is None else entry.budget}", entry.figures)
            for entry in result.budgets
        ),
    ]
    for name, figures in rows:
        moves = figures.total_moves / len(figures.moves)
        print(
            f"{name:<16}{figures.mean_in_sample:>11.4f}{figures.mean_next_window:>13.4f}"
            f"{moves:>14.1f}{moves * result.expert_bytes / GIB:>12.1f}"
        )
    print(
        f"balancedness: mean/max GPU load, averaged over the layers with load; "
        f'"{NO_REBALANCING}" keeps the placement in use'
    )
    for note in result.notes:
        print(f"note: {note}")


def _evaluate(args: argparse.Namespace) -> None:
    loaded = _load_file(args)
    placement = read_placement(_read(args.placement), args.placement.name)
    result = evaluate(
        loaded.loads, args.cluster, placement, _placement(args.compare), args.policy, loaded.notes
    )
    if args.json != "-":
        _print_evaluation(result, args)
    if args.json is not None:
        _emit_json(args, result.as_dict())


def _print_evaluation(result: Evaluation, args: argparse.Namespace) -> None:
    """The placement's figures, and the second one's beside them."""
    cluster = result.cluster
    print(
        f"cluster: {cluster.num_replicas} slots, {cluster.num_groups} groups, "
        f"{cluster.num_nodes} nodes, {cluster.num_gpus} GPUs; bound of the {result.policy} "
        f"policy"
    )
    rows = [(args.placement.name, result.placement)]
    if result.compare is not None:
        rows.append((args.compare.name, result.compare))
    print(f"{'placement':<24}{'balancedness':>14}{'worst max/mean':>16}")
    for name, scores in rows:
        print(f"{name:<24}{scores.mean_balancedness:>14.4f}{scores.worst_max_over_mean:>16.4f}")
    print(f"{'upper bound':<24}{result.mean_bound:>14.4f}")
    if result.moves is not None and result.speedup is not None:
        print(
            f"moves: {result.moves.total} slots differ; expected MoE speed-up of "
            f"{args.placement.name} over {args.compare.name}: {result.speedup:.3f}x"
        )
    for note in result.notes:
        print(f"note: {note}")


def _sweep(args: argparse.Namespace) -> None:
    loaded = _load_file(args)
    show_progress = sys.stderr.isatty() if args.progress is None else args.progress
    result = sweep(
        loaded.loads,
        args.cluster,
        PlanOptions(
            algorithm=args.algorithm,
            seed=args.seed,
            policy=args.policy,
            spill_slots=args.spill_slots,
        ),
        num_replicas=args.replicas,
        windows=args.windows,
        policies=None
        if args.policies is None
        else [policy_choice(text, args.spill_slots) for text in args.policies],
        expert_bytes=args.expert_bytes,
        progress=_ProgressBar(sys.stderr, "plans") if show_progress else None,
        notes=loaded.notes,
        limits=machine_limits(),
    )
    if args.json != "-":
        _print_sweep(result)
    if args.json is not None:
        _emit_json(args, result.as_dict())


def _print_sweep(result: Sweep) -> None:
    """One line per point: policy, slots, memory, balance in-sample and (replayed) on the next
    window, traffic, and what rebalancing costs."""
    print(
        f"loads: {result.num_layers} layers x {result.num_experts} experts; "
        f"{result.options.algorithm}"
    )
    print(
        f"{'policy':<14}{'slots':>6}{'slots/GPU':>10}{'extra GiB/GPU':>14}{'balancedness':>13}"
        f"{'bound':>8}{'nodes/token':>12}{'window':>8}{'next window':>12}{'moves/1k':>10}"
        f"{'GiB/1k':>9}"
    )

    def figure(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for point in result.points:
        policy = point.policy + (f":{point.spill_slots}" if point.policy == "spill" else "")
        print(
            f"{policy:<14}{point.num_replicas:>6}{point.slots_per_gpu:>10}"
            f"{point.extra_memory_per_gpu_bytes / (1 << 30):>14.2f}"
            f"{point.mean_balancedness:>13.4f}{point.bound:>8.4f}"
            f"{figure(point.mean_nodes_per_token, '.3f'):>12}{figure(point.window, 'd'):>8}"
            f"{figure(point.next_window, '.4f'):>12}"
            f"{figure(point.moves_per_1000_steps, '.0f'):>10}"
            f"{figure(point.gib_per_1000_steps, '.1f'):>9}"
        )
    print(
        "balancedness: the plan of all the loads on them; next window: each window's plan "
        "on the one after it; per 1k: per 1,000 steps"
    )
    for note in result.notes:
        print(f"note: {note}")


def _example(args: argparse.Namespace) -> None:
    suffix = args.output.suffix.lower()
    if suffix == ".csv":
        _write(args.output, format_csv_matrix(zipf_loads(seed=EXAMPLE_SEED + args.seed)))
    elif suffix in (".pt", ".pth"):
        if args.steps < 1:
            raise EPLBError(f"--steps must be at least 1, got {args.steps}")
        buffer = BytesIO()
        torch.save(sglang_dump(args.steps, seed=args.seed), buffer)
        _write(args.output, buffer.getvalue())
    else:
        raise EPLBError(
            f"name the example .csv (one window) or .pt (an SGLang dump), got {args.output.name!r}"
        )


class _ProgressBar:
    """A text progress bar redrawn in place on a stream: ``planning [####....] 8/38 windows``."""

    def __init__(self, stream: TextIO, unit: str = "windows") -> None:
        self.stream = stream
        self.unit = unit

    def __call__(self, done: int, total: int) -> None:
        filled = _BAR_WIDTH * done // total
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        end = "\n" if done == total else ""
        self.stream.write(f"\rplanning [{bar}] {done}/{total} {self.unit}{end}")
        self.stream.flush()


if __name__ == "__main__":
    sys.exit(main())
