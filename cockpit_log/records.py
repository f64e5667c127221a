"""Records: the only language the core and the sinks share.

A :class:`Record` holds one reading of one quantity at one optimizer step. Its ``value`` is a
``float`` for scalar quantities, a :class:`Histogram1d` for one-dimensional histograms (GradHist1d)
or a :class:`Histogram2d` for joint histograms (GradHist2d); ``per_param`` holds the same kind of
value per parameter, keyed by the names of ``model.named_parameters()``; ``info`` holds numeric
diagnostics of the reading (e.g. HessMaxEV's number of Hessian-vector products). Records are
immutable; sinks translate them into a tracker's forms and never change them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

__all__ = ["Histogram1d", "Histogram2d", "Record", "Value", "record_from_dict", "record_to_dict", "record_to_json"]


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


@dataclass(frozen=True)
class Histogram2d:
    """Joint counts of pairs ``(x, y)`` on a grid of bins (eq. 15: ``x = theta_j``, ``y = g_n(theta)_j``).

    ``counts[i, k]`` counts pairs with ``x`` in bin ``i`` of ``x_edges`` and ``y`` in bin ``k`` of
    ``y_edges``; bins as in :class:`Histogram1d` (half-open, last closed). Out-of-range values are
    counted in the edge bins of their axis (``x_below``/``x_above``/``y_below``/``y_above`` say how
    many); pairs with a NaN coordinate fall in no bin and are counted in ``nonfinite``.
    :meth:`x_marginal` and :meth:`y_marginal` are the two one-dimensional histograms.
    """

    counts: np.ndarray
    x_edges: np.ndarray
    y_edges: np.ndarray
    x_below: int = 0
    x_above: int = 0
    y_below: int = 0
    y_above: int = 0
    nonfinite: int = 0

    @property
    def total(self) -> int:
        """Number of pairs histogrammed, NaNs included."""
        return int(self.counts.sum()) + self.nonfinite

    def x_marginal(self) -> Histogram1d:
        """Counts over the ``x`` (parameter) axis alone (NaN pairs not included)."""
        return Histogram1d(self.counts.sum(axis=1), self.x_edges, self.x_below, self.x_above, 0)

    def y_marginal(self) -> Histogram1d:
        """Counts over the ``y`` (gradient) axis alone (NaN pairs not included)."""
        return Histogram1d(self.counts.sum(axis=0), self.y_edges, self.y_below, self.y_above, 0)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram2d):
            return NotImplemented
        return (
            np.array_equal(self.counts, other.counts)
            and np.array_equal(self.x_edges, other.x_edges)
            and np.array_equal(self.y_edges, other.y_edges)
            and (self.x_below, self.x_above, self.y_below, self.y_above, self.nonfinite)
            == (other.x_below, other.x_above, other.y_below, other.y_above, other.nonfinite)
        )

    __hash__ = None  # type: ignore[assignment]


Value = Union[float, Histogram1d, Histogram2d]


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
        info: numeric diagnostics of the reading, e.g. ``{"hvps": 23}`` for HessMaxEV.
    """

    step: int
    quantity: str
    value: Value
    per_param: Mapping[str, Value] = field(default_factory=dict)
    reason: str | None = None
    info: Mapping[str, float] = field(default_factory=dict)

    @property
    def is_histogram(self) -> bool:
        """Whether the value is a histogram (:class:`Histogram1d` or :class:`Histogram2d`)."""
        return isinstance(self.value, (Histogram1d, Histogram2d))

    @property
    def is_scalar(self) -> bool:
        """Whether the value is a float."""
        return not self.is_histogram


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


def _edges_to_json(edges: np.ndarray) -> list[float | str]:
    return [_float_to_json(float(e)) for e in edges]


def _edges_from_json(edges: Any) -> np.ndarray:
    return np.asarray([_float_from_json(e) for e in edges], dtype=np.float64)


def _value_to_json(v: Value) -> Any:
    if isinstance(v, Histogram2d):
        return {
            "counts": [[int(c) for c in row] for row in v.counts],
            "x_edges": _edges_to_json(v.x_edges),
            "y_edges": _edges_to_json(v.y_edges),
            "x_below": v.x_below,
            "x_above": v.x_above,
            "y_below": v.y_below,
            "y_above": v.y_above,
            "nonfinite": v.nonfinite,
        }
    if isinstance(v, Histogram1d):
        return {
            "counts": [int(c) for c in v.counts],
            "edges": _edges_to_json(v.edges),
            "below": v.below,
            "above": v.above,
            "nonfinite": v.nonfinite,
        }
    return _float_to_json(float(v))


def _value_from_json(v: Any) -> Value:
    if isinstance(v, dict) and "x_edges" in v:
        x_edges, y_edges = _edges_from_json(v["x_edges"]), _edges_from_json(v["y_edges"])
        counts = np.asarray(v["counts"], dtype=np.int64).reshape(len(x_edges) - 1, len(y_edges) - 1)
        return Histogram2d(
            counts=counts,
            x_edges=x_edges,
            y_edges=y_edges,
            **{k: int(v.get(k, 0)) for k in ("x_below", "x_above", "y_below", "y_above", "nonfinite")},
        )
    if isinstance(v, dict):
        return Histogram1d(
            counts=np.asarray(v["counts"], dtype=np.int64),
            edges=_edges_from_json(v["edges"]),
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
    if record.info:
        out["info"] = {k: _float_to_json(float(x)) for k, x in record.info.items()}
    return out


def record_from_dict(data: Mapping[str, Any]) -> Record:
    """Inverse of :func:`record_to_dict`."""
    return Record(
        step=int(data["step"]),
        quantity=str(data["quantity"]),
        value=_value_from_json(data["value"]),
        per_param={k: _value_from_json(v) for k, v in data.get("per_param", {}).items()},
        reason=data.get("reason"),
        info={k: _float_from_json(x) for k, x in data.get("info", {}).items()},
    )


def record_to_json(record: Record) -> str:
    """One line of strict JSON (no bare NaN tokens) for ``record``."""
    return json.dumps(record_to_dict(record), allow_nan=False, separators=(",", ":"))
