"""Data-parallel runs with real processes and real collectives (gloo on 127.0.0.1, 2 processes).

Every quantity of a DDP run with local batch b must equal the single-process run over the
concatenated batch of 2b samples (same initial weights, same data), to 1e-6 relative in float64
(HessMaxEV within its solver tolerance); histogram counts exactly.
"""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from mlflow_server import MlflowServer, free_port, mlflow_server_fixture  # noqa: F401

import cockpit_log
from cockpit_log.records import Histogram1d, Histogram2d, Record

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT = 240

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")


def launch(out: Path, case: str, world: int, *extra: str, steps: int = 3) -> list[dict[str, Any]]:
    """Run the worker in ``world`` processes (1: without DDP); fail, not hang, after TIMEOUT seconds."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(WORKER),
                *("--case", case, "--rank", str(r), "--world", str(world), "--port", str(port)),
                *("--out", str(out), "--steps", str(steps), *extra),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for r in range(world)
    ]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=TIMEOUT)[0])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"data-parallel run did not finish within {TIMEOUT} s (hang?)")
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log
    results = []
    for r in range(world):
        with open(out / f"rank{r}.pkl", "rb") as f:
            result = pickle.load(f)
        result["log"] = logs[r]
        results.append(result)
    return results


def _close(a: object, b: object, rtol: float) -> bool:
    if isinstance(b, float):
        assert isinstance(a, float)
        if math.isnan(b):
            return math.isnan(a)
        return abs(a - b) <= rtol * max(abs(b), 1e-12)
    if isinstance(b, Histogram1d | Histogram2d):
        return a == b
    raise AssertionError(f"unexpected value {b!r}")


def assert_same_records(ddp: list[Record], single: list[Record], steps: set[int] | None = None) -> None:
    by_key = {(r.step, r.quantity): r for r in ddp}
    expected = {(r.step, r.quantity): r for r in single if steps is None or r.step in steps}
    assert set(by_key) == set(expected)
    for key, ref in expected.items():
        got = by_key[key]
        if ref.quantity == "Time":
            continue
        rtol = 1e-3 if ref.quantity == "HessMaxEV" else 1e-6
        assert _close(got.value, ref.value, rtol), (key, got.value, ref.value, got.reason)
        assert set(got.per_param) == set(ref.per_param), key
        for name, value in ref.per_param.items():
            assert _close(got.per_param[name], value, rtol), (key, name, got.per_param[name], value)


@pytest.mark.parametrize("case", ["mlp", "cnn"])
def test_every_quantity_equals_the_single_process_run_on_the_global_batch(case: str, tmp_path: Path) -> None:
    single = launch(tmp_path / "single", case, 1)[0]
    rank0, rank1 = launch(tmp_path / "ddp", case, 2)
    quantities = {r.quantity for r in single["records"]}
    assert {"HessMaxEV", "TICDiag", "GradHist2d", "InnerTest", "Alpha", "MeanGSNR", "CABS"} <= quantities
    assert all(
        isinstance(r.value, Histogram1d | Histogram2d) or not math.isnan(r.value)
        for r in single["records"]
        if r.quantity != "Alpha"
    )
    assert_same_records(rank0["records"], single["records"])
    # the models stayed in sync with the single-process run (DDP averaged, nothing of ours changed it)
    for p, q in zip(rank0["params"], single["params"]):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
    # only rank 0 writes; both made the same collectives (1 per step + 1 per Hessian-vector product)
    assert rank0["sinks"] == 1 and rank1["sinks"] == 0 and rank1["records"] == []
    assert rank0["communication"] == rank1["communication"]
    hvps = sum(r.info["hvps"] for r in rank0["records"] if r.quantity == "HessMaxEV")
    assert rank0["communication"]["calls"] == 3 + hvps


def test_a_local_batch_differs_from_the_global_one(tmp_path: Path) -> None:
    """The reduction matters: a process's own local readings differ from the global ones."""
    single = launch(tmp_path / "single", "mlp", 1)[0]
    local = launch(tmp_path / "local", "mlp", 2, "--no-distributed")[0]
    differ = [
        r.quantity
        for r, s in zip(sorted(local["records"], key=_key), sorted(single["records"], key=_key))
        if isinstance(s.value, float) and s.quantity not in ("Time", "Alpha") and not _close(r.value, s.value, 1e-6)
    ]
    assert {"NormTest", "InnerTest", "HessTrace", "Loss", "TICDiag", "HessMaxEV"} <= set(differ)


