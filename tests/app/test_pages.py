"""GET / and the dashboard's data routes: an offline page, the bundled example, an upload's
preview, and a charted plan that is the REST service's plan."""

from __future__ import annotations

import html
import io
import json
import re

import pytest
import torch
from fastapi.testclient import TestClient

from app.routes.dashboard import EXAMPLE_SEED
from eplb_core import ALGORITHMS, POLICIES, PRESETS
from eplb_core.io import format_csv_matrix, read_csv_matrix
from eplb_core.synthetic import drifting_series, zipf_loads
from tests.app.conftest import MakeClient

from .test_charts import values

SMALL = [[90, 10, 10, 10, 5, 5, 5, 5], [1, 1, 1, 1, 1, 1, 1, 60]]
SMALL_FORM = {
    "num_replicas": "12",
    "num_groups": "2",
    "num_nodes": "2",
    "num_gpus": "4",
    "algorithm": "greedy",
    "seed": "0",
}
REPLAY_FORM = {key: value for key, value in SMALL_FORM.items() if key != "algorithm"}


def csv_file(matrix: list[list[float]], name: str = "loads.csv") -> dict:
    return {
        "file": (name, format_csv_matrix(torch.tensor(matrix, dtype=torch.float32)), "text/csv")
    }


def test_page_has_the_form_the_api_names(client: TestClient) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for name in (
        "num_replicas",
        "num_groups",
        "num_nodes",
        "num_gpus",
        "algorithm",
        "policy",
        "seed",
        "keep_slots",
        "renumber_gpus",
        "spill_slots",
        "link_gb_per_s",
    ):
        assert f'name="{name}"' in page
    # The move budget in % of all slots and the expert's size in MiB: the page sends them as
    # move_budget (a share) and expert_bytes.
    assert 'name="move_budget_pct"' in page
    assert re.search(r'name="expert_mib"[^>]*value="42"', page)  # DeepSeek-V3 FP8: 42 MiB
    assert re.search(r'<button type="submit"[^>]*>.*Rebalance</span>', page, re.DOTALL)
    assert 'type="file"' in page
    assert '<script src="/vendor/plotly/plotly.min.js">' in page
    assert '<script type="module" src="/static/dashboard/main.js">' in page


def test_page_takes_presets_names_and_limits_from_the_server(make_client: MakeClient) -> None:
    page = make_client(max_upload_bytes=64 * 1024 * 1024, max_windows=50).get("/").text

    for preset in PRESETS.values():
        option = re.search(rf'<option value="{preset.name}"[^>]*>', page)
        assert option, preset.name
        attributes = dict(re.findall(r'data-([\w-]+)="([^"]*)"', option.group(0)))
        cluster = preset.cluster
        assert [
            int(attributes[f"num-{field}"]) for field in ("replicas", "groups", "nodes", "gpus")
        ] == [cluster.num_replicas, cluster.num_groups, cluster.num_nodes, cluster.num_gpus]
        assert preset.description in html.unescape(attributes["description"])
    for field, names in (("algorithm", ALGORITHMS), ("policy", POLICIES)):
        select = re.search(rf'<select name="{field}">(.*?)</select>', page, re.DOTALL).group(1)
        assert re.findall(r'<option value="([^"]+)"', select) == list(names)
    assert re.search(r'<option value="hybrid" selected>', page)  # the API's defaults
    assert re.search(r'<option value="auto" selected>', page)
    config = json.loads(
        re.search(r'<script type="application/json" id="page-config">(.*?)</script>', page).group(1)
    )
    assert config == {
        "max_upload_bytes": 64 * 1024 * 1024,
        "max_upload_text": "64 MiB",
        "max_windows": 50,
        "max_replicas": 16384,
        "max_sweep_points": 16,
        "expert_bytes": 44040192,
    }
    assert "up to 64 MiB, 1,024 × 4,096" in " ".join(page.split())  # the drop zone says so


def test_page_has_no_inline_script(client: TestClient) -> None:
    """script-src 'self': every script is a file of the app, or data that never runs."""
    page = client.get("/").text

    for tag in re.findall(r"<script[^>]*>", page):
        assert 'src="/' in tag or 'type="application/json"' in tag, tag


