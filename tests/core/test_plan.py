"""The pipeline's own guarantees: a plan that breaks them is an InvariantError (a 500 in the
app), never an answer; the plan file's log2phy inverts phy2log."""

from __future__ import annotations

import pytest
import torch

from eplb_core import Cluster, Plan, PlanOptions, make_plan
from eplb_core.errors import InvariantError, PlacementError
from eplb_core.synthetic import zipf_loads


def good_plan() -> Plan:
    return make_plan(
        zipf_loads(layers=3, experts=16), Cluster(24, 4, 2, 8), PlanOptions(algorithm="greedy")
    )


def test_a_made_plan_passes_its_own_check() -> None:
    plan = good_plan()
    plan.check()
    assert Plan.from_placement(plan.phy2log).logcnt.tolist() == plan.logcnt.tolist()


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (lambda p: Plan(p.phy2log.clone().fill_(0), p.logcnt), "replica counts"),
        (lambda p: Plan(torch.where(p.phy2log == 3, 99, p.phy2log), p.logcnt), "valid expert"),
        (lambda p: Plan(p.phy2log, p.logcnt, torch.zeros_like(p.phy2log)), "log2phy"),
    ],
)
def test_a_broken_plan_is_an_invariant_error(break_it, message: str) -> None:
    with pytest.raises(InvariantError, match=message):
        break_it(good_plan()).check()


def test_a_plan_of_a_placement_names_its_experts_within_its_slots() -> None:
    with pytest.raises(PlacementError, match="names expert 40, but its 4 slots"):
        Plan.from_placement(torch.tensor([[0, 1, 2, 40]]))
    with pytest.raises(PlacementError, match="no replica of expert 1"):
        Plan.from_placement(torch.tensor([[0, 2, 2, 0]]))
