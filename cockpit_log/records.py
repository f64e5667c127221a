"""Records: the only language the core and the sinks share.

A :class:`Record` holds one reading of one quantity at one optimizer step. Its ``value`` is a
``float`` for scalar quantities or a :class:`Histogram1d` for histograms; ``per_param`` holds the
same kind of value per parameter, keyed by the names of ``model.named_parameters()``. Records are
immutable; sinks translate them into a tracker's forms and never change them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

__all__ = ["Histogram1d", "Record", "Value", "record_from_dict", "record_to_dict"]


@dataclass(frozen=True)
class Histogram1d:
    """Counts of values in ``len(edges) - 1`` bins with the given ``edges`` (eq. 14).

    Bins are half-open ``[e_i, e_{i+1})`` except the last, which is closed, as in
    :func:`numpy.histogram`. Values below the first edge are counted in the first bin and values
    above the last edge in the last bin (``below`` and ``above`` say how many were clipped). NaN
    values fall in no bin; ``nonfinite`` counts them. So ``counts.sum() + nonfinite`` is the
    number of values histogrammed.
    """

    counts: np.ndarray
    edges: np.ndarray
    below: int = 0
    above: int = 0
    nonfinite: int = 0

    @property
    def total(self) -> int:
        """Number of values histogrammed, NaNs included."""
        return int(self.counts.sum()) + self.nonfinite

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram1d):
            return NotImplemented
        return (
            np.array_equal(self.counts, other.counts)
            and np.array_equal(self.edges, other.edges)
            and (self.below, self.above, self.nonfinite) == (other.below, other.above, other.nonfinite)
        )

    __hash__ = None  # type: ignore[assignment]


Value = Union[float, Histogram1d]


@dataclass(frozen=True)
class Record:
    """One reading of one quantity.

    Attributes:
        step: number of optimizer steps taken before the reading, from 0. A two-step quantity
            (``Alpha``, ``UpdateSize``) is stamped with the step it starts from.
        quantity: the paper's name of the instrument, e.g. ``"Alpha"``.
        value: network-wide value: a float (NaN when undefined, see ``reason``) or a histogram.
        per_param: the same per parameter, keyed by ``model.named_parameters()`` names.
        reason: why ``value`` is NaN, when it is.
    """

    step: int
    quantity: str
    value: Value
    per_param: Mapping[str, Value] = field(default_factory=dict)
    reason: str | None = None

    @property
    def is_histogram(self) -> bool:
        """Whether the value is a :class:`Histogram1d`."""
        return isinstance(self.value, Histogram1d)


def _float_to_json(x: float) -> float | str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return x


def _float_from_json(x: Any) -> float:
    if isinstance(x, str):
        return float({"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[x])
    return float(x)


def _value_to_json(v: Value) -> Any:
    if isinstance(v, Histogram1d):
        return {
            "counts": [int(c) for c in v.counts],
            "edges": [_float_to_json(float(e)) for e in v.edges],
            "below": v.below,
            "above": v.above,
            "nonfinite": v.nonfinite,
        }
    return _float_to_json(float(v))


def _value_from_json(v: Any) -> Value:
    if isinstance(v, dict):
        return Histogram1d(
            counts=np.asarray(v["counts"], dtype=np.int64),
            edges=np.asarray([_float_from_json(e) for e in v["edges"]], dtype=np.float64),
            below=int(v.get("below", 0)),
            above=int(v.get("above", 0)),
            nonfinite=int(v.get("nonfinite", 0)),
        )
    return _float_from_json(v)


def record_to_dict(record: Record) -> dict[str, Any]:
    """A JSON-ready dict of ``record``; non-finite floats become ``"NaN"``/``"Infinity"``."""
    out: dict[str, Any] = {
        "step": record.step,
        "quantity": record.quantity,
        "value": _value_to_json(record.value),
    }
    if record.per_param:
        out["per_param"] = {k: _value_to_json(v) for k, v in record.per_param.items()}
    if record.reason is not None:
        out["reason"] = record.reason
    return out


def record_from_dict(data: Mapping[str, Any]) -> Record:
    """Inverse of :func:`record_to_dict`."""
    return Record(
        step=int(data["step"]),
        quantity=str(data["quantity"]),
        value=_value_from_json(data["value"]),
        per_param={k: _value_from_json(v) for k, v in data.get("per_param", {}).items()},
        reason=data.get("reason"),
    )


def record_to_json(record: Record) -> str:
    """One line of strict JSON (no bare NaN tokens) for ``record``."""
    return json.dumps(record_to_dict(record), allow_nan=False, separators=(",", ":"))
