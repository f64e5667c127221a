"""The W&B sink against real offline W&B runs, read back from their transaction logs (no mocks)."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cockpit_log
from cockpit_log.errors import CockpitWarning
from cockpit_log.naming import metric_key
from cockpit_log.records import Histogram1d, Histogram2d, Record, record_to_dict
from cockpit_log.render import figure_png, histogram1d_figure, histogram2d_figure
from cockpit_log.summary import alpha_values, run_summary

wandb = pytest.importorskip("wandb")
from PIL import Image  # noqa: E402 - after the importorskip

from cockpit_log.backends._wandb_charts import ALPHA_SPEC, GAUGE_SPEC, SPECS, load_spec  # noqa: E402
from cockpit_log.backends._wandb_read import iter_log, load_run_log  # noqa: E402
from cockpit_log.backends.wandb_sink import WandbSink, read_wandb, replay_wandb  # noqa: E402

QUANTITIES = "full"
SETTINGS = {"x_disable_stats": True, "x_disable_machine_info": True, "console": "off"}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """W&B in offline mode with every file under ``tmp_path``."""
    for var, sub in [("WANDB_DIR", "wandb"), ("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache")]:
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("COCKPIT_LOG_DIR", str(tmp_path / "cockpit"))
    wandb.teardown()  # W&B reads its settings (WANDB_DIR, ...) once per process
    yield tmp_path
    if wandb.run is not None:
        wandb.finish()
    wandb.teardown()


def finished(path: Path, timeout: float = 20.0) -> Path:
    """``path`` once W&B's service has written the run's whole transaction log (up to its exit record).

    ``run.finish()`` returns before the service process has written everything to disk.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if any(r.WhichOneof("record_type") == "exit" for r in iter_log(path)):
                    break
            except (FileNotFoundError, ValueError):
                pass
        time.sleep(0.05)
    return path


def run_dir(run) -> Path:
    return finished(Path(run.dir).parent)


def dicts(records):
    return sorted((record_to_dict(r) for r in records), key=lambda d: (d["step"], d["quantity"]))


def hist1d(rng, bins, low=-1.0, high=1.0, **extra):
    return Histogram1d(rng.integers(0, 50, bins).astype(np.int64), np.linspace(low, high, bins + 1), **extra)


def hist2d(rng, nx=6, ny=9, **extra):
    counts = rng.integers(0, 4, (nx, ny)).astype(np.int64) * (rng.random((nx, ny)) < 0.5)
    return Histogram2d(counts, np.linspace(-0.5, 0.5, nx + 1), np.linspace(-2.0, 2.0, ny + 1), **extra)


def hand_made_records() -> list[Record]:
    """Every record type: scalars, NaN with reason, per-parameter maps, 1-D/2-D histograms, info."""
    rng = np.random.default_rng(0)
    out = []
    for step in range(3):
        out += [
            Record(step, "Loss", 2.5 / (step + 1)),
            Record(step, "GradNorm", 0.1 * step + 1 / 3, {"0.weight": 0.25, "0.bias": math.inf}),
            Record(step, "HessMaxEV", 12.5 + step, info={"hvps": 23.0 + step, "residual": 1e-7}),
            Record(step, "TICDiag", math.nan, {"0.weight": math.nan}, reason="no curvature at this step"),
            Record(
                step,
                "GradHist1d",
                hist1d(rng, 100, below=3, above=step, nonfinite=2),
                {"0.weight": hist1d(rng, 100, above=7), "0.bias": hist1d(rng, 100)},
            ),
            Record(step, "GradHist2d", hist2d(rng, x_below=1, y_above=2, nonfinite=1), {"0.weight": hist2d(rng)}),
        ]
    out.append(Record(2, "Alpha", -0.25))
    out.append(Record(3, "FineHist", hist1d(rng, 1030, low=-3.0, high=3.0)))  # more bins than W&B takes
    return out


