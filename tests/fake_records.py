"""Hand-made records of every quantity (curvature ones included), for the view and CLI tests."""

from __future__ import annotations

import numpy as np

from cockpit_log.records import Histogram1d, Histogram2d, Record
from cockpit_log.schedules import log_spaced

PARAMS = ("0.weight", "0.bias", "2.weight", "2.bias")
ECONOMY = ("Alpha", "Distance", "UpdateSize", "GradNorm", "NormTest", "InnerTest", "OrthoTest", "GradHist1d")
CURVATURE = ("HessMaxEV", "HessTrace", "TICDiag", "TICTrace", "GradHist2d")
EXTRA = ("Loss", "Time", "MeanGSNR", "CABS", "EarlyStopping")


def hist1d(rng: np.random.Generator, scale: float = 0.3) -> Histogram1d:
    """A histogram of normal values on 100 bins of [-1, 1], clipped values in the edge bins."""
    values = rng.normal(0.0, scale, 2000)
    edges = np.linspace(-1.0, 1.0, 101)
    below, above = int((values < -1).sum()), int((values > 1).sum())
    counts, _ = np.histogram(np.clip(values, -1, 1), bins=edges)
    return Histogram1d(counts.astype(np.int64), edges, below, above, 3)


def hist2d(rng: np.random.Generator) -> Histogram2d:
    """A joint histogram of (parameter, gradient) pairs on a 20 x 30 grid."""
    x, y = rng.normal(0, 0.5, 3000), rng.normal(0, 0.2, 3000)
    xe, ye = np.linspace(-1, 1, 21), np.linspace(-0.5, 0.5, 31)
    counts, _, _ = np.histogram2d(np.clip(x, -1, 1), np.clip(y, -0.5, 0.5), bins=(xe, ye))
    return Histogram2d(counts.astype(np.int64), xe, ye, int((x < -1).sum()), int((x > 1).sum()), 2, 1, 0)


def make_records(
    quantities: tuple[str, ...] = ECONOMY + CURVATURE + EXTRA, steps: list[int] | None = None, seed: int = 0
) -> list[Record]:
    """Records of ``quantities`` at ``steps`` (default 0..59), with per_param and info where the contract has them."""
    rng = np.random.default_rng(seed)
    steps = list(range(60)) if steps is None else steps
    out: list[Record] = []
    for s in steps:
        decay = 1.0 / (1.0 + 0.05 * s)
        for q in quantities:
            per_param: dict = {}
            info: dict = {}
            if q == "GradHist1d":
                value = hist1d(rng)
                per_param = {p: hist1d(rng, 0.05 * (i + 1)) for i, p in enumerate(PARAMS)}
            elif q == "GradHist2d":
                value = hist2d(rng)
                per_param = {p: hist2d(rng) for p in PARAMS}
            else:
                value = float(abs(rng.normal(1.0, 0.2)) * decay)
                if q == "Alpha":
                    value = float(rng.normal(0.3, 0.4))
                if q in ("Distance", "UpdateSize", "GradNorm", "HessTrace", "TICDiag", "TICTrace"):
                    per_param = {p: value / len(PARAMS) for p in PARAMS}
                if q == "HessMaxEV":
                    info = {"hvps": 23.0, "residual": 1e-4}
            out.append(Record(s, q, value, per_param, None, info))
    return out


def log_steps(last: int = 2000, num: int = 40) -> list[int]:
    """The steps of ``log_spaced(last, num)``."""
    return sorted(log_spaced(last, num).steps)
