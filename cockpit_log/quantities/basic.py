"""Cheap by-products: Loss, Time, GradNorm, Distance, UpdateSize (Table 1)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from ..records import Record
from ..statistics import Needs, StepStatistics
from .base import Quantity, nan_record

__all__ = ["Distance", "GradNorm", "Loss", "Time", "UpdateSize"]


def _norms(tensors: Mapping[str, Tensor]) -> tuple[float, dict[str, float]]:
    per = {n: float(t.detach().to(torch.float64).norm()) for n, t in tensors.items()}
    return math.sqrt(sum(v * v for v in per.values())), per


class Loss(Quantity):
    """Mini-batch loss ``L_B(theta_t)`` (eq. 1): the value of the loss the user backpropagates."""

    name = "Loss"

    def needs_at(self, step: int) -> Needs:
        return Needs(losses=True)

    def compute(self, stats: StepStatistics) -> list[Record]:
        if stats.loss is None:
            return [nan_record(stats.step, self.name, "no loss value was captured at this step")]
        return [Record(stats.step, self.name, float(stats.loss))]


class Time(Quantity):
    """Wall-clock seconds since ``attach()`` when step t's update finished."""

    name = "Time"

    def needs_at(self, step: int) -> Needs:
        return Needs()

    def compute(self, stats: StepStatistics) -> list[Record]:
        return [Record(stats.step, self.name, float(stats.elapsed or 0.0))]


class GradNorm(Quantity):
    """Mini-batch gradient norm ``||g_B(theta_t)||_2`` (Table 1), network-wide and per parameter.

    Read from ``param.grad`` just before the optimizer step: the gradient the optimizer applies
    (after a GradScaler has unscaled it; after clipping, if the loop clips).
    """

    name = "GradNorm"

    def needs_at(self, step: int) -> Needs:
        return Needs(batch_grad=True)

    def compute(self, stats: StepStatistics) -> list[Record]:
        if not stats.grad_norms:
            return [nan_record(stats.step, self.name, "no parameter had a gradient before the optimizer step")]
        total, per = _norms(stats.grad_norms)
        return [Record(stats.step, self.name, total, per)]


class Distance(Quantity):
    """Distance from initialisation ``||theta_t - theta_0||_2`` (Table 1), network-wide and per parameter.

    ``theta_0`` are the parameter values at ``attach()``.
    """

    name = "Distance"

    def needs_at(self, step: int) -> Needs:
        return Needs(params_before=True)

    def compute(self, stats: StepStatistics) -> list[Record]:
        if not stats.params_before or stats.initial_params is None:
            return [nan_record(stats.step, self.name, "parameters were not captured at this step")]
        diff = {n: p - stats.initial_params[n] for n, p in stats.params_before.items()}
        total, per = _norms(diff)
        return [Record(stats.step, self.name, total, per)]


class UpdateSize(Quantity):
    """Update size ``||theta_{t+1} - theta_t||_2`` (Table 1), network-wide and per parameter.

    Uses the actual update of whatever optimizer runs; stamped with step t.
    """

    name = "UpdateSize"

    def needs_at(self, step: int) -> Needs:
        return Needs(params_before=True)

    def compute(self, stats: StepStatistics) -> list[Record]:
        if not stats.update:
            return [nan_record(stats.step, self.name, "the update was not observed at this step")]
        total, per = _norms(stats.update)
        return [Record(stats.step, self.name, total, per)]
