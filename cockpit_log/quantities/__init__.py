"""The instruments, by the paper's names (Table 1 and Appendix C)."""

from __future__ import annotations

from .alpha import Alpha
from .base import Quantity
from .basic import Distance, GradNorm, Loss, Time, UpdateSize
from .curvature import HessMaxEV, HessTrace, TICDiag, TICTrace
from .gradient_tests import InnerTest, NormTest, OrthoTest
from .histograms import GradHist1d, GradHist2d
from .noise import CABS, EarlyStopping, MeanGSNR

__all__ = [
    "ALL_QUANTITIES",
    "Alpha",
    "CABS",
    "Distance",
    "EarlyStopping",
    "GradHist1d",
    "GradHist2d",
    "GradNorm",
    "HessMaxEV",
    "HessTrace",
    "InnerTest",
    "Loss",
    "MeanGSNR",
    "NormTest",
    "OrthoTest",
    "Quantity",
    "TICDiag",
    "TICTrace",
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
        HessTrace,
        HessMaxEV,
        TICDiag,
        TICTrace,
        GradHist2d,
    )
}
