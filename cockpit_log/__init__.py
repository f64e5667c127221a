"""cockpit-log: the Cockpit instruments (Schneider, Dangel, Hennig, NeurIPS 2021) for any PyTorch loop.

``ck = cockpit_log.attach(model, loss_fn, optimizer, sink="local")`` and train as usual; see the
README for the record contract and each quantity.
"""

from __future__ import annotations

from . import quantities, schedules
from .backends import LocalSink, MemorySink, available_sinks
from .cockpit import Cockpit, attach
from .errors import CockpitError, CockpitWarning, UnsupportedLossError, UnsupportedModelError
from .presets import PRESETS
from .quantities import (
    CABS,
    Alpha,
    Distance,
    EarlyStopping,
    GradHist1d,
    GradHist2d,
    GradNorm,
    HessMaxEV,
    HessTrace,
    InnerTest,
    Loss,
    MeanGSNR,
    NormTest,
    OrthoTest,
    TICDiag,
    TICTrace,
    Time,
    UpdateSize,
)
from .reading import read
from .records import Histogram1d, Histogram2d, Record
from .schedules import at_steps, every, log_spaced

__version__ = "0.1.0"

__all__ = [
    "CABS",
    "PRESETS",
    "Alpha",
    "Cockpit",
    "CockpitError",
    "CockpitWarning",
    "Distance",
    "EarlyStopping",
    "GradHist1d",
    "GradHist2d",
    "GradNorm",
    "HessMaxEV",
    "HessTrace",
    "Histogram1d",
    "Histogram2d",
    "InnerTest",
    "LocalSink",
    "Loss",
    "MeanGSNR",
    "MemorySink",
    "NormTest",
    "OrthoTest",
    "Record",
    "TICDiag",
    "TICTrace",
    "Time",
    "UnsupportedLossError",
    "UnsupportedModelError",
    "UpdateSize",
    "at_steps",
    "attach",
    "available_sinks",
    "every",
    "log_spaced",
    "quantities",
    "read",
    "schedules",
]
