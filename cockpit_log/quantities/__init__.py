"""The instruments, by the paper's names (Table 1 and Appendix C)."""

from __future__ import annotations

from .alpha import Alpha
from .base import Quantity
from .basic import Distance, GradNorm, Loss, Time, UpdateSize
from .gradient_tests import InnerTest, NormTest, OrthoTest
from .histograms import GradHist1d
from .noise import CABS, EarlyStopping, MeanGSNR

__all__ = [
    "ALL_QUANTITIES",
    "Alpha",
    "CABS",
    "Distance",
    "EarlyStopping",
    "GradHist1d",
    "GradNorm",
    "InnerTest",
    "Loss",
    "MeanGSNR",
    "NormTest",
    "OrthoTest",
    "Quantity",
    "Time",
    "UpdateSize",
]

ALL_QUANTITIES: dict[str, type[Quantity]] = {
    q.name: q
    for q in (
        Loss,
        Time,
        Alpha,
        Distance,
        UpdateSize,
        GradNorm,
        NormTest,
        InnerTest,
        OrthoTest,
        GradHist1d,
        MeanGSNR,
        CABS,
        EarlyStopping,
    )
}