def test_every_record_type_round_trips_through_an_offline_run(offline):
    records = hand_made_records()
    view_sizes = []

    def view(recs):  # stands in for the cockpit view: any figure built from the records so far
        fig = histogram1d_figure(next(r.value for r in reversed(recs) if r.quantity == "GradHist1d"))
        view_sizes.append(Image.open(io.BytesIO(figure_png(fig))).size)
        return fig

    sink = WandbSink(project="p", init_options={"settings": wandb.Settings(**SETTINGS)}, view=view, view_every=2)
    run = sink.run
    for step in sorted({r.step for r in records}):
        sink.write([r for r in records if r.step == step])
    sink.close()
    assert sink.owns_run and run._is_finished  # it started the run, so it finished it

    back = cockpit_log.read(run_dir(run))  # dispatches to read_wandb
    assert dicts(back) == dicts(records)

    log = load_run_log(run_dir(run))
    rows = [r for r in log.history if "cockpit/step" in r]
    by_step = {}
    for row in rows:
        by_step.setdefault(row["cockpit/step"], {}).update(row)
    # histogram objects carry exactly our counts and edges, network-wide and per parameter
    for r in records:
        if isinstance(r.value, Histogram1d) and len(r.value.counts) <= 512:
            for param, h in [(None, r.value), *r.per_param.items()]:
                logged = by_step[r.step][metric_key(r.quantity, param)]
                assert logged["_type"] == "histogram"
                assert logged["values"] == h.counts.tolist() and logged["bins"] == h.edges.tolist()
    fine = by_step[3][metric_key("FineHist")]
    assert len(fine["values"]) <= 512 and sum(fine["values"]) == int(records[-1].value.counts.sum())
    # 2-D histograms: an image of the rendered size, and a table
    for r in records:
        if r.quantity == "GradHist2d":
            img = by_step[r.step]["cockpit/grad_hist_2d"]
            png = figure_png(histogram2d_figure(r.value, title=f"GradHist2d, step {r.step}"))
            assert (img["width"], img["height"]) == Image.open(io.BytesIO(png)).size
            assert Image.open(log.files_dir / img["path"]).size == (img["width"], img["height"])
            assert by_step[r.step]["cockpit_tables/grad_hist_2d"]["_type"] == "table-file"
    # info as its own panels, NaN reasons kept
    assert by_step[1]["cockpit_info/hess_max_ev/hvps"] == 24.0
    assert json.loads(by_step[0]["cockpit_meta/tic_diag"])["reason"] == "no curvature at this step"
    # the view hook: every 2 tracked steps and at close, an image of the figure's size
    views = [row["cockpit_images/view"] for row in rows if "cockpit_images/view" in row]
    assert len(views) == 3 and len(view_sizes) == 3
    assert all((v["width"], v["height"]) == s for v, s in zip(views, view_sizes))
    # summary computed by us
    assert log.summary["cockpit_alpha_median"] == -0.25 and log.summary["cockpit_hess_max_ev_last"] == 14.5

    # a log cut short (a run killed mid-write) reads up to the damage, with a warning
    cut = offline / "cut" / "run-x.wandb"
    cut.parent.mkdir()
    whole = (run_dir(run) / f"run-{run.id}.wandb").read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    shutil.copytree(run_dir(run) / "files", cut.parent / "files")
    with pytest.warns(CockpitWarning, match="incomplete or damaged"):
        partial = list(iter_log(cut))
    assert 0 < len(partial) < len(list(iter_log(run_dir(run))))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert 0 < len(read_wandb(cut)) < len(records)
    said = " ".join(str(w.message) for w in caught)
    assert "incomplete or damaged" in said and "has not finished" in said


def train(model, loss_fn, opt, steps, seed=1, between=None):
    gen = torch.Generator().manual_seed(seed)
    for i in range(steps):
        x, y = torch.randn(16, 4, generator=gen), torch.randint(0, 3, (16,), generator=gen)
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        if between is not None:
            between(i)


def small_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    return model, nn.CrossEntropyLoss(), torch.optim.SGD(model.parameters(), lr=0.5)