def test_page_works_offline_every_asset_is_served_here(client: TestClient) -> None:
    page = client.get("/").text
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page)

    assert not [url for url in assets if "//" in url]  # no CDN, no external font
    for url in set(assets) - {"/"}:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.content, url
    assert {
        "/static/dashboard/main.js",
        "/static/dashboard.css",
        "/vendor/plotly/plotly.min.js",
    } <= set(assets)


def test_every_module_the_page_imports_is_served_as_javascript(client: TestClient) -> None:
    pending, served = ["main.js"], set()
    while pending:
        name = pending.pop()
        if name in served:
            continue
        response = client.get(f"/static/dashboard/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith("text/javascript"), name
        served.add(name)
        imports = re.findall(r'^import .* from "([^"]+)";$', response.text, re.MULTILINE)
        assert all(path.startswith("./") for path in imports), name  # no outside module
        pending += [path[2:] for path in imports]
    assert {
        "main.js",
        "api.js",
        "store.js",
        "loads.js",
        "cluster.js",
        "results.js",
        "replay.js",
        "downloads.js",
        "charts.js",
        "evaluate.js",
        "advisor.js",
        "layer.js",
    } <= served


def test_example_is_a_deterministic_deepseek_v3_matrix(client: TestClient) -> None:
    response = client.get("/dashboard/example.csv")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "deepseek-v3-example.csv" in response.headers["content-disposition"]
    matrix = read_csv_matrix(response.text)
    assert list(matrix.shape) == [58, 256]
    assert torch.equal(matrix, zipf_loads(seed=EXAMPLE_SEED))
    assert client.get("/dashboard/example.csv").text == response.text


def test_preview_gives_shape_total_and_heatmap(client: TestClient) -> None:
    response = client.post("/dashboard/preview", files=csv_file(SMALL))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["num_layers"], body["num_experts"]) == (2, 8)
    assert body["total_tokens"] == sum(map(sum, SMALL))
    (heatmap,) = body["figure"]["data"]
    assert values(heatmap["z"]).tolist() == SMALL


def test_preview_of_a_bad_csv_names_the_cell(client: TestClient) -> None:
    response = client.post(
        "/dashboard/preview", files={"file": ("bad.csv", "1,2,3\n4,5,six\n", "text/csv")}
    )

    assert response.status_code == 422
    assert response.json() == {
        "detail": "the file 'bad.csv': row 2, column 3: 'six' is not a number"
    }


@pytest.mark.parametrize(
    "route",
    [
        "/dashboard/preview",
        "/dashboard/rebalance",
        "/dashboard/replay",
        "/dashboard/evaluate",
        "/dashboard/sweep",
        "/dashboard/layer",
    ],
)
def test_dashboard_posts_need_a_multipart_upload(client: TestClient, route: str) -> None:
    response = client.post(route, json={"weight": SMALL})

    assert response.status_code == 415
    assert response.json() == {
        "detail": "expected a body of type multipart/form-data, got 'application/json'"
    }


def test_charted_rebalance_is_the_rest_plan_with_its_figures(client: TestClient) -> None:
    response = client.post("/dashboard/rebalance", files=csv_file(SMALL), data=SMALL_FORM)
    rest = client.post("/rebalance/csv", files=csv_file(SMALL), data=SMALL_FORM).json()

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"result", "upload_id", "figures"}
    result = body["result"]
    for key in ("params", "num_layers", "num_experts", "before", "after", "bound"):
        assert result[key] == rest[key], key
    # The page's answer leaves out log2phy (derived from phy2log): half the bytes.
    assert result["plan"] == {key: value for key, value in rest["plan"].items() if key != "log2phy"}
    assert body["upload_id"] is not None  # the file sent is kept: the next press sends the id
    assert set(body["figures"]) == {"gpu", "node", "balancedness"}
    gpu = body["figures"]["gpu"]
    assert set(gpu["views"]) == {"tokens", "ratio"} and gpu["view"] in gpu["views"]
    gpu_before, gpu_after = gpu["views"]["tokens"]["data"]
    assert values(gpu_after["z"]).tolist() == result["after"]["gpu_load"]
    assert values(gpu_before["z"]).tolist() == result["before"]["gpu_load"]
    _, ratio_after = gpu["views"]["ratio"]["data"]
    for ratios, loads in zip(values(ratio_after["z"]).tolist(), result["after"]["gpu_load"]):
        mean = sum(loads) / len(loads)
        assert ratios == pytest.approx([load / mean for load in loads], abs=1e-4)


