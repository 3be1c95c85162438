"""The OpenAPI document: what it lists, responses that match it, a fuzz pass that finds no 5xx,
and Swagger UI served from the app itself."""

from __future__ import annotations

import re

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis import checks

from app.config import Settings
from app.main import create_app
from eplb_core.io import format_csv_matrix

# Small limits keep the generated plans quick.
FUZZ_LIMITS = Settings(max_upload_bytes=64 * 1024, max_layers=8, max_experts=64, max_replicas=128)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(FUZZ_LIMITS))
RESPONSE_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_finds_no_server_error(case: schemathesis.Case) -> None:
    """Generated requests, valid and invalid, get documented answers and never a 5xx."""
    case.call_and_validate(checks=RESPONSE_CHECKS)


def test_schema_lists_the_api(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    assert {
        "/rebalance",
        "/rebalance/upload",
        "/rebalance/csv",
        "/replay",
        "/replay/upload",
        "/export/physical_to_logical_map.json",
        "/export/physical_to_logical_map.pt",
        "/healthz",
    } <= document["paths"].keys()
    assert "/docs" not in document["paths"]
    rebalance = document["paths"]["/rebalance"]["post"]
    assert rebalance["requestBody"]["content"].keys() == {"application/json"}
    assert rebalance["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RebalanceResponse"
    }
    assert {"400", "413", "415", "422"} <= rebalance["responses"].keys()
    for path in ("/rebalance/upload", "/rebalance/csv", "/replay/upload"):
        upload = document["paths"][path]["post"]
        assert upload["requestBody"]["content"].keys() == {"multipart/form-data"}, path
    response_fields = document["components"]["schemas"]["RebalanceResponse"]["properties"]
    assert {
        "params",
        "num_layers",
        "num_experts",
        "num_steps",
        "plan",
        "baseline",
        "before",
        "after",
        "moves",
        "migration",
        "speedup",
        "bound",
        "idle_layers",
        "notes",
        "elapsed_ms",
        "device",
    } == response_fields.keys()
    replay = document["paths"]["/replay"]["post"]
    assert replay["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ReplayResponse"
    }
    export = document["paths"]["/export/physical_to_logical_map.pt"]["post"]
    assert export["responses"]["200"]["content"].keys() == {"application/octet-stream"}


@pytest.mark.parametrize(
    "request_case",
    [
        pytest.param(lambda op, ex: op.Case(body=ex, media_type="application/json"), id="plan"),
        pytest.param(
            lambda op, ex: op.Case(body={**ex, "num_gpus": 3}, media_type="application/json"),
            id="core-error",
        ),
        pytest.param(
            lambda op, ex: op.Case(body={**ex, "weight": [[-1]]}, media_type="application/json"),
            id="validation-error",
        ),
    ],
)
def test_json_responses_match_the_schema(readme_request: dict, request_case) -> None:
    case = request_case(schema["/rebalance"]["POST"], readme_request)

    case.call_and_validate(checks=RESPONSE_CHECKS)


def test_csv_and_health_responses_match_the_schema(readme_request: dict) -> None:
    fields = {key: value for key, value in readme_request.items() if key != "weight"}
    upload = schema["/rebalance/csv"]["POST"].Case(
        body={**fields, "file": format_csv_matrix(readme_request["weight"]).encode()},
        media_type="multipart/form-data",
    )
    response = upload.call_and_validate(checks=RESPONSE_CHECKS)
    assert response.status_code == 200

    health = schema["/healthz"]["GET"].Case().call_and_validate(checks=RESPONSE_CHECKS)
    assert health.json() == {
        "status": "ok",
        "device": str(FUZZ_LIMITS.torch_device),
        "admitted": 0,
        "capacity": FUZZ_LIMITS.workers + FUZZ_LIMITS.queue,
    }


def test_replay_and_export_responses_match_the_schema() -> None:
    series = [[[5, 1, 1, 1]], [[1, 5, 1, 1]], [[1, 1, 5, 1]]]
    cluster = {"num_replicas": 4, "num_groups": 1, "num_nodes": 1, "num_gpus": 2}
    replay = schema["/replay"]["POST"].Case(
        body={"series": series, "window": 1, **cluster}, media_type="application/json"
    )
    response = replay.call_and_validate(checks=RESPONSE_CHECKS)
    assert response.status_code == 200

    export = schema["/export/physical_to_logical_map.pt"]["POST"].Case(
        body={"phy2log": [[0, 1, 2, 3]]}, media_type="application/json"
    )
    assert export.call_and_validate(checks=RESPONSE_CHECKS).status_code == 200


def test_docs_render_from_local_assets(client: TestClient) -> None:
    page = client.get("/docs")

    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "<script>" not in page.text  # no inline code: the CSP allows scripts from here only
    start = client.get("/static/docs.js").text
    assert "SwaggerUIBundle" in start and '"/openapi.json"' in start
    assert "validatorUrl: null" in start  # no badge from validator.swagger.io
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets, "the page loads no assets"
    assert not re.search(r"https?://", page.text + start), "the page names an outside URL"
    for url in assets:
        assert url.startswith(("/vendor/swagger-ui/", "/static/"))
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 100, url
