"""The local store (round trip, crash safety), the record contract, schedules and the explicit API."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cockpit_log
from cockpit_log.records import Histogram1d, Record


def small_run(steps=5, **kwargs):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    loss_fn = nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit_log.attach(model, loss_fn, opt, **kwargs)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(8, 4, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    ck.close()
    return ck


def test_local_store_round_trip_equals_memory(tmp_path):
    ck = small_run(sink=["memory", "local"], sink_options={"local": {"run_dir": tmp_path / "run"}})
    assert ck.run_dir == tmp_path / "run"
    back = cockpit_log.read(tmp_path / "run")
    assert back == ck.records
    assert (tmp_path / "run" / "meta.json").is_file()
    # record contract: steps from 0, paper names, floats and histograms, per-parameter names
    names = {n for n, _ in nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).named_parameters()}
    for r in back:
        assert isinstance(r, Record) and r.step >= 0
        assert isinstance(r.value, (float, Histogram1d))
        if r.per_param:
            assert set(r.per_param) == names
    assert {r.quantity for r in back} == set(cockpit_log.PRESETS["economy"])


def test_nan_survives_the_store(tmp_path):
    sink = cockpit_log.LocalSink(tmp_path)
    sink.write([Record(0, "Alpha", math.nan, reason="why"), Record(1, "GradNorm", math.inf)])
    sink.close()
    text = (tmp_path / "records.jsonl").read_text()
    assert "NaN" in text and "Infinity" in text
    back = cockpit_log.read(tmp_path)
    assert math.isnan(back[0].value) and back[0].reason == "why" and back[1].value == math.inf


def test_truncated_last_line_is_skipped_with_a_warning(tmp_path):
    small_run(sink="local", sink_options={"local": {"run_dir": tmp_path}})
    path = tmp_path / "records.jsonl"
    full = cockpit_log.read(tmp_path)
    with open(path, "a") as f:
        f.write('{"step": 5, "quantity": "Lo')
    with pytest.warns(cockpit_log.CockpitWarning, match="line"):
        assert cockpit_log.read(tmp_path) == full


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no cockpit records"):
        cockpit_log.read(tmp_path / "nothing")


def test_killed_run_leaves_every_finished_step_readable(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, torch
        from torch import nn
        sys.path.insert(0, {str(Path(__file__).parents[1])!r})
        import cockpit_log
        model = nn.Linear(4, 3); loss_fn = nn.CrossEntropyLoss(); opt = torch.optim.SGD(model.parameters(), lr=0.1)
        options = {{"local": {{"run_dir": {str(tmp_path)!r}}}}}
        ck = cockpit_log.attach(model, loss_fn, opt, sink="local", sink_options=options)
        step = 0
        while True:
            opt.zero_grad(); loss_fn(model(torch.randn(8, 4)), torch.randint(0, 3, (8,))).backward(); opt.step()
            step += 1
            if step == 30:
                print("ready", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the line being written at the kill may be cut
        records = cockpit_log.read(tmp_path)
    steps = {r.step for r in records if r.quantity == "GradNorm"}
    assert set(range(30)) <= steps  # every step finished before the kill is there


def test_schedules():
    e = cockpit_log.every(3, start=1)
    assert [s for s in range(10) if e(s)] == [1, 4, 7]
    ls = cockpit_log.log_spaced(1000, num=10)
    steps = [s for s in range(1001) if ls(s)]
    assert steps[0] == 0 and steps[-1] == 1000 and len(steps) <= 11
    gaps = np.diff(steps)
    assert gaps[-1] > gaps[0]  # dense early, sparse late
    assert [s for s in range(10) if cockpit_log.at_steps([2, 5])(s)] == [2, 5]


def test_schedule_per_quantity_and_two_step_quantities_get_their_next_step():
    ck = small_run(
        steps=8,
        sink="memory",
        quantities=["Loss", cockpit_log.Alpha(schedule=[2, 5]), cockpit_log.UpdateSize(schedule=4)],
        schedule=cockpit_log.every(2),
    )
    by_q: dict[str, list[int]] = {}
    for r in ck.records:
        by_q.setdefault(r.quantity, []).append(r.step)
    assert by_q["Loss"] == [0, 2, 4, 6]
    assert by_q["Alpha"] == [2, 5]  # needed steps 3 and 6 too, got them without Loss being due there
    assert by_q["UpdateSize"] == [0, 4]
    assert all(math.isfinite(r.value) for r in ck.records if r.quantity == "Alpha")


def test_explicit_api_matches_automatic_and_handles_scaled_gradients():
    """ck.backward(losses, grad_scale=...) + ck.step(): same readings as attach()'s automatic mode,
    with only one of two accumulated micro-batches marked, and the loss scaled by 128 (as AMP does)."""
    auto = small_run(steps=4, sink="memory", quantities=["economy", "CABS"])

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = cockpit_log.attach(model, optimizer=opt, sink="memory", quantities=["economy", "CABS"], automatic=False)
    gen = torch.Generator().manual_seed(1)
    scale = 128.0
    for _ in range(4):
        x, y = torch.randn(8, 4, generator=gen), torch.randint(0, 3, (8,), generator=gen)
        opt.zero_grad()
        losses = nn.functional.cross_entropy(model(x), y, reduction="none")
        with ck.backward(losses, grad_scale=scale):
            (scale * losses.mean()).backward()
        # a second micro-batch of zeros, outside the marked block: accumulates nothing harmful
        (0.0 * model(torch.zeros(2, 4)).sum()).backward()
        for p in model.parameters():
            p.grad /= scale
        opt.step()
        ck.step()
    ck.close()
    a = {(r.quantity, r.step): r.value for r in auto.records if not r.is_histogram}
    b = {(r.quantity, r.step): r.value for r in ck.records if not r.is_histogram}
    assert set(a) == set(b)
    for key, value in a.items():
        if key[0] == "Time":
            continue
        assert b[key] == pytest.approx(value, rel=1e-4, nan_ok=True), key
    ha = [r.value.total for r in auto.records if r.is_histogram]
    hb = [r.value.total for r in ck.records if r.is_histogram]
    assert ha == hb


def test_core_imports_without_wandb_and_mlflow():
    code = (
        "import sys; sys.modules['wandb'] = None; sys.modules['mlflow'] = None\n"
        "import torch, cockpit_log\n"
        "m = torch.nn.Linear(3, 2); ck = cockpit_log.attach(m, torch.nn.MSELoss(), sink='memory'); ck.close()\n"
        "assert 'wandb' not in [k for k, v in sys.modules.items() if v is not None]\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == "ok", out.stderr


def test_records_round_trip_through_json_with_2d_histograms_and_info() -> None:
    import json

    import numpy as np

    from cockpit_log.records import Histogram2d, record_from_dict, record_to_json

    h = Histogram2d(np.arange(6).reshape(2, 3), np.linspace(-1, 1, 3), np.linspace(0, 1, 4), 1, 2, 3, 4, 5)
    rec = Record(3, "GradHist2d", h, {"w": h}, info={"hvps": 3.0, "residual": float("nan")})
    back = record_from_dict(json.loads(record_to_json(rec)))
    assert back.value == h and back.per_param["w"] == h and back.step == 3
    assert back.info["hvps"] == 3.0 and np.isnan(back.info["residual"])
    assert h.total == 20 and h.x_marginal().counts.tolist() == [3, 12] and h.y_marginal().counts.tolist() == [3, 5, 7]


def test_log_spaced_always_includes_its_last_step() -> None:
    for last in range(1, 2000):
        sched = cockpit_log.log_spaced(last, 50)
        assert sched(last) and sched(0) and not sched(last + 1), last
