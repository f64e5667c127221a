"""Sweeps end to end: a grid of three learning rates into local runs and W&B offline runs, the study of them."""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
import warnings
from pathlib import Path

import pytest
import torch

from cockpit_log import read
from cockpit_log.cli import main
from cockpit_log.study import Metric, run_study, run_sweep, study_runs
from cockpit_log.summary import run_summary

HERE = Path(__file__).resolve().parent
TRAIN = f"{HERE / 'study_train.py'}:train"
LRS = [0.01, 0.3, 3.0]
GRID = {
    "name": "tiny",
    "method": "grid",
    "metric": {"name": "val_loss", "goal": "minimize"},
    "parameters": {"lr": {"values": LRS}},
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these models are tiny, and on a busy machine more threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(list(args))
    return rc, out.getvalue()


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    """``cockpit-log sweep`` of three learning rates into local run directories (YAML config)."""
    pytest.importorskip("yaml")
    tmp = tmp_path_factory.mktemp("sweep")
    config = tmp / "sweep.yaml"
    config.write_text(
        "name: tiny\nmethod: grid\nmetric: {name: val_loss, goal: minimize}\n"
        "parameters:\n  lr: {values: [0.01, 0.3, 3.0]}\n"
    )
    rc, text = cli("sweep", str(config), "--train", TRAIN, "--out", str(tmp / "out"))
    return rc, text, tmp / "out"


def test_local_grid_sweep_yields_three_runs_with_alpha_summaries(local_sweep: tuple[int, str, Path]) -> None:
    rc, text, out = local_sweep
    assert rc == 0, text
    index = json.loads((out / "sweep.json").read_text())
    trials = index["trials"]
    assert [t["params"]["lr"] for t in trials] == LRS
    assert index["metric"] == {"name": "val_loss", "goal": "minimize"}
    for t in trials:
        assert t["status"] == "finished"
        run_dir = Path(t["source"])
        records = read(run_dir)
        # the summary the runner kept equals the one computed from the run's records read back
        again = run_summary(records)
        assert math.isfinite(t["summary"]["alpha_median"])
        assert t["summary"]["alpha_median"] == pytest.approx(again["alpha_median"])
        assert t["summary"]["alpha_median_last10"] == pytest.approx(again["alpha_median_last10"])
        losses = [r.value for r in records if r.quantity == "Loss" and r.step >= 0.9 * max(x.step for x in records)]
        assert t["summary"]["train_loss_final"] == pytest.approx(sum(losses) / len(losses))
        assert 0 < t["metrics"]["val_loss"] < 10 and 0 <= t["metrics"]["val_accuracy"] <= 1
        assert json.loads((run_dir / "trial.json").read_text())["params"] == t["params"]
    best = min(trials, key=lambda t: t["metrics"]["val_loss"])
    study = json.loads((out / "study.json").read_text())
    assert study["best_run"] == best["name"] and study["metric"] == {"name": "val_loss", "goal": "minimize"}
    assert (out / "study.png").stat().st_size > 10_000
    assert f"best run {best['name']}" in text and "median alpha" in text


def test_study_command_over_the_sweep_and_over_its_run_directories(local_sweep: tuple[int, str, Path]) -> None:
    _, _, out = local_sweep
    best = json.loads((out / "study.json").read_text())["best_run"]
    rc, text = cli("study", str(out), "--out", str(out / "again"))
    assert rc == 0 and json.loads((out / "again" / "study.json").read_text())["best_run"] == best
    # the plain run directories: parameters and metrics from their trial.json, the metric named here
    dirs = sorted(str(p) for p in (out / "trials").iterdir())
    rc, text = cli("study", *dirs, "--metric", "val_loss", "--out", str(out / "dirs"))
    data = json.loads((out / "dirs" / "study.json").read_text())
    assert rc == 0 and data["best_run"] == best and len(data["rows"]) == 3
    by_accuracy = ["--metric", "val_accuracy", "--goal", "maximize", "--out", str(out / "acc")]
    rc, text = cli("study", str(out / "trials"), *by_accuracy)
    assert rc == 0 and "by val_accuracy (maximize)" in text


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path: Path) -> None:
    config = {**GRID, "parameters": {"lr": {"values": [0.1, 1.0]}}}
    result = run_sweep(config, f"{HERE / 'study_train.py'}:train_failing", out_dir=tmp_path)
    ok, failed = result.runs
    assert ok.status == "finished" and math.isfinite(ok.value("val_loss"))  # a plain number gets the metric's name
    assert failed.status == "failed" and "learning rate too large" in failed.error
    index = json.loads((tmp_path / "sweep.json").read_text())
    assert [t["status"] for t in index["trials"]] == ["finished", "failed"]
    reading = study_runs(result.runs, tmp_path, metric=result.config.metric).reading
    assert reading.best is ok and reading.ranked[-1] is failed


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"method": "grid", "parameters": {"lr": {"min": 0.1, "max": 1}}}))
    rc, _ = cli("sweep", str(bad), "--train", TRAIN)
    assert rc == 1
    rc, _ = cli("study", str(tmp_path / "nothing"))
    assert rc == 1