def test_training_into_the_users_run(offline, capsys):
    settings = wandb.Settings(**SETTINGS, x_transaction_log_flush_interval=0.1)  # readable while running
    run = wandb.init(project="p", config={"lr": 0.5}, settings=settings)
    model, loss_fn, opt = small_model()
    ck = cockpit_log.attach(
        model,
        loss_fn,
        opt,
        sink=["memory", "wandb"],
        quantities=QUANTITIES,
        sink_options={"wandb": {"chart_entity": "my-team", "charts_every": 5}},
    )
    sink = next(g.sink for g in ck.sinks if isinstance(g.sink, WandbSink))
    live = []

    def between(i):
        wandb.log({"acc": i / 10})
        if i == 5:  # read the running run: the rows of steps 0-5 reach the file within the flush interval
            assert sink.flush(30)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and {r.step for r in live} != set(range(6)):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    live[:] = read_wandb(Path(run.dir).parent)
                time.sleep(0.1)
            assert any("has not finished" in str(w.message) for w in caught)

    steps = 12
    train(model, loss_fn, opt, steps, between=between)
    ck.close()
    assert {r.step for r in live} == set(range(6))
    assert wandb.run is run and not run._is_finished  # the sink does not finish the user's run
    run.log({"after": 1.0})
    run.finish()
    mem = ck.records
    assert {r.quantity for r in mem} == set(cockpit_log.PRESETS[QUANTITIES])

    log = load_run_log(run_dir(run))
    # every scalar record (and per-parameter value) is in the history at its step with its value
    cells = {}
    for row in log.history:
        if "cockpit/step" in row:
            for k, v in row.items():
                cells[(row["cockpit/step"], k)] = v
    for r in mem:
        if r.is_scalar:
            got = cells[(r.step, metric_key(r.quantity))]
            assert got == r.value or (math.isnan(r.value) and got == "NaN")
            for p, v in r.per_param.items():
                assert cells[(r.step, metric_key(r.quantity, p))] == v
    assert dicts(read_wandb(run_dir(run))) == dicts(mem)
    # the cockpit view (default) is logged once, at close, as an image
    views = [row["cockpit_images/view"] for row in log.history if "cockpit_images/view" in row]
    assert len(views) == 1 and views[0]["width"] > 1000
    from cockpit_log.backends.wandb_cli import main

    assert main(["read", str(run_dir(run))]) == 0
    assert f"{len(mem)} records over {steps} steps" in capsys.readouterr().out
    # the user's rows land, and nothing goes back in step
    assert [row["acc"] for row in log.history if "acc" in row] == [i / 10 for i in range(steps)]
    assert any("after" in row for row in log.history)
    assert [row["_step"] for row in log.history] == list(range(len(log.history)))
    seen = {}
    for row in log.history:
        for k in row:
            if k.startswith("cockpit/") and k != "cockpit/step":
                assert row["cockpit/step"] > seen.get(k, -1), k
                seen[k] = row["cockpit/step"]
    # custom charts: tables hold the alpha values, chart references point at the entity's presets
    table_row = log.summary["cockpit_charts/alpha_distribution_table"]
    table = json.loads((log.files_dir / table_row["path"]).read_text())
    alphas = alpha_values(mem)
    assert [(s, a) for s, a, _ in table["data"]] == alphas
    last = max(r.step for r in mem)
    assert [flag for _, _, flag in table["data"]] == [s >= 0.9 * last for s, _ in alphas]
    visualize = log.config["_wandb"]["visualize"]
    assert visualize["cockpit_charts/alpha_distribution"]["panel_config"]["panelDefId"] == f"my-team/{ALPHA_SPEC}"
    assert visualize["cockpit_charts/gradient_tests"]["panel_config"]["panelDefId"] == f"my-team/{GAUGE_SPEC}"
    for key, spec in [("alpha_distribution", ALPHA_SPEC), ("gradient_tests", GAUGE_SPEC)]:
        fields = set(visualize[f"cockpit_charts/{key}"]["panel_config"]["fieldSettings"])
        assert fields == set(re.findall(r"\$\{field:(\w+)\}", json.dumps(load_spec(spec))))
    # summary (alpha medians, last values) and config (the cockpit's settings)
    expected = run_summary(mem)
    assert log.summary["cockpit_alpha_median"] == pytest.approx(expected["alpha_median"], rel=1e-12)
    assert log.summary["cockpit_alpha_median_last10"] == pytest.approx(expected["alpha_median_last10"], rel=1e-12)
    assert log.summary["cockpit_loss_last"] == expected["loss_last"]
    cfg = log.config["cockpit"]
    assert cfg["num_params"] == sum(p.numel() for p in model.parameters())
    assert cfg["params"] == [n for n, _ in model.named_parameters()] and len(cfg["quantities"]) == len(
        cockpit_log.PRESETS[QUANTITIES]
    )
    assert log.config["lr"] == 0.5


