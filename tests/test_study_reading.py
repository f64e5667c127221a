"""The study's reading is computed from the runs: best run, alpha zone, coverage, next range; the report files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cockpit_log.study import Metric, StudyRun, next_range, read_study, study_figure, write_study
from cockpit_log.study.report import BEST_COLOR

NAN = math.nan


def runs(lrs, alphas, values, metric="val_accuracy", key="lr") -> list[StudyRun]:
    out = []
    for i, (lr, a, v) in enumerate(zip(lrs, alphas, values)):
        summary = {"alpha_median": a, "alpha_median_last10": a / 2, "train_loss_final": 1.0 + i}
        out.append(StudyRun(f"r{i}", f"src/{i}", {key: lr, "batch_size": 32}, summary, {metric: v}))
    return out


def test_interior_best_between_0_and_1_refines_between_its_neighbours() -> None:
    study = runs([0.01, 0.03, 0.1, 0.3, 1.0], [-0.5, -0.2, 0.2, 0.6, 1.5], [0.5, 0.7, 0.9, 0.85, 0.3])
    reading = read_study(study[::-1], Metric("val_accuracy", "maximize"))  # order of the input does not matter
    assert reading.best.name == "r2"
    assert [r.name for r in reading.ranked] == ["r2", "r3", "r1", "r0", "r4"]
    assert reading.lr_key == "lr"
    assert reading.next_range == pytest.approx((0.03, 0.3))
    assert reading.covers_negative and reading.covers_positive
    text = reading.text()
    assert "median alpha over the whole run is 0.20" in text and "between 0 and 1" in text
    assert "brackets the valley floor" in text and "[0.03, 0.3]" in text


def test_minimized_metric_picks_the_smallest() -> None:
    study = runs([0.01, 0.1, 1.0], [-0.3, 0.4, 2.0], [0.9, 0.2, 0.5], metric="val_loss")
    reading = read_study(study, Metric("val_loss", "minimize"))
    assert reading.best.name == "r1" and reading.next_range == pytest.approx((0.01, 1.0))


def test_best_at_the_top_edge_that_undershoots_looks_only_above() -> None:
    study = runs([0.001, 0.003, 0.01], [-0.8, -0.5, -0.2], [2.0, 1.5, 1.0], metric="loss")
    reading = read_study(study, Metric("loss", "minimize"))
    assert reading.best.name == "r2"
    # two grid steps (sqrt(10) each) above 0.01, and nothing below it since alpha < 0
    assert reading.next_range == pytest.approx((0.01, 0.1))
    assert not reading.covers_positive and reading.covers_negative
    assert "No run has a median alpha > 0" in reading.text() and "below 0" in reading.text()


def test_best_at_the_bottom_edge_that_overshoots_extremely_looks_only_below() -> None:
    study = runs([1.0, 2.0, 4.0], [1.5, 2.0, 3.0], [0.5, 0.8, 2.0], metric="loss")
    reading = read_study(study, Metric("loss", "minimize"))
    assert reading.best.name == "r0"
    assert reading.next_range == pytest.approx((0.25, 1.0))
    assert not reading.covers_negative
    assert "above 1" in reading.text() and "does not reach alpha < 0" in reading.text()


def test_interior_best_past_the_mirrored_point_looks_at_smaller_rates() -> None:
    reading = read_study(runs([0.1, 0.2, 0.4], [0.5, 1.2, 2.0], [0.9, 0.5, 0.7], "loss"), Metric("loss"))
    assert reading.best.name == "r1" and reading.next_range == pytest.approx((0.1, 0.2))


def test_diverged_runs_rank_last_but_bound_the_range() -> None:
    study = runs([0.1, 0.3, 1.0], [0.1, 0.4, NAN], [0.8, 0.9, NAN])
    reading = read_study(study, Metric("val_accuracy", "maximize"))
    assert [r.name for r in reading.ranked] == ["r1", "r0", "r2"]
    assert reading.next_range == pytest.approx((0.1, 1.0))  # not extended past the diverged 1.0


def test_single_learning_rate_searches_a_decade_either_side() -> None:
    assert next_range([0.1], 0.1, 0.3).low == pytest.approx(0.001)
    assert next_range([0.1], 0.1, 0.3).high == pytest.approx(10.0)


def test_without_the_metric_the_runs_are_ranked_by_final_training_loss() -> None:
    study = runs([0.01, 0.1], [0.1, 0.2], [0.5, 0.6])
    reading = read_study(study, Metric(None))
    assert reading.metric.name == "train_loss_final" and reading.best.name == "r0"
    assert any("No metric was named" in n for n in reading.notes)
    reading = read_study(study, Metric("val_f1", "maximize"))
    assert reading.metric.name == "train_loss_final"
    assert any("No run has the metric 'val_f1'" in n for n in reading.notes)


def test_learning_rate_found_in_nested_parameters_and_named_in_the_next_sweep(tmp_path: Path) -> None:
    study = [
        StudyRun(f"r{i}", "", {"optimizer": {"lr": lr}}, {"alpha_median": a, "train_loss_final": v}, {})
        for i, (lr, a, v) in enumerate([(0.01, -0.2, 1.0), (0.1, 0.3, 0.5), (1.0, 0.8, 0.7)])
    ]
    reading = read_study(study, Metric("train_loss_final"))
    assert reading.lr_key == "optimizer.lr" and reading.best.name == "r1"
    files = write_study(reading, tmp_path)
    md = files[1].read_text()
    assert "  optimizer:\n    parameters:\n      lr:\n        distribution: log_uniform_values" in md
    assert "min: 0.01" in md and "max: 1\n" in md


def test_report_files_plot_table_and_json(tmp_path: Path) -> None:
    study = runs([0.01, 0.03, 0.1, 0.3, 1.0], [-0.5, -0.2, 0.2, 0.6, NAN], [0.5, 0.7, 0.9, 0.85, NAN])
    reading = read_study(study, Metric("val_accuracy", "maximize"))
    png, md, js = write_study(reading, tmp_path, title="Digits")
    assert Image.open(png).size[0] > 400
    text = md.read_text()
    assert text.startswith("# Digits\n\n![val_accuracy against median alpha](study.png)")
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| rank")]
    assert [row.split(" | ")[1] for row in rows] == ["r2", "r3", "r1", "r0", "r4"]
    assert "| 1 | r2 | 0.1 | 32 | 0.2 | 0.1 | 3 | 0.9 | finished |" in text
    data = json.loads(js.read_text())
    assert data["best_run"] == "r2" and data["next_range"] == pytest.approx([0.03, 0.3])
    assert data["covers_alpha_below_0"] and data["covers_alpha_above_0"]

    fig = study_figure(reading)
    ax = fig.axes[0]
    best_lines = [ln for ln in ax.get_lines() if ln.get_color() == BEST_COLOR]
    assert len(best_lines) == 1 and np.allclose(best_lines[0].get_xdata(), 0.2)
    points = ax.collections[0]
    assert np.allclose(points.get_offsets()[:, 0], [0.2, 0.6, -0.2, -0.5])  # ranked order, the NaN run left out
    sizes = points.get_sizes()
    assert sizes[1] > sizes[0] > sizes[2] > sizes[3]  # marker size grows with the learning rate
    assert any("not shown" in t.get_text() and "r4" in t.get_text() for t in fig.texts)
