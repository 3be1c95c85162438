"""Service settings, read once from ``EPLB_*`` environment variables (see the README)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache

import torch

MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """What an operator can tune; each field is read from ``EPLB_<FIELD NAME>``."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_upload_bytes: int = 8 * MIB
    max_layers: int = 1024
    max_experts: int = 4096
    max_replicas: int = 16384
    max_windows: int = 200
    device: str = "auto"

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if field.type == "int" and (isinstance(value, bool) or not isinstance(value, int)
                                        or value <= 0):
                raise ValueError(f"{env_name(field.name)} must be a positive integer, "
                                 f"got {value!r}")
        if self.port > 65535:
            raise ValueError(f"EPLB_PORT must be at most 65535, got {self.port}")
        resolve_device(self.device)  # an unusable device fails at start-up, not on a request

    @property
    def torch_device(self) -> torch.device:
        """The device plans run on."""
        return resolve_device(self.device)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Settings from ``EPLB_*`` variables; unset ones keep their defaults."""
        values: dict[str, str | int] = {}
        for field in fields(cls):
            raw = environ.get(env_name(field.name))
            if raw is None:
                continue
            if field.type == "int":
                try:
                    values[field.name] = int(raw)
                except ValueError:
                    raise ValueError(f"{env_name(field.name)} must be an integer, "
                                     f"got {raw!r}") from None
            else:
                values[field.name] = raw.strip()
        return cls(**values)


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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; a FastAPI dependency that tests override."""
    return Settings.from_env()
