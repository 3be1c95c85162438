"""GET / and the dashboard's data routes: an offline page, the bundled example, an upload's
preview, and a charted plan that is the REST service's plan."""

from __future__ import annotations

import io
import re

import pytest
import torch
from fastapi.testclient import TestClient

from app.routes.dashboard import EXAMPLE_SEED
from eplb_core.io import format_csv_matrix, read_csv_matrix
from eplb_core.synthetic import drifting_series, zipf_loads

from .test_charts import values

SMALL = [[90, 10, 10, 10, 5, 5, 5, 5], [1, 1, 1, 1, 1, 1, 1, 60]]
SMALL_FORM = {"num_replicas": "12", "num_groups": "2", "num_nodes": "2", "num_gpus": "4",
              "algorithm": "greedy", "seed": "0"}
REPLAY_FORM = {key: value for key, value in SMALL_FORM.items() if key != "algorithm"}


def csv_file(matrix: list[list[float]], name: str = "loads.csv") -> dict:
    return {"file": (name, format_csv_matrix(torch.tensor(matrix, dtype=torch.float32)),
                     "text/csv")}


def test_page_has_the_form_the_api_names(client: TestClient) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for name in ("num_replicas", "num_groups", "num_nodes", "num_gpus", "algorithm", "seed"):
        assert f'name="{name}"' in page
    assert re.search(r'<button type="submit"[^>]*>.*Rebalance</span>', page, re.DOTALL)
    assert 'type="file"' in page
    assert '<script src="/vendor/plotly/plotly.min.js">' in page


def test_page_works_offline_every_asset_is_served_here(client: TestClient) -> None:
    page = client.get("/").text
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page)

    assert not [url for url in assets if "//" in url]  # no CDN, no external font
    for url in set(assets) - {"/"}:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.content, url
    assert {"/static/dashboard.js", "/static/dashboard.css",
            "/vendor/plotly/plotly.min.js"} <= set(assets)


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
    response = client.post("/dashboard/preview",
                           files={"file": ("bad.csv", "1,2,3\n4,5,six\n", "text/csv")})

    assert response.status_code == 422
    assert response.json() == {
        "detail": "the file 'bad.csv': row 2, column 3: 'six' is not a number"}


@pytest.mark.parametrize("route", ["/dashboard/preview", "/dashboard/rebalance",
                                   "/dashboard/replay"])
def test_dashboard_posts_need_a_multipart_upload(client: TestClient, route: str) -> None:
    response = client.post(route, json={"weight": SMALL})

    assert response.status_code == 415
    assert response.json() == {
        "detail": "expected a body of type multipart/form-data, got 'application/json'"}


def test_charted_rebalance_is_the_rest_plan_with_its_figures(client: TestClient) -> None:
    response = client.post("/dashboard/rebalance", files=csv_file(SMALL), data=SMALL_FORM)
    rest = client.post("/rebalance/csv", files=csv_file(SMALL), data=SMALL_FORM).json()

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"result", "figures"}
    result = body["result"]
    for key in ("params", "num_layers", "num_experts", "plan", "before", "after", "bound"):
        assert result[key] == rest[key], key
    assert set(body["figures"]) == {"gpu", "node", "balancedness"}
    gpu_before, gpu_after = body["figures"]["gpu"]["data"]
    assert values(gpu_after["z"]).tolist() == result["after"]["gpu_load"]
    assert values(gpu_before["z"]).tolist() == result["before"]["gpu_load"]


def test_charted_rebalance_says_why_a_shape_is_impossible(client: TestClient) -> None:
    response = client.post("/dashboard/rebalance", files=csv_file(SMALL),
                           data={**SMALL_FORM, "num_gpus": "5"})

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
    assert set(body) == {"result", "figure"}
    assert body["result"]["strategies"] == rest["strategies"]
    lines = {line["name"]: values(line["y"]).tolist() for line in body["figure"]["data"]}
    for name, figures in rest["strategies"].items():
        assert lines[f"{name}, next window"] == figures["next_window"]
        assert lines[f"{name}, in-sample"] == figures["in_sample"]


def test_charted_replay_of_one_window_says_it_needs_a_series(client: TestClient) -> None:
    response = client.post("/dashboard/replay", files=csv_file(SMALL),
                           data={**REPLAY_FORM, "window": "1"})

    assert response.status_code == 422
    assert response.json() == {"detail": "a replay needs a time series [steps, layers, experts]; "
                                         "got one window of shape [2, 8] (plan it with "
                                         "/rebalance)"}


def test_charted_rebalance_starts_from_the_placement_in_use(client: TestClient) -> None:
    in_use = "\n".join(",".join(str((slot + layer) % 8) for slot in range(12))
                       for layer in range(2)) + "\n"
    files = {**csv_file(SMALL), "placement": ("in-use.csv", in_use, "text/csv")}

    response = client.post("/dashboard/rebalance", files=files, data=SMALL_FORM)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"]["baseline"] == "current"
    gpu_before, _ = body["figures"]["gpu"]["data"]
    # GPU 0 holds slots 0..2: experts 0, 1, 2 in layer 0 and 1, 2, 3 in layer 1.
    assert values(gpu_before["customdata"])[:, 0].tolist() == ["0, 1, 2", "1, 2, 3"]
    titles = [note["text"] for note in body["figures"]["gpu"]["layout"]["annotations"]]
    assert titles == ["Before: the placement in use", "After: the plan"]
