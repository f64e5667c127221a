"""Sweeps into MLflow: child runs under one parent run on a real ``mlflow server``, and the study of them."""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from pathlib import Path

import pytest
import torch

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow_server import MlflowServer, mlflow_server_fixture  # noqa: E402, F401

from cockpit_log.backends.mlflow_sink import read_mlflow  # noqa: E402
from cockpit_log.cli import main  # noqa: E402
from cockpit_log.study import run_sweep, study_runs  # noqa: E402

HERE = Path(__file__).resolve().parent
LRS = [0.01, 0.3, 3.0]


@pytest.fixture
def mlflow_state(mlflow_server: MlflowServer):
    """MLflow pointed at the test server; its global state (URI, experiment, active runs) restored after."""
    uri = mlflow.get_tracking_uri()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield mlflow_server
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(uri)
    torch.set_num_threads(threads)


def test_mlflow_sweep_yields_child_runs_with_alpha_summaries_under_one_parent(mlflow_state, tmp_path: Path) -> None:
    url = mlflow_state.url
    config = {
        "name": "tiny-mlflow",
        "method": "grid",
        "metric": {"name": "val_loss", "goal": "minimize"},
        "parameters": {"lr": {"values": LRS}},
    }
    train = f"{HERE / 'study_train.py'}:train"
    result = run_sweep(config, train, sink="mlflow", out_dir=tmp_path, tracking_uri=url, experiment="study")
    outcome = study_runs(result.runs, tmp_path, metric=result.config.metric, targets=[result.backend])
    assert mlflow.active_run() is None  # the parent run was ended
    client = MlflowClient(url)
    parent_id = result.backend.run_id
    parent = client.get_run(parent_id)
    assert parent.info.run_name == "tiny-mlflow" and parent.info.status == "FINISHED"
    assert parent.data.tags["cockpit_sweep.metric"] == "val_loss"
    children = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert len(children) == 3
    by_id = {r.source.removeprefix("mlflow:"): r for r in result.runs}
    for child in children:
        run = by_id[child.info.run_id]
        assert float(child.data.params["lr"]) == run.params["lr"] and child.info.status == "FINISHED"
        assert any(r.quantity == "Alpha" for r in read_mlflow(child.info.run_id, url))
        assert math.isfinite(run.alpha_median)
        metrics = child.data.metrics
        assert metrics["cockpit/summary/alpha_median"] == pytest.approx(run.alpha_median)  # the sink's summary
        assert metrics["cockpit/summary/alpha_median_last10"] == pytest.approx(run.alpha_median_last10)
        assert metrics["cockpit_train_loss_final"] == pytest.approx(run.train_loss_final)
        assert metrics["val_loss"] == pytest.approx(run.value("val_loss"))
    # the study report is on the parent run
    artifacts = {Path(a.path).name for a in client.list_artifacts(parent_id, "cockpit-study")}
    assert artifacts == {"study.png", "study.md", "study.json"}
    assert client.get_run(parent_id).data.tags["cockpit_study.best_run"] == outcome.reading.best.name

    # the study from MLflow alone (the parent run, or the experiment) agrees with the sweep's
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = main(["study", f"mlflow:{parent_id}", "--tracking-uri", url, "--out", str(tmp_path / "again"), "--no-log"])
        assert rc == 0, out.getvalue()
        rc = main(["study", "mlflow-experiment:study", "--tracking-uri", url, "--out", str(tmp_path / "exp")])
    assert rc == 0, out.getvalue()
    for sub in ("again", "exp"):
        data = json.loads((tmp_path / sub / "study.json").read_text())
        assert data["best_run"] == outcome.reading.best.name and len(data["rows"]) == 3, sub
        assert data["metric"] == {"name": "val_loss", "goal": "minimize"}
        assert data["rows"][0][2] == outcome.reading.best.params["lr"]  # the lr column, parsed back to a number
