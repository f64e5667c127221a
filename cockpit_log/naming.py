"""One naming scheme for every tracker: ``cockpit/<quantity>`` and ``cockpit/<quantity>/<parameter>``.

Quantity names are written in snake case (``GradNorm`` -> ``grad_norm``, ``HessMaxEV`` ->
``hess_max_ev``, ``TICDiag`` -> ``tic_diag``); parameter names are those of
``model.named_parameters()`` (``"0.weight"``, ``"encoder.fc.bias"``), kept as they are. The common
``cockpit/`` prefix makes W&B group the panels in one section and keeps MLflow's metric list sorted.
"""

from __future__ import annotations

import re

__all__ = ["PREFIX", "metric_key", "quantity_key"]

PREFIX = "cockpit"

_SPECIAL = {
    "HessMaxEV": "hess_max_ev",
    "MeanGSNR": "mean_gsnr",
    "CABS": "cabs",
    "TICDiag": "tic_diag",
    "TICTrace": "tic_trace",
    "GradHist1d": "grad_hist_1d",
    "GradHist2d": "grad_hist_2d",
}


def quantity_key(quantity: str) -> str:
    """Snake-case name of a quantity, e.g. ``"GradNorm"`` -> ``"grad_norm"``."""
    if quantity in _SPECIAL:
        return _SPECIAL[quantity]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", quantity).lower()


def metric_key(quantity: str, param: str | None = None, *, prefix: str = PREFIX) -> str:
    """Tracker key of a quantity's network-wide value, or of one parameter's value.

    >>> metric_key("Alpha"), metric_key("GradNorm", "0.weight")
    ('cockpit/alpha', 'cockpit/grad_norm/0.weight')
    """
    parts = [prefix, quantity_key(quantity)] if prefix else [quantity_key(quantity)]
    if param is not None:
        parts.append(param)
    return "/".join(parts)
