"""The core's errors: what a caller did wrong (``ValueError`` subclasses, a 4xx in the API) and
what the core itself got wrong (``InvariantError``, a 500).

Every refusal names the value at fault and what would be accepted, so that the message can be
shown to a user as it is.
"""

from __future__ import annotations


class EPLBError(ValueError):
    """Input the core refuses. Each subclass says which input."""


class LoadError(EPLBError):
    """Loads that cannot be planned: not a [layers, experts] matrix of finite counts >= 0, or
    sums too large to add up in float32."""


class LoadFormatError(LoadError):
    """A load or placement file that cannot be read as one (a bad cell, a foreign format)."""


class ClusterShapeError(EPLBError):
    """A cluster (slots, groups, nodes, GPUs) that cannot hold the experts under the policy."""


class PlacementError(EPLBError):
    """A placement in use (phy2log) that does not fit the loads and the cluster."""


class OptionError(EPLBError):
    """An option out of its range: an unknown algorithm or policy, a negative budget, ..."""


class LimitError(EPLBError):
    """A request over a configured limit (size, work, memory); the message names the limit."""


class CancelledError(Exception):
    """Work stopped because its caller no longer wants it (a client went away)."""


class InvariantError(RuntimeError):
    """The core produced a result that breaks its own guarantees: a bug, never bad input."""