def test_a_wandb_failure_loses_nothing_and_replays(offline):
    run = wandb.init(project="p", settings=wandb.Settings(**SETTINGS))
    model, loss_fn, opt = small_model()
    ck = cockpit_log.attach(model, loss_fn, opt, sink=["memory", "wandb"], quantities=QUANTITIES)
    sink = next(g.sink for g in ck.sinks if isinstance(g.sink, WandbSink))

    def finish_underneath(i):
        if i == 4:
            assert sink.flush(30)
            run.finish()  # the run ends under the sink, mid-training

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(model, loss_fn, opt, 10, between=finish_underneath)
        ck.close()
    assert ck.current_step == 10  # training went on
    messages = [str(w.message) for w in caught if issubclass(w.category, CockpitWarning)]
    assert sum("logging to W&B failed" in m for m in messages) == 1  # one warning, not one per step
    assert any("did not reach W&B" in m for m in messages)

    mem = {(r.step, r.quantity): record_to_dict(r) for r in ck.records}
    logged = {(r.step, r.quantity): record_to_dict(r) for r in read_wandb(run_dir(run))}
    spool = run_dir(run) / "cockpit-spool.jsonl"
    spooled = {(r.step, r.quantity): record_to_dict(r) for r in cockpit_log.read(spool)}
    assert {k[0] for k in logged} == set(range(5)) and max(k[0] for k in spooled) == 9
    assert logged | spooled == mem  # none lost (the spool is at least once: it may repeat the last step logged)
    assert all(mem[k] == v for k, v in [*logged.items(), *spooled.items()])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # W&B's own notes about resuming offline
        replayed = replay_wandb(spool, settings=wandb.Settings(**SETTINGS))
    assert replayed == len(set(spooled) - set(logged))
    assert not spool.exists() and spool.with_name(spool.name + ".replayed").exists()
    resumed = [d for d in run_dir(run).parent.glob(f"offline-run-*-{run.id}*") if d != run_dir(run)]
    assert len(resumed) == 1
    again = {(r.step, r.quantity): record_to_dict(r) for r in read_wandb(finished(resumed[0]))}
    assert set(again).isdisjoint(logged) and logged | again == mem  # once each, after the replay
    summary = load_run_log(resumed[0]).summary
    assert summary["cockpit_steps"] == 10  # the summary covers the whole run again
    assert summary["cockpit_alpha_median"] == pytest.approx(run_summary(ck.records)["alpha_median"], rel=1e-12)


def test_specs_ship_with_the_package():
    for name, (filename, _) in SPECS.items():
        spec = load_spec(name)
        assert spec["data"] == {"name": "wandb"} and spec["$schema"].startswith(
            "https://vega.github.io/schema/vega-lite"
        )
        assert Path(cockpit_log.__file__).parent.joinpath("backends", "vega", filename).is_file()


def test_the_training_thread_never_waits_and_nothing_is_lost(tmp_path):
    from cockpit_log.backends._wandb_queue import BackgroundSender, Spool
    from cockpit_log.errors import WarnOnce

    delivered = []

    def slow(batch):  # a tracker much slower than training
        time.sleep(0.2)
        delivered.extend(batch)

    sender = BackgroundSender(slow, Spool(tmp_path / "spool.jsonl"), WarnOnce(), maxsize=2)
    t0 = time.perf_counter()
    with pytest.warns(CockpitWarning, match="fell behind"):
        for step in range(20):
            sender.put([Record(step, "Loss", float(step))])
    assert time.perf_counter() - t0 < 0.1  # the queue is full after 3 puts; the rest went to the spool
    finished = sender.close(timeout=5.0)
    assert finished
    spooled = cockpit_log.read(tmp_path / "spool.jsonl")
    assert sorted(r.step for r in delivered + spooled) == list(range(20))

    # a tracker that hangs: close() gives up after its timeout and spools the batch in flight too
    hung = BackgroundSender(lambda b: time.sleep(3), Spool(tmp_path / "hung.jsonl"), WarnOnce(), maxsize=10)
    for step in range(3):
        hung.put([Record(step, "Loss", 1.0)])
    time.sleep(0.05)
    with pytest.warns(CockpitWarning, match="did not finish"):
        assert not hung.close(timeout=0.3)
    assert sorted(r.step for r in cockpit_log.read(tmp_path / "hung.jsonl")) == [0, 1, 2]


def test_example_script_prints_the_sync_command(offline, tmp_path):
    import subprocess
    import sys

    root = Path(__file__).parent.parent
    out = subprocess.run(
        [sys.executable, str(root / "examples" / "train_with_wandb.py"), "--steps", "8", "--dir", str(tmp_path / "ex")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert out.returncode == 0, out.stderr
    m = re.search(r"wandb sync (\S+)", out.stdout)
    assert m, out.stdout
    records = read_wandb(finished(Path(m.group(1))))
    assert {r.quantity for r in records} == set(cockpit_log.PRESETS[QUANTITIES]) and max(r.step for r in records) == 7
    shutil.rmtree(tmp_path / "ex")
