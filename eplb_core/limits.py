"""Limits on what one call may ask for, checked before the work (or the memory) is spent.

The core has no settings of its own: a caller (the service, the CLI) passes ``Limits`` and the
names its users know the limits by (``EPLB_MAX_LAYERS``), and every refusal is a ``LimitError``
that names the limit it hit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import LimitError


@dataclass(frozen=True)
class Limits:
    """Upper bounds; None is no bound. ``names`` maps a field to how messages name it."""

    max_layers: int | None = None
    max_experts: int | None = None
    max_replicas: int | None = None
    max_elements: int | None = None  # numbers in one load array, all steps together
    max_windows: int | None = None  # windows of one replay
    max_sweep_points: int | None = None  # points of one sweep
    max_work: float | None = None  # estimated seconds of one call (``cost.check_cost``)
    max_memory_bytes: int | None = None  # estimated peak memory of one call
    names: Mapping[str, str] = field(default_factory=dict)

    def name(self, limit: str) -> str:
        """How a limit is called where the user sets it."""
        return self.names.get(limit, limit)

    def check(self, limit: str, value: float, what: str) -> None:
        """``LimitError`` when ``value`` is over the limit ``limit`` (a field name); ``what``
        names the value in the message ("layers", "windows of 50 steps")."""
        bound = getattr(self, limit)
        if bound is not None and value > bound:
            raise LimitError(
                f"too many {what}: {_number(value)}; this server takes at most "
                f"{_number(bound)} ({self.name(limit)})"
            )


NO_LIMITS = Limits()


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"