def test_random_search_with_count_and_metrics_logged_by_the_function(tmp_path: Path) -> None:
    config = {
        "method": "random",
        "metric": {"name": "val_accuracy", "goal": "maximize"},
        "parameters": {"lr": {"distribution": "log_uniform_values", "min": 0.01, "max": 1.0}, "steps": {"value": 8}},
    }
    result = run_sweep(config, f"{HERE / 'study_train.py'}:train_logging", out_dir=tmp_path, count=2, seed=5)
    assert len(result.runs) == 2 and all(0.01 <= r.params["lr"] <= 1.0 for r in result.runs)
    assert all(math.isfinite(r.value("val_accuracy")) for r in result.runs)


# ---------------------------------------------------------------------------------------------- W&B offline
wandb = pytest.importorskip("wandb")


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """W&B in offline mode with every file under ``tmp_path``."""
    for var, sub in [("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache")]:
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    wandb.teardown()
    yield tmp_path
    if wandb.run is not None:
        wandb.finish()
    wandb.teardown()


def wait_finished(run_dirs: list[Path], timeout: float = 30.0) -> None:
    """Until W&B's service has written each run's exit record (it does so just after ``finish`` returns)."""
    from cockpit_log.backends._wandb_read import load_run_log

    deadline = time.monotonic() + timeout
    for d in run_dirs:
        while time.monotonic() < deadline:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    if load_run_log(d).finished:
                        break
                except (FileNotFoundError, ValueError):
                    pass
            time.sleep(0.05)


def test_wandb_offline_sweep_yields_three_runs_with_alpha_summaries_and_a_study_run(offline: Path) -> None:
    from cockpit_log.backends._wandb_read import load_run_log
    from cockpit_log.backends.wandb_sink import read_wandb

    out = offline / "sweep"
    result = run_sweep(GRID, TRAIN, sink="wandb", out_dir=out, project="cockpit-test")
    outcome = study_runs(result.runs, out, metric=result.config.metric, targets=[result.backend])
    assert outcome.logged_to and not outcome.log_errors
    run_dirs = sorted((out / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 4  # three trials and the study
    wait_finished(run_dirs)
    logs = {d: load_run_log(d) for d in run_dirs}
    trials = [d for d in run_dirs if "cockpit_study_reading" not in logs[d].summary]
    assert len(trials) == 3
    by_source = {r.source: r for r in result.runs}
    for d in trials:
        log, run = logs[d], by_source[str(d)]
        assert log.config["lr"] == run.params["lr"] and log.project == "cockpit-test"
        assert any(r.quantity == "Alpha" for r in read_wandb(d))
        assert math.isfinite(run.alpha_median)
        assert log.summary["cockpit_alpha_median"] == pytest.approx(run.alpha_median)
        assert log.summary["cockpit_train_loss_final"] == pytest.approx(run.train_loss_final)
        assert log.summary["val_loss"] == pytest.approx(run.value("val_loss"))
    study_log = next(logs[d] for d in run_dirs if d not in trials)
    assert study_log.summary["cockpit_study_best_run"] == outcome.reading.best.name
    assert any("cockpit_study/plot" in row for row in study_log.history)

    # the study read from the W&B run directories alone agrees with the one the sweep made
    again = run_study([str(out / "wandb")], offline / "again", log=False)
    assert len(again.reading.ranked) == 3  # the study run itself is left out
    assert again.reading.metric == Metric("val_loss", "minimize")  # from the runs' config
    assert again.reading.best.name == outcome.reading.best.name
    assert again.reading.best.alpha_median == pytest.approx(outcome.reading.best.alpha_median)


def test_the_same_function_runs_under_wandb_agent(offline: Path) -> None:
    """``agent_function(train)`` is what ``wandb.agent`` calls; offline it runs with the defaults."""
    import study_train

    from cockpit_log.backends._wandb_read import load_run_log
    from cockpit_log.study import agent_function

    function = agent_function(study_train.train, defaults={"lr": 0.3}, project="agent-test", dir=str(offline))
    run = function()
    assert run.status == "finished" and run.params == {"lr": 0.3} and math.isfinite(run.alpha_median)
    wait_finished([Path(run.source)])
    log = load_run_log(run.source)
    assert log.summary["cockpit_alpha_median"] == pytest.approx(run.alpha_median)
    assert log.summary["val_loss"] == pytest.approx(run.value("val_loss"))
