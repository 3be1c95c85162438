"""Settings from EPLB_* environment variables: defaults, overrides, and clear refusals."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.config import MIB, Settings, get_settings
from app.main import create_app

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch):
    """Set EPLB_* variables for ``get_settings()`` (read afresh), none inherited."""
    for name in list(os.environ):
        if name.startswith("EPLB_"):
            monkeypatch.delenv(name)
    get_settings.cache_clear()

    def set_env(**variables: str) -> Settings:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return get_settings()

    yield set_env
    get_settings.cache_clear()


def test_defaults(environ) -> None:
    settings = environ()

    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    # SGLang's dump of 1,000 steps of 58 x 256 int64 counts (113 MiB) fits.
    assert settings.max_upload_bytes == 256 * MIB > 1000 * 58 * 256 * 8
    assert (settings.max_layers, settings.max_experts, settings.max_replicas) == (1024, 4096, 16384)
    assert settings.max_windows == 200
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert settings.device == "auto" and settings.torch_device.type == expected


def test_every_variable_is_read(environ) -> None:
    settings = environ(
        EPLB_HOST="0.0.0.0",
        EPLB_PORT="9000",
        EPLB_MAX_UPLOAD_BYTES="1024",
        EPLB_MAX_LAYERS="58",
        EPLB_MAX_EXPERTS="256",
        EPLB_MAX_REPLICAS="288",
        EPLB_MAX_WINDOWS="20",
        EPLB_WORKERS="3",
        EPLB_QUEUE="0",
        EPLB_DEVICE=" cpu ",
    )

    assert settings == Settings(
        host="0.0.0.0",
        port=9000,
        max_upload_bytes=1024,
        max_layers=58,
        max_experts=256,
        max_replicas=288,
        max_windows=20,
        workers=3,
        queue=0,
        device="cpu",
    )
    assert settings.torch_device == torch.device("cpu")
    assert settings.limits.max_layers == 58 and settings.limits.name("max_layers") == (
        "EPLB_MAX_LAYERS"
    )


@pytest.mark.parametrize(
    ("variables", "error"),
    [
        ({"EPLB_PORT": "http"}, "EPLB_PORT: Input should be a valid integer"),
        ({"EPLB_PORT": "70000"}, "EPLB_PORT: Input should be less than or equal to 65535"),
        ({"EPLB_MAX_LAYERS": "0"}, "EPLB_MAX_LAYERS: Input should be greater than 0 (got '0')"),
        ({"EPLB_MAX_UPLOAD_BYTES": "-1"}, "EPLB_MAX_UPLOAD_BYTES: Input should be greater than 0"),
        (
            {"EPLB_DEVICE": "tpu"},
            "EPLB_DEVICE: EPLB_DEVICE must be auto, cpu or cuda[:N], got 'tpu'",
        ),
        ({"EPLB_DEVICE": "meta"}, "EPLB_DEVICE: EPLB_DEVICE must be auto, cpu or cuda[:N]"),
    ],
)
def test_bad_values_are_refused_with_the_variable_name(
    environ, variables: dict, error: str
) -> None:
    with pytest.raises(ValueError) as raised:
        environ(**variables)

    assert str(raised.value).startswith(error)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_without_a_gpu_is_refused_at_start_up(environ) -> None:
    with pytest.raises(ValueError, match="EPLB_DEVICE is 'cuda' but CUDA is not available"):
        environ(EPLB_DEVICE="cuda")


def test_a_bad_variable_stops_the_server_with_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app"],
        capture_output=True,
        text=True,
        check=False,
        env={"EPLB_PORT": "70000"},
        cwd=ROOT,
        timeout=120,
    )

    assert done.returncode == 1
    assert done.stderr.startswith(
        "eplb: error: EPLB_PORT: Input should be less than or equal to 65535 (got '70000')"
    )
    assert "Traceback" not in done.stderr


def test_start_up_says_what_the_server_plans_on(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO, logger="app"),
        TestClient(create_app(Settings(device="cpu", max_layers=58))),
    ):
        pass

    assert "planning on cpu" in caplog.text and "at most 58 layers" in caplog.text
