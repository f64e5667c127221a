"""The MLflow sink against a real ``mlflow server`` (and MLflow's embedded sqlite default): no mocks."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import matplotlib.image
import mlflow
import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from mlflow_server import MlflowServer, mlflow_server_fixture  # noqa: F401
from torch import nn

import cockpit_log
from cockpit_log.backends.mlflow_ops import (
    IMAGES_DIR,
    RECORDS_DIR,
    VIEW_PATH,
    image_figures,
    record_metrics,
    summary_key,
)
from cockpit_log.backends.mlflow_sink import MLflowSink, _run_id_from_ref, _SummaryInputs, read_mlflow, replay_spool
from cockpit_log.records import Histogram1d, Histogram2d, Record, record_to_json
from cockpit_log.render import figure_png, histogram1d_figure
from cockpit_log.summary import run_summary
from examples.train_cnn_digits import digits_loader, small_cnn

QUANTITIES = "full"


# ---------------------------------------------------------------------- helpers
def as_json(records: list[Record]) -> list[str]:
    """Exact, NaN-aware comparison form of records."""
    return [record_to_json(r) for r in records]


class Training:
    """The example CNN on digits with the cockpit attached; ``steps(n)`` runs n more optimizer steps."""

    def __init__(self, sink, seed: int = 0, lr: float = 0.1, sink_options: dict | None = None) -> None:  # noqa: ANN001
        torch.manual_seed(seed)
        self.model = small_cnn()
        self.loss_fn = nn.CrossEntropyLoss()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        self.ck = cockpit_log.attach(
            self.model, self.loss_fn, self.opt, sink=sink, quantities=QUANTITIES, sink_options=sink_options
        )
        self.batches = digits_loader(32, seed=seed)

    def steps(self, n: int) -> None:
        for _ in range(n):
            x, y = next(self.batches)
            self.opt.zero_grad()
            self.loss_fn(self.model(x), y).backward()
            self.opt.step()


def expected_histories(records: list[Record]) -> dict[str, list[tuple[int, float]]]:
    out: dict[str, list[tuple[int, float]]] = {}
    for r in records:
        for key, value in record_metrics(r):
            out.setdefault(key, []).append((r.step, value))
    return out


def assert_histories_equal(client: MlflowClient, run_id: str, records: list[Record]) -> None:
    """Every metric history equals the records (steps and values, each point once), and nothing else is there."""
    expected = expected_histories(records)
    logged = {k for k in client.get_run(run_id).data.metrics if not k.startswith("cockpit/summary/")}
    assert logged == set(expected)
    for key, points in expected.items():
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))
        want = sorted(points)
        assert len(history) == len(want), key  # none lost, none duplicated
        for (s, v), (ws, wv) in zip(history, want):
            assert s == ws and (v == wv or (math.isnan(v) and math.isnan(wv))), (key, s, v, wv)


def artifact_files(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for f in client.list_artifacts(run_id, path):
        out.extend(artifact_files(client, run_id, f.path) if f.is_dir else [f.path])
    return out


def hand_made_records(alpha: float, steps: int = 4) -> list[Record]:
    """Every record type: floats with per-parameter values, NaN with a reason, info, 1-D and 2-D histograms."""
    rng = np.random.default_rng(0)
    out = []
    for t in range(steps):
        h1 = Histogram1d(rng.integers(0, 50, 20), np.linspace(-1, 1, 21), below=1, above=2, nonfinite=1)
        h2 = Histogram2d(rng.integers(0, 9, (6, 8)), np.linspace(-1, 1, 7), np.linspace(-2, 2, 9), x_above=3)
        out += [
            Record(t, "Alpha", alpha),
            Record(t, "HessTrace", 10.0 + t, per_param={"fc.weight": 7.0 + t, "fc.bias": 3.0}),
            Record(t, "HessMaxEV", 2.5 * t, info={"hvps": 23.0, "residual": 1e-4}),
            Record(t, "TICDiag", math.nan, reason="curvature vanished"),
            Record(t, "GradHist1d", h1, per_param={"fc.weight": h1, "fc.bias": h1}),
            Record(t, "GradHist2d", h2, per_param={"fc.weight": h2}),
        ]
    return out


def png_shape(data: bytes, tmp: Path) -> tuple[int, ...]:
    path = tmp / "image.png"
    path.write_bytes(data)
    return matplotlib.image.imread(path).shape


def check_training_run(
    client: MlflowClient, run_id: str, train: Training, image_steps: tuple[int, ...], tmp: Path
) -> None:
    """Metrics, read-back, params, summary, pictures (only at ``image_steps``) and raw counts of a training run."""
    records = train.ck.records
    run = client.get_run(run_id)
    assert_histories_equal(client, run_id, records)
    assert as_json(read_mlflow(run_id, tracking_uri=client.tracking_uri)) == as_json(records)

    params = run.data.params
    assert params["cockpit/batch_size"] == "32" and params["cockpit/optimizer"] == "SGD"
    assert float(params["cockpit/lr"]) == train.opt.param_groups[0]["lr"]
    assert int(params["cockpit/num_params"]) == sum(p.numel() for p in train.model.parameters())
    assert "Alpha" in params["cockpit/quantities"] and params["cockpit/schedule"].startswith("every(1")
    summary = {summary_key(k): v for k, v in run_summary(records).items() if math.isfinite(v)}
    assert {k: v for k, v in run.data.metrics.items() if k.startswith("cockpit/summary/")} == summary

    # pictures of the histograms at image_steps only; the raw counts in the records artifact
    files = artifact_files(client, run_id)
    hist = {r.step: r for r in records if r.quantity == "GradHist1d"}
    expected = [png_shape(figure_png(fig), tmp) for fig in image_figures(hist[image_steps[0]]).values()]
    for step in image_steps:
        for path, shape in zip(image_figures(hist[step]), expected):
            assert path in files
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, dst_path=str(tmp), tracking_uri=client.tracking_uri
            )
            got = matplotlib.image.imread(local).shape  # the same picture as drawn here: it opens, same size
            assert got == shape and got[0] > 200 and got[1] > 300
    others = set(hist) - set(image_steps)
    assert not any(f"step-{s:07d}" in f for f in files if f.startswith(IMAGES_DIR) for s in others)
    back = read_mlflow(f"runs:/{run_id}", tracking_uri=client.tracking_uri)
    raw = {(r.quantity, r.step): r for r in back if r.is_histogram}
    histograms = [r for r in records if r.is_histogram]
    assert {(r.quantity, r.step) for r in histograms} == set(raw) and len(raw) > len(hist)  # 1-D and 2-D
    for r in histograms:
        assert raw[(r.quantity, r.step)].value == r.value  # counts, edges, clipping and NaN counts
        for name, h in r.per_param.items():
            assert raw[(r.quantity, r.step)].per_param[name] == h
    assert any(f.startswith(RECORDS_DIR + "/part-") for f in files)


# ---------------------------------------------------------------------- no server needed
def test_summary_inputs_give_the_same_summary_as_all_records() -> None:
    rng = np.random.default_rng(3)
    records = []
    for t in range(200):
        records.append(Record(t, "Alpha", float(rng.normal()) if t % 7 else math.nan))
        records.append(Record(t, "Loss", float(rng.random())))
        if t % 3 == 0:
            records.append(Record(t, "GradHist1d", Histogram1d(np.ones(4, dtype=np.int64), np.linspace(-1, 1, 5))))
    records.append(Record(200, "GradNorm", math.inf))
    kept = _SummaryInputs()
    for r in records:
        kept.add(r)
    assert run_summary(kept.records()) == run_summary(records)


def test_run_references() -> None:
    assert _run_id_from_ref("abc123") == "abc123"
    assert _run_id_from_ref("runs:/abc123") == _run_id_from_ref("runs:/abc123/model") == "abc123"
    assert _run_id_from_ref("mlflow:abc123") == "abc123"
    with pytest.raises(ValueError):
        _run_id_from_ref("runs:/")


# ---------------------------------------------------------------------- against the server
def test_training_run_is_in_mlflow_and_queryable(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    client = MlflowClient(mlflow_server.url)
    experiment = "cockpit-run-and-control"
    sink = MLflowSink(
        tracking_uri=mlflow_server.url, experiment=experiment, run_name="digits", image_every=4, linger_s=0.2
    )
    train = Training(["memory", sink])
    train.steps(5)
    train.ck.close()
    records = train.ck.records
    run_id = sink.run_id
    assert run_id and sink.spool_path is None

    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "digits"  # the sink started it, so it ended it
    check_training_run(client, run_id, train, image_steps=(0, 4), tmp=tmp_path)  # every 4; 4 is the last
    default_view = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=VIEW_PATH, dst_path=str(tmp_path / "view"), tracking_uri=mlflow_server.url
    )
    assert matplotlib.image.imread(default_view).shape[1] > 1000  # the cockpit view, drawn at close by default

    # a control run with every record type (Histogram2d, info, NaN with a reason), written directly
    median = run_summary(records)["alpha_median"]
    control_records = hand_made_records(alpha=median - 1.0, steps=3)
    view = figure_png(histogram1d_figure(control_records[4].value, title="stand-in for the cockpit view"))
    control = MLflowSink(
        tracking_uri=mlflow_server.url, experiment=experiment, image_every=2, linger_s=0.1, view_png=lambda: view
    )
    for t in range(3):
        control.write([r for r in control_records if r.step == t])
    control.close()
    assert as_json(read_mlflow(control.run_id, tracking_uri=mlflow_server.url)) == as_json(control_records)
    assert_histories_equal(client, control.run_id, control_records)
    control_files = artifact_files(client, control.run_id)
    for step in (0, 2):  # every 2 steps (the last one, 2, is among them)
        assert f"{IMAGES_DIR}/grad_hist_2d/step-{step:07d}.png" in control_files
        assert f"{IMAGES_DIR}/grad_hist_1d/step-{step:07d}-layers.png" in control_files
    assert f"{IMAGES_DIR}/grad_hist_2d/step-0000001.png" not in control_files
    view_file = mlflow.artifacts.download_artifacts(
        run_id=control.run_id, artifact_path=VIEW_PATH, dst_path=str(tmp_path), tracking_uri=mlflow_server.url
    )
    assert Path(view_file).read_bytes() == view  # the hook's picture, stored at close

    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        key = "metrics.`cockpit/summary/alpha_median`"
        above = mlflow.search_runs(experiment_names=[experiment], filter_string=f"{key} > {median - 0.5}")
        below = mlflow.search_runs(experiment_names=[experiment], filter_string=f"{key} < {median - 0.5}")
    finally:
        mlflow.set_tracking_uri(None)
    assert list(above["run_id"]) == [run_id]
    assert list(below["run_id"]) == [control.run_id]


def test_server_killed_mid_run_loses_and_duplicates_nothing(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """Run B waits for the server to come back at close; run A gives up, spools, and is replayed later."""
    client = MlflowClient(mlflow_server.url)
    options = {"tracking_uri": mlflow_server.url, "experiment": "cockpit-kill", "linger_s": 0.1, "timeout_s": 2}
    options["spool_dir"] = tmp_path
    sink_a = MLflowSink(**options, image_every=6, close_timeout_s=1.0)
    sink_b = MLflowSink(**options, image_every=0, close_timeout_s=90.0)
    a, b = Training(["memory", sink_a], seed=1), Training(["memory", sink_b], seed=2)
    for t in (a, b):
        t.steps(3)
    assert sink_a.flush(60) and sink_b.flush(60)  # part of the run is in before the crash
    mlflow_server.kill()
    try:
        for t in (a, b):
            t.steps(4)  # training goes on while the tracker is down
        with pytest.warns(cockpit_log.CockpitWarning, match="cockpit-log replay"):
            a.ck.close()
        assert sink_a.spool_path is not None and sink_a.spool_path.is_file()
        assert sink_a.stats.failures > 0
    finally:
        mlflow_server.start()
    b.ck.close()  # the server is back: the backlog goes in
    assert sink_b.spool_path is None
    assert_histories_equal(client, sink_b.run_id, b.ck.records)
    assert as_json(read_mlflow(sink_b.run_id, tracking_uri=mlflow_server.url)) == as_json(b.ck.records)
    assert client.get_run(sink_b.run_id).info.status == "FINISHED"

    assert client.get_run(sink_a.run_id).info.status == "RUNNING"  # its end is in the spool
    from cockpit_log.cli import main as cli_main  # the command the sink's warning names

    assert cli_main(["replay", str(sink_a.spool_path)]) == 0
    assert sink_a.spool_path.with_name(sink_a.spool_path.name + ".replayed").is_file()
    assert_histories_equal(client, sink_a.run_id, a.ck.records)
    assert as_json(read_mlflow(sink_a.run_id, tracking_uri=mlflow_server.url)) == as_json(a.ck.records)
    run_a = client.get_run(sink_a.run_id)
    assert run_a.info.status == "FINISHED" and "cockpit/summary/loss_last" in run_a.data.metrics
    assert f"{IMAGES_DIR}/grad_hist_1d/step-0000006.png" in artifact_files(client, sink_a.run_id)


def test_hung_tracker_bounded_memory_spool_and_replay(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """A server that accepts connections and never answers: calls time out, records overflow to disk, close spools."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(64)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        sink = MLflowSink(
            tracking_uri=url,
            experiment="cockpit-spool",
            timeout_s=1,
            close_timeout_s=2.0,
            max_queue_mb=0.02,
            linger_s=0.05,
            spool_dir=tmp_path,
            image_every=0,
        )
        records = hand_made_records(alpha=0.5, steps=60)
        worst = 0
        t0 = time.perf_counter()
        for t in range(60):
            sink.write([r for r in records if r.step == t])
            worst = max(worst, sink.memory_bytes)
        assert time.perf_counter() - t0 < 1.0  # writing never waits for the tracker
        assert worst <= 0.02 * (1 << 20)
        assert sink.stats.spilled > 0 and list(tmp_path.glob("overflow-*.jsonl"))
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sink.close()
        assert time.perf_counter() - t0 < 15  # not MLflow's retry budget of minutes
    assert sum("cockpit-log replay" in str(w.message) for w in caught) == 1
    assert sink.run_id is None and sink.spool_path is not None
    assert not list(tmp_path.glob("overflow-*.jsonl"))
    run_id = replay_spool(sink.spool_path, tracking_uri=mlflow_server.url)  # creates the run it never had
    client = MlflowClient(mlflow_server.url)
    assert as_json(read_mlflow(run_id, tracking_uri=mlflow_server.url)) == as_json(records)
    assert_histories_equal(client, run_id, records)
    assert client.get_experiment(client.get_run(run_id).info.experiment_id).name == "cockpit-spool"
    assert replay_spool(sink.spool_path.with_name(sink.spool_path.name + ".replayed"), mlflow_server.url) == run_id
    assert_histories_equal(client, run_id, records)  # replaying twice adds nothing