def _key(r: Record) -> tuple[int, str]:
    return r.step, r.quantity


def test_shorter_last_batch_on_one_rank_skips_that_step_without_hanging(tmp_path: Path) -> None:
    single = launch(tmp_path / "single", "mlp", 1)[0]
    rank0, rank1 = launch(tmp_path / "ddp", "mlp", 2, "--uneven")
    # steps 0 and 1 as in the single-process run, except Alpha of step 1, whose end point is step 2
    expected = [r for r in single["records"] if r.step < 2 and not (r.step == 1 and r.quantity == "Alpha")]
    assert_same_records(rank0["records"], expected)
    assert "step 2 skipped" in rank0["log"] and "local batch sizes differ" in rank0["log"]
    assert rank0["communication"] == rank1["communication"]


def test_rank_zero_alone_logs_one_mlflow_run(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    experiment = f"ddp-{uuid.uuid4().hex[:8]}"
    extra = ("--sink", "mlflow,memory", "--tracking-uri", mlflow_server.url, "--experiment", experiment)
    rank0, rank1 = launch(tmp_path / "ddp", "mlp", 2, *extra, "--rank-diagnostics")
    client = MlflowClient(mlflow_server.url)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, rank0["log"]
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, rank0["log"]
    run_id = runs[0].info.run_id
    losses = {m.step: m.value for m in client.get_metric_history(run_id, "cockpit/loss")}
    mine = {r.step: r.value for r in rank0["records"] if r.quantity == "Loss"}
    assert losses == pytest.approx(mine, rel=1e-12) and sorted(losses) == [0, 1, 2], rank0["log"]
    # per-process diagnostics under a rank prefix: equal local batches, so the mean is the global loss
    per_rank = [
        {m.step: m.value for m in client.get_metric_history(run_id, f"cockpit/rank{k}/loss")} for k in range(2)
    ]
    for step, value in losses.items():
        assert np.mean([per_rank[0][step], per_rank[1][step]]) == pytest.approx(value, rel=1e-12)
    sizes = client.get_metric_history(run_id, "cockpit/rank1/batch_size")
    assert [m.value for m in sizes] == [6.0, 6.0, 6.0]
    assert runs[0].data.params["cockpit/world_size"] == "2"
    assert rank1["sinks"] == 0


def test_explicit_api_reads_the_global_batch_too(tmp_path: Path) -> None:
    single = launch(tmp_path / "single", "mlp", 1)[0]
    rank0, _ = launch(tmp_path / "ddp", "mlp", 2, "--explicit")
    assert_same_records(rank0["records"], single["records"])


def test_clipped_gradient_is_detected_not_misread(tmp_path: Path) -> None:
    """After clipping, param.grad is no longer the mean of the per-sample gradients: NaN with the reason."""
    rank0, _ = launch(tmp_path / "ddp", "mlp", 2, "--clip", steps=2)
    by = {(r.step, r.quantity): r for r in rank0["records"]}
    for name in ("NormTest", "InnerTest", "OrthoTest", "MeanGSNR", "GradHist1d"):
        rec = by[(0, name)]
        assert rec.is_scalar and math.isnan(rec.value) and "clipped or rescaled" in (rec.reason or ""), name
    assert by[(0, "GradNorm")].value == pytest.approx(1e-3, rel=1e-4)  # what the optimizer applied
    assert not math.isnan(by[(0, "HessTrace")].value) and not math.isnan(by[(0, "Loss")].value)


def test_example_runs_under_torchrun(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "ddp_cpu.py"
    cmd = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port())),
        *(str(example), "--steps", "8", "--run-dir", str(tmp_path / "run")),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8 steps on 2 process(es), global batch 64" in done.stdout
    records = [r for r in cockpit_log.read(tmp_path / "run") if r.quantity == "Loss"]
    assert [r.step for r in records] == list(range(8))
