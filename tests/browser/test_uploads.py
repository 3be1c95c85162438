"""A file is uploaded once: Rebalance and Replay send the id the server keeps it under, and the
file again only when the server no longer keeps it (then it keeps it under a new id), or never
kept it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from playwright.sync_api import Page, expect

from eplb_core.io import format_csv_matrix
from eplb_core.synthetic import drifting_series, zipf_loads
from tests.browser.conftest import OpenPage, serve

pytestmark = pytest.mark.browser

# What the page hands to fetch: for each multipart form, its fields (files by their size).
RECORD_FORMS = """
window.sentForms = [];
const send = window.fetch;
window.fetch = function (url, init) {
  if (init && init.body instanceof FormData) {
    window.sentForms.push({url: String(url), fields: Object.fromEntries([...init.body].map(
      ([name, value]) => [name, value instanceof File ? {bytes: value.size} : value]))});
  }
  return send.apply(this, arguments);
};
"""
SMALL_CLUSTER = {"num_replicas": "16", "num_groups": "4", "num_nodes": "2", "num_gpus": "8"}
KEPT_SECONDS = 1.0
CACHE_BYTES = 64 * 1024  # keeps a small file, not a larger one
UPLOAD_LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def forgetful_server() -> Iterator[str]:
    """A server that keeps uploads for a second, at most 64 KiB of them, and takes files up
    to 1 MiB."""
    with serve(
        upload_cache_seconds=str(KEPT_SECONDS),
        upload_cache_bytes=str(CACHE_BYTES),
        max_upload_bytes=str(UPLOAD_LIMIT),
    ) as url:
        yield url


def recording(page: Page) -> Page:
    page.add_init_script(RECORD_FORMS)
    page.reload()
    return page


def sent(page: Page, route: str) -> list[dict]:
    """The forms the page posted to ``route``, oldest first."""
    return [
        form["fields"] for form in page.evaluate("window.sentForms") if form["url"].endswith(route)
    ]


def set_cluster(page: Page, cluster: dict[str, str]) -> None:
    for name, value in cluster.items():
        page.fill(f"#cluster-form [name={name}]", value)


def rebalance(page: Page) -> None:
    page.get_by_role("button", name="Rebalance").click()
    expect(page.locator("#results")).to_have_attribute("data-drawn-ms", timeout=60_000)
    expect(page.locator("#busy")).to_be_hidden()


def test_rebalance_and_replay_send_the_upload_id_not_the_file(page: Page, tmp_path: Path) -> None:
    series = drifting_series(40, layers=4, experts=32, seed=1).round().long()
    path = tmp_path / "dump.pt"
    torch.save({"logical_count": series}, path)
    page = recording(page)
    page.set_input_files("#loads-file", path)
    expect(page.locator("#data-steps")).to_have_text("40 steps")
    set_cluster(page, {"num_replicas": "40", "num_groups": "4", "num_nodes": "2", "num_gpus": "8"})

    rebalance(page)
    page.fill("#cluster-form [name=seed]", "2")
    rebalance(page)
    page.get_by_role("button", name="Replay").click()
    expect(page.locator("#replay-results")).to_have_attribute("data-drawn", "true", timeout=60_000)

    (preview,) = sent(page, "/dashboard/preview")
    assert preview["file"] == {"bytes": path.stat().st_size}  # the only time the file goes
    plans = sent(page, "/dashboard/rebalance") + sent(page, "/dashboard/replay")
    assert len(plans) == 3
    upload_ids = {form.pop("upload_id") for form in plans}
    assert len(upload_ids) == 1 and all(len(upload_id) == 32 for upload_id in upload_ids)
    for form in plans:
        assert "file" not in form
        assert not any(isinstance(value, dict) for value in form.values())  # no file at all
    # Only the fields the routes take: unknown ones are refused.
    # No move budget, link or spill slots unless set; the expert's bytes always (for the
    # migration's figures).
    assert set(plans[0]) == {
        "num_replicas",
        "num_groups",
        "num_nodes",
        "num_gpus",
        "algorithm",
        "policy",
        "seed",
        "keep_slots",
        "renumber_gpus",
        "expert_bytes",
    }
    assert plans[0]["expert_bytes"] == "44040192"  # DeepSeek-V3's expert in FP8
    assert set(plans[2]) == set(plans[0]) - {"algorithm"} | {"window", "budgets"}


def test_an_upload_the_server_forgot_is_sent_again(
    open_page: OpenPage, forgetful_server: str, tmp_path: Path
) -> None:
    path = tmp_path / "small.csv"
    path.write_text(format_csv_matrix(zipf_loads(layers=4, experts=8, seed=2)))
    page = recording(open_page(forgetful_server))
    page.set_input_files("#loads-file", path)
    expect(page.locator("#data-shape")).to_have_text("4 layers × 8 experts")
    set_cluster(page, SMALL_CLUSTER)
    time.sleep(KEPT_SECONDS + 0.5)  # the server forgets the file

    rebalance(page)
    expect(page.locator("#error")).to_be_hidden()
    page.fill("#cluster-form [name=seed]", "1")
    rebalance(page)

    size = path.stat().st_size
    by_id, by_file, again = sent(page, "/dashboard/rebalance")
    assert "upload_id" in by_id and "file" not in by_id  # refused (410): no longer kept
    assert by_file["file"] == {"bytes": size} and "upload_id" not in by_file
    # The server keeps the file sent again, under a new id: the next press sends that.
    assert "file" not in again and again["upload_id"] not in (None, by_id["upload_id"])


def test_a_file_too_large_to_keep_is_sent_with_each_plan(
    open_page: OpenPage, forgetful_server: str, tmp_path: Path
) -> None:
    path = tmp_path / "large.csv"
    path.write_text(format_csv_matrix(zipf_loads(layers=32, experts=1024, seed=3)))
    assert CACHE_BYTES < 32 * 1024 * 4  # float32: more than the server keeps
    page = recording(open_page(forgetful_server))
    page.set_input_files("#loads-file", path)
    expect(page.locator("#data-shape")).to_have_text("32 layers × 1,024 experts")
    set_cluster(page, {**SMALL_CLUSTER, "num_replicas": "1024"})
    page.select_option("#cluster-form [name=algorithm]", "greedy")

    rebalance(page)
    forms = sent(page, "/dashboard/rebalance")
    assert len(forms) == 1  # no id to try first
    assert forms[0]["file"] == {"bytes": path.stat().st_size} and "upload_id" not in forms[0]


def test_a_file_over_the_upload_limit_is_refused_before_it_is_sent(
    open_page: OpenPage, forgetful_server: str, tmp_path: Path
) -> None:
    path = tmp_path / "huge.csv"
    path.write_bytes(b"1," * (UPLOAD_LIMIT // 2) + b"1\n")
    page = recording(open_page(forgetful_server))
    page.set_input_files("#loads-file", path)

    expect(page.locator("#error")).to_have_text(
        "Not loaded: the file 'huge.csv' is larger than the 1 MiB upload limit "
        "(EPLB_MAX_UPLOAD_BYTES)."
    )
    assert sent(page, "/dashboard/preview") == []
    expect(page.locator("#data-summary")).to_be_hidden()


def test_the_placement_file_goes_with_each_plan(page: Page, tmp_path: Path) -> None:
    loads = tmp_path / "loads.csv"
    loads.write_text(format_csv_matrix(zipf_loads(layers=2, experts=8, seed=4)))
    placement = tmp_path / "in-use.csv"  # slot p holds expert p mod 8, in both layers
    placement.write_text(
        "".join(",".join(str(slot % 8) for slot in range(16)) + "\n" for _ in range(2))
    )
    page = recording(page)
    page.set_input_files("#loads-file", loads)
    expect(page.locator("#data-shape")).to_have_text("2 layers × 8 experts")
    set_cluster(page, SMALL_CLUSTER)
    page.locator("#deploy summary").click()
    page.set_input_files("#placement-file", placement)

    rebalance(page)

    (form,) = sent(page, "/dashboard/rebalance")
    assert "upload_id" in form and "file" not in form
    assert form["placement"] == {"bytes": placement.stat().st_size}
    expect(page.locator("#card-moves")).to_be_visible()
