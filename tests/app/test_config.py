"""Settings from EPLB_* environment variables: defaults, overrides, and clear refusals."""

from __future__ import annotations

import logging

import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app


def test_defaults() -> None:
    settings = Settings.from_env({})

    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.max_upload_bytes == 8 * 1024 * 1024
    assert (settings.max_layers, settings.max_experts, settings.max_replicas) == (1024, 4096,
                                                                                  16384)
    assert settings.max_windows == 200
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert settings.device == "auto" and settings.torch_device.type == expected


def test_every_variable_is_read() -> None:
    settings = Settings.from_env({
        "EPLB_HOST": "0.0.0.0", "EPLB_PORT": "9000", "EPLB_MAX_UPLOAD_BYTES": "1024",
        "EPLB_MAX_LAYERS": "58", "EPLB_MAX_EXPERTS": "256", "EPLB_MAX_REPLICAS": "288",
        "EPLB_MAX_WINDOWS": "20", "EPLB_DEVICE": " cpu "})

    assert settings == Settings(host="0.0.0.0", port=9000, max_upload_bytes=1024, max_layers=58,
                                max_experts=256, max_replicas=288, max_windows=20, device="cpu")
    assert settings.torch_device == torch.device("cpu")


@pytest.mark.parametrize(("environ", "error"), [
    ({"EPLB_PORT": "http"}, "EPLB_PORT must be an integer, got 'http'"),
    ({"EPLB_PORT": "70000"}, "EPLB_PORT must be at most 65535, got 70000"),
    ({"EPLB_MAX_LAYERS": "0"}, "EPLB_MAX_LAYERS must be a positive integer, got 0"),
    ({"EPLB_MAX_UPLOAD_BYTES": "-1"}, "EPLB_MAX_UPLOAD_BYTES must be a positive integer, got -1"),
    ({"EPLB_DEVICE": "tpu"}, "EPLB_DEVICE must be auto, cpu or cuda[:N], got 'tpu'"),
    ({"EPLB_DEVICE": "meta"}, "EPLB_DEVICE must be auto, cpu or cuda[:N], got 'meta'"),
])
def test_bad_values_are_refused_with_the_variable_name(environ: dict, error: str) -> None:
    with pytest.raises(ValueError) as raised:
        Settings.from_env(environ)

    assert str(raised.value) == error


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_without_a_gpu_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="EPLB_DEVICE is 'cuda' but CUDA is not available"):
        Settings.from_env({"EPLB_DEVICE": "cuda"})


def test_start_up_says_what_the_server_plans_on(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="app"), \
            TestClient(create_app(Settings(device="cpu", max_layers=58))):
        pass

    assert "planning on cpu" in caplog.text and "at most 58 layers" in caplog.text
