"""Configurations of Table 1: ``economy`` ⊆ ``business`` ⊆ ``full`` (each with Loss and Time), and name resolution."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Union

from .quantities import ALL_QUANTITIES, Quantity

__all__ = ["PRESETS", "QuantitySpec", "resolve_quantities"]

#: Table 1's economy row, plus Loss and Time.
ECONOMY = [
    "Alpha",
    "Distance",
    "UpdateSize",
    "GradNorm",
    "NormTest",
    "InnerTest",
    "OrthoTest",
    "GradHist1d",
    "Loss",
    "Time",
]

#: Table 1's business row: economy + TICDiag + HessTrace.
BUSINESS = [*ECONOMY, "TICDiag", "HessTrace"]
#: Table 1's full row: business + HessMaxEV + GradHist2d.
FULL = [*BUSINESS, "HessMaxEV", "GradHist2d"]

PRESETS: dict[str, list[str]] = {"economy": ECONOMY, "business": BUSINESS, "full": FULL}

QuantitySpec = Union[str, Quantity, Iterable[str | Quantity]]


def resolve_quantities(spec: QuantitySpec) -> list[Quantity]:
    """Quantity instances from a preset name, a quantity name or instance, or a list of them.

    Raises:
        ValueError: for unknown names, reserved presets and duplicates.
    """
    items = [spec] if isinstance(spec, (str, Quantity)) else list(spec)
    out: list[Quantity] = []
    for item in items:
        if isinstance(item, Quantity):
            out.append(item)
        elif item in PRESETS:
            out.extend(ALL_QUANTITIES[name]() for name in PRESETS[item])
        elif item in ALL_QUANTITIES:
            out.append(ALL_QUANTITIES[item]())
        else:
            raise ValueError(
                f"unknown quantity {item!r}; presets: {', '.join(PRESETS)}; quantities: {', '.join(ALL_QUANTITIES)}"
            )
    names = [q.name for q in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"quantity listed twice: {', '.join(sorted(dup))}")
    return out