def test_script_that_never_closes_still_delivers(mlflow_server: MlflowServer) -> None:
    script = textwrap.dedent(
        f"""
        from cockpit_log.backends.mlflow_sink import MLflowSink
        from cockpit_log.records import Record
        sink = MLflowSink(tracking_uri={mlflow_server.url!r}, experiment="cockpit-at-exit", linger_s=600)
        for t in range(5):
            sink.write([Record(t, "Loss", 1.0 / (t + 1))])
        print(sink.sink_id)
        """
    )  # no close(), and a linger longer than the script: only the exit hook can send the records
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120, check=True
    )
    client = MlflowClient(mlflow_server.url)
    experiment = client.get_experiment_by_name("cockpit-at-exit")
    (run,) = client.search_runs([experiment.experiment_id], f"tags.cockpit_log_sink_id = '{out.stdout.strip()}'")
    assert_histories_equal(client, run.info.run_id, [Record(t, "Loss", 1.0 / (t + 1)) for t in range(5)])
    assert run.info.status == "FINISHED"


# ---------------------------------------------------------------------- embedded default (no server)
def test_embedded_default_and_active_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    mlflow.set_tracking_uri(None)
    uri = mlflow.get_tracking_uri()
    assert uri.startswith("sqlite:") and str(tmp_path) in uri  # MLflow's local default: a sqlite file here

    train = Training(["memory", "mlflow"], seed=3)  # default options: pictures at step 0 and of the last step
    train.steps(4)
    train.ck.close()
    sink = next(g.sink for g in train.ck.sinks if isinstance(g.sink, MLflowSink))
    assert sink.tracking_uri == uri and sink.started_run
    client = MlflowClient(uri)
    check_training_run(client, sink.run_id, train, image_steps=(0, 3), tmp=tmp_path)
    assert as_json(cockpit_log.read(f"mlflow:{sink.run_id}")) == as_json(train.ck.records)
    assert client.get_run(sink.run_id).info.status == "FINISHED"

    # inside the user's own run: logs there and leaves it open
    with mlflow.start_run() as run:
        mlflow.log_param("user_param", 1)
        inner = Training(["memory", "mlflow"], seed=4, sink_options={"mlflow": {"image_every": 0}})
        inner.steps(2)
        inner.ck.close()
        assert client.get_run(run.info.run_id).info.status == "RUNNING"
    assert_histories_equal(client, run.info.run_id, inner.ck.records)
    assert client.get_run(run.info.run_id).data.params["user_param"] == "1"
    found = mlflow.search_runs(filter_string="metrics.`cockpit/summary/steps` = 4", search_all_experiments=True)
    assert list(found["run_id"]) == [sink.run_id]  # the 4-step run, not the 2-step one
    mlflow.set_tracking_uri(None)