def test_charted_rebalance_without_per_node_figures_says_so(client: TestClient) -> None:
    form = {**SMALL_FORM, "num_nodes": "3", "policy": "global"}

    response = client.post("/dashboard/rebalance", files=csv_file(SMALL), data=form)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["figures"]["node"] is None
    assert body["result"]["after"]["node_load"] is None
    assert any("no per-node figures" in note for note in body["result"]["notes"])


def test_charted_rebalance_says_why_a_shape_is_impossible(client: TestClient) -> None:
    response = client.post(
        "/dashboard/rebalance", files=csv_file(SMALL), data={**SMALL_FORM, "num_gpus": "5"}
    )

    assert response.status_code == 422
    assert response.json() == {"detail": "12 slots cannot be split evenly over 5 GPUs"}


def test_charted_rebalance_lists_missing_fields(client: TestClient) -> None:
    form = {key: value for key, value in SMALL_FORM.items() if key != "num_gpus"}

    response = client.post("/dashboard/rebalance", files=csv_file(SMALL), data=form)

    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"][-1] == "num_gpus" and error["type"] == "missing"


def pt_file(tensor: torch.Tensor, name: str = "dump.pt") -> dict:
    buffer = io.BytesIO()
    torch.save({"logical_count": tensor}, buffer)
    return {"file": (name, buffer.getvalue(), "application/octet-stream")}


def test_preview_of_a_series_gives_its_steps_and_the_summed_heatmap(client: TestClient) -> None:
    series = drifting_series(6, layers=2, experts=8, seed=1)

    response = client.post("/dashboard/preview", files=pt_file(series))

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["num_steps"], body["num_layers"], body["num_experts"]) == (6, 2, 8)
    assert body["total_tokens"] == pytest.approx(float(series.double().sum()))
    (heatmap,) = body["figure"]["data"]
    assert values(heatmap["z"]) == pytest.approx(series.double().sum(0).numpy())


def test_preview_of_one_window_has_no_steps(client: TestClient) -> None:
    assert client.post("/dashboard/preview", files=csv_file(SMALL)).json()["num_steps"] is None


def test_charted_replay_is_the_rest_replay_with_its_chart(client: TestClient) -> None:
    series = drifting_series(9, layers=2, experts=8, seed=2)
    form = {**REPLAY_FORM, "window": "3"}

    response = client.post("/dashboard/replay", files=pt_file(series), data=form)
    rest = client.post("/replay/upload", files=pt_file(series), data=form).json()

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"result", "upload_id", "figure", "frontier"}
    assert body["frontier"] is None  # no budgets asked
    assert body["result"]["strategies"] == rest["strategies"]
    lines = {line["name"]: values(line["y"]).tolist() for line in body["figure"]["data"]}
    for name, figures in rest["strategies"].items():
        assert lines[f"{name}, next window"] == figures["next_window"]
        assert lines[f"{name}, in-sample"] == figures["in_sample"]


def test_charted_replay_of_one_window_says_it_needs_a_series(client: TestClient) -> None:
    response = client.post(
        "/dashboard/replay", files=csv_file(SMALL), data={**REPLAY_FORM, "window": "1"}
    )

    assert response.status_code == 422
    assert response.json() == {
        "detail": "a replay needs a time series [steps, layers, experts]; "
        "got one window of shape [2, 8] (plan it with "
        "/rebalance)"
    }


def test_charted_rebalance_starts_from_the_placement_in_use(client: TestClient) -> None:
    in_use = (
        "\n".join(",".join(str((slot + layer) % 8) for slot in range(12)) for layer in range(2))
        + "\n"
    )
    files = {**csv_file(SMALL), "placement": ("in-use.csv", in_use, "text/csv")}

    response = client.post("/dashboard/rebalance", files=files, data=SMALL_FORM)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"]["baseline"] == "current"
    tokens = body["figures"]["gpu"]["views"]["tokens"]
    gpu_before, _ = tokens["data"]
    # GPU 0 holds slots 0..2: experts 0, 1, 2 in layer 0 and 1, 2, 3 in layer 1.
    assert values(gpu_before["customdata"])[:, 0].tolist() == ["0, 1, 2", "1, 2, 3"]
    titles = [note["text"] for note in tokens["layout"]["annotations"]]
    assert titles == ["Before: the placement in use", "After: the plan"]
