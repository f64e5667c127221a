"""The shared naming scheme, run summary and histogram pictures every sink uses."""

from __future__ import annotations

import math

import numpy as np

from cockpit_log.naming import metric_key, quantity_key
from cockpit_log.records import Histogram1d, Histogram2d, Record
from cockpit_log.render import figure_png, histogram1d_figure, histogram2d_figure, layer_histograms_figure
from cockpit_log.summary import run_summary


def test_keys_are_snake_case_under_one_prefix() -> None:
    assert metric_key("Alpha") == "cockpit/alpha"
    assert metric_key("GradNorm", "net.0.weight") == "cockpit/grad_norm/net.0.weight"
    expected = {
        "HessMaxEV": "hess_max_ev",
        "TICDiag": "tic_diag",
        "MeanGSNR": "mean_gsnr",
        "CABS": "cabs",
        "UpdateSize": "update_size",
        "EarlyStopping": "early_stopping",
        "GradHist2d": "grad_hist_2d",
    }
    for q, k in expected.items():
        assert quantity_key(q) == k


def test_run_summary_medians_over_whole_run_and_last_tenth() -> None:
    alphas = [(-0.5 if s < 90 else 0.3) for s in range(100)]
    records = [Record(s, "Alpha", a) for s, a in enumerate(alphas)]
    records += [Record(s, "Loss", 2.0 - s / 100) for s in range(100)] + [Record(99, "Alpha", math.nan, reason="x")]
    summary = run_summary(records)
    assert summary["alpha_median"] == -0.5
    assert summary["alpha_median_last10"] == 0.3  # steps 90..99 of 0..99
    assert summary["alpha_count"] == 100
    assert math.isclose(summary["loss_last"], 2.0 - 0.99)
    assert summary["steps"] == 100


def test_run_summary_without_alpha_is_nan() -> None:
    summary = run_summary([Record(0, "Loss", 1.0)])
    assert math.isnan(summary["alpha_median"]) and summary["loss_last"] == 1.0


def test_histogram_pictures_render_to_png() -> None:
    h = Histogram1d(np.arange(10), np.linspace(-1, 1, 11), below=2)
    h2 = Histogram2d(np.ones((4, 5), dtype=np.int64), np.linspace(-1, 1, 5), np.linspace(-1, 1, 6))
    for fig in (histogram1d_figure(h), layer_histograms_figure({"a": h, "b": h}), histogram2d_figure(h2)):
        png = figure_png(fig)
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
