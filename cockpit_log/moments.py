"""Sample mean and variance of a set of per-sample values, mergeable across disjoint parts.

Alpha (eq. 8-9) needs the mean and the sample variance of the individual losses and slopes of a
batch. In a data-parallel run each process holds part of the batch; :class:`Moments` keeps
``(count, mean, m2)`` with ``m2 = sum_n (x_n - mean)^2`` and packs into four sums that add up across
parts (:meth:`Moments.packed` / :meth:`Moments.from_packed`), so one all-reduce gives the moments of
the whole batch:

``m2 = sum_r m2_r + sum_r n_r mean_r^2 - N mean^2``, with ``N = sum_r n_r`` and ``mean = sum_r
n_r mean_r / N``; the within-part spread stays centred, only the between-part term is a difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["PACKED_SIZE", "Moments"]

#: floats in :meth:`Moments.packed`
PACKED_SIZE = 4


@dataclass(frozen=True)
class Moments:
    """``count`` values with mean ``mean`` and centred sum of squares ``m2``."""

    count: int
    mean: float
    m2: float

    @classmethod
    def of(cls, values: Tensor | np.ndarray) -> Moments:
        """The moments of a one-dimensional set of values (computed in float64)."""
        x = values.detach().to(torch.float64).cpu().numpy() if isinstance(values, Tensor) else np.asarray(values)
        x = x.astype(np.float64).reshape(-1)
        if x.size == 0:
            return cls(0, math.nan, 0.0)
        mean = float(x.mean())
        return cls(int(x.size), mean, float(np.square(x - mean).sum()))

    @property
    def var(self) -> float:
        """Sample variance ``m2 / (count - 1)`` (NaN for fewer than 2 values)."""
        return self.m2 / (self.count - 1) if self.count > 1 else math.nan

    def scaled(self, factor: float) -> Moments:
        """The moments of the values multiplied by ``factor``."""
        return Moments(self.count, self.mean * factor, self.m2 * factor * factor)

    def packed(self) -> list[float]:
        """``[n, n mean, m2, n mean^2]``: four sums that add across disjoint parts."""
        if self.count == 0:
            return [0.0, 0.0, 0.0, 0.0]
        return [float(self.count), self.count * self.mean, self.m2, self.count * self.mean**2]

    @classmethod
    def from_packed(cls, sums: Tensor | list[float]) -> Moments:
        """The moments of the union of the parts whose :meth:`packed` vectors were summed into ``sums``."""
        n, total, m2_within, sq_means = (float(v) for v in sums)
        count = int(round(n))
        if count == 0:
            return cls(0, math.nan, 0.0)
        mean = total / n
        return cls(count, mean, max(m2_within + sq_means - n * mean * mean, 0.0))
