"""Errors and warnings a user can act on."""

from __future__ import annotations

import warnings

__all__ = ["CockpitError", "CockpitWarning", "UnsupportedLossError", "UnsupportedModelError"]


class CockpitError(RuntimeError):
    """Base class of the errors cockpit-log raises for bad input."""


class UnsupportedModelError(CockpitError):
    """A module of the model makes per-sample gradients undefined or unobservable."""


class UnsupportedLossError(CockpitError):
    """The loss cannot be split into individual losses ``l_n``."""


class CockpitWarning(UserWarning):
    """A reading is NaN, skipped or degraded; training goes on."""


class WarnOnce:
    """Emit each distinct warning key once per cockpit."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, key: str, message: str) -> None:
        if key in self._seen:
            return
        self._seen.add(key)
        warnings.warn(message, CockpitWarning, stacklevel=3)
