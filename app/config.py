"""Service settings, read once from ``EPLB_*`` environment variables (see the README)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

import torch
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eplb_core import Limits

MIB = 1024 * 1024
GIB = 1024 * MIB

Positive = Annotated[int, Field(gt=0)]
Seconds = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    """What an operator can tune; each field is read from ``EPLB_<FIELD NAME>``."""

    model_config = SettingsConfigDict(env_prefix="EPLB_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, le=65535)
    max_upload_bytes: Positive = 256 * MIB  # a file: SGLang's 1,000-step dump of 58 x 256 int64
    max_json_bytes: Positive = 32 * MIB  # a JSON body (parsed into Python numbers first)
    max_elements: Positive = 32 * MIB  # numbers in one load array (256 MiB as float64)
    max_layers: Positive = 1024
    max_experts: Positive = 4096
    max_replicas: Positive = 16384
    max_windows: Positive = 200
    max_sweep_points: Positive = 16
    # The cost model's estimate errs high (measured time is 3-90% of it, eplb_core.cost): a
    # request estimated at 60 s finishes well within a minute here.
    max_work: Annotated[float, Field(gt=0)] = 60.0  # estimated seconds of work per request
    max_memory_bytes: Positive = 768 * MIB  # estimated peak memory of one request's work
    workers: Positive = 2  # requests planned at once
    torch_threads: Positive = 1  # torch's threads per worker (python -m app sets them)
    queue: Annotated[int, Field(ge=0)] = 16  # requests waiting for a worker; more answer 503
    header_timeout: Seconds = 10.0  # a client must send its request headers within this
    body_timeout: Seconds = 30.0  # ... and each part of its body within this
    keep_alive_timeout: Seconds = 5.0
    max_connections: Positive = 512  # open connections; more are closed at once
    upload_cache_bytes: Positive = 256 * MIB  # loaded files the dashboard reuses by id
    upload_cache_seconds: Seconds = 1800.0
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _usable_device(cls, name: str) -> str:
        name = name.strip()
        resolve_device(name)  # an unusable device fails at start-up, not on a request
        return name

    @property
    def torch_device(self) -> torch.device:
        """The device plans run on."""
        return resolve_device(self.device)

    @property
    def limits(self) -> Limits:
        """The core's limits, named by the variables that set them."""
        fields = (
            "max_layers",
            "max_experts",
            "max_replicas",
            "max_elements",
            "max_windows",
            "max_sweep_points",
            "max_work",
            "max_memory_bytes",
        )
        return Limits(
            **{name: getattr(self, name) for name in fields},
            names={name: env_name(name) for name in fields},
        )


def env_name(field_name: str) -> str:
    """The environment variable behind a settings field: ``max_layers`` -> ``EPLB_MAX_LAYERS``."""
    return f"EPLB_{field_name.upper()}"


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else the CPU; ``cpu`` and ``cuda[:N]`` are taken as is."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"EPLB_DEVICE must be auto, cpu or cuda[:N], got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"EPLB_DEVICE is {name!r} but CUDA is not available")
    return device


def describe(error: ValidationError) -> str:
    """One line per bad variable: ``EPLB_PORT: Input should be ... (got '70000')``."""
    lines = []
    for item in error.errors():
        name = env_name(str(item["loc"][0])) if item["loc"] else "EPLB settings"
        reason = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {reason} (got {item['input']!r})")
    return "; ".join(lines)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (a FastAPI dependency that tests override); a bad variable
    stops the start-up with a ``ValueError`` naming it."""
    try:
        return Settings()
    except ValidationError as error:
        raise ValueError(describe(error)) from None
