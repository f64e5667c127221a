"""The ``cockpit-log`` command: demo end to end, plot and show on runs, bad input without tracebacks."""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fake_records import make_records

from cockpit_log import read
from cockpit_log.backends.local import LocalSink
from cockpit_log.cli import main
from cockpit_log.demo import DEMO_QUANTITIES
from cockpit_log.presets import resolve_quantities
from cockpit_log.progress import ProgressLine
from cockpit_log.view import cockpit_view, panel_titles

ROOT = Path(__file__).resolve().parents[1]
DEMO_STEPS = "24"


def full_available() -> bool:
    try:
        resolve_quantities(DEMO_QUANTITIES)
        return True
    except ValueError:
        return False


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m cockpit_log ARGS`` in a fresh process, as a user would run it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "cockpit_log", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One short demo with the local sink and the default quantities, run in-process."""
    out = tmp_path_factory.mktemp("demo")
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["demo", "--sink", "local", "--steps", DEMO_STEPS, "--out", str(out)])
    text = buf.getvalue()
    run_dir = Path(re.search(r"records \(local store\)\s+(\S+)", text).group(1))
    return {"rc": rc, "out": out, "text": text, "run_dir": run_dir}


def test_console_script_is_declared_and_callable() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    declared = re.search(r'^\[project\.scripts\]\ncockpit-log = "([\w.]+):(\w+)"$', pyproject, re.M)
    module, func = declared.groups()
    assert callable(getattr(importlib.import_module(module), func))


@pytest.mark.parametrize("command", ["demo", "plot", "show"])
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: cockpit-log {command}")
    assert ("SOURCE" in out.upper()) == (command != "demo")


def test_demo_end_to_end(demo_run: dict) -> None:
    assert demo_run["rc"] == 0
    text, out = demo_run["text"], demo_run["out"]
    view, layers = out / "cockpit-view.png", out / "cockpit-view-layers.png"
    assert view.read_bytes().startswith(b"\x89PNG") and layers.read_bytes().startswith(b"\x89PNG")
    assert f"cockpit view           {view.resolve()}" in text
    assert f"cockpit-log show {demo_run['run_dir']}" in text  # the command that opens it
    assert f"step {DEMO_STEPS}/{DEMO_STEPS}" in text  # the progress line reached the end
    assert ("not available in this version" in text) is not full_available()
    records = read(demo_run["run_dir"])
    assert {"Alpha", "GradNorm", "GradHist1d", "Loss"} <= {r.quantity for r in records}
    assert max(r.step for r in records) == int(DEMO_STEPS) - 1


def test_plot_and_show_on_the_demo_run(demo_run: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "v.png"
    assert main(["plot", str(demo_run["run_dir"]), "-o", str(target)]) == 0
    out = capsys.readouterr().out
    assert target.is_file() and (tmp_path / "v-layers.png").is_file()
    expected = panel_titles(cockpit_view(read(demo_run["run_dir"])))
    assert f"panels: {', '.join(expected.values())}" in out
    assert {"alpha", "gradient_tests", "grad_hist_1d", "loss"} <= set(expected)

    assert main(["show", str(demo_run["run_dir"])]) == 0
    table = capsys.readouterr().out
    for quantity in ("Alpha", "GradNorm", "NormTest", "GradHist1d", "Loss"):
        assert re.search(rf"^{quantity}\s+\d+\s+\d+\s+\S+", table, re.M), quantity
    assert "alpha median:" in table


def test_show_describes_every_record_type(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sink = LocalSink(tmp_path / "run")
    sink.write(make_records(("HessMaxEV", "GradHist1d", "GradHist2d", "GradNorm"), steps=[0, 5]))
    sink.close()
    assert main(["show", str(tmp_path / "run")]) == 0
    table = capsys.readouterr().out
    assert re.search(r"^HessMaxEV\s+2\s+5\s+\S+\s+hvps 23, residual 0.0001", table, re.M)
    assert re.search(r"^GradHist2d\s+2\s+5\s+3,000 pairs\s+20x30 bins", table, re.M)
    assert re.search(r"^GradHist1d\s+2\s+5\s+2,003 values\s+\d+\.\d% outside \[-1, 1\], 3 NaN", table, re.M)
    assert re.search(r"^GradNorm\s+2\s+5\s+\S+\s+4 parameters", table, re.M)


def test_missing_source_is_one_line_error_without_traceback(tmp_path: Path) -> None:
    result = cli("plot", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"cockpit-log: error: no cockpit records at {tmp_path / 'nope'} (expected a run directory with records.jsonl)"
    ]
    assert result.stdout == ""


def test_truncated_last_line_is_skipped_with_a_warning(demo_run: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(demo_run["run_dir"], run)
    data = (run / "records.jsonl").read_bytes()
    (run / "records.jsonl").write_bytes(data[: len(data) - 40])  # a run killed mid-write
    lines = data.count(b"\n")
    result = cli("show", str(run))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warning = [line for line in result.stderr.splitlines() if line.startswith("cockpit-log: warning:")]
    assert len(warning) == 1 and f"skipped 1 unreadable line(s) of {run / 'records.jsonl'} (line {lines})" in warning[0]
    assert f"{lines - 1} records" in result.stdout


@pytest.mark.parametrize("content", [b"", b'{"step": 0, "quanti'])
def test_run_without_records_is_an_error(tmp_path: Path, content: bytes, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "records.jsonl").write_bytes(content)
    assert main(["plot", str(tmp_path), "-o", str(tmp_path / "v.png")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"cockpit-log: error: no cockpit records in {tmp_path}"
    skipped = f"cockpit-log: warning: skipped 1 unreadable line(s) of {tmp_path / 'records.jsonl'} (line 1); "
    assert err[:-1] == ([skipped + "a run killed mid-write leaves a truncated last line."] if content else [])
    assert not (tmp_path / "v.png").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quantities", "Bogus"], "cockpit-log: error: unknown quantity 'Bogus'"),
        (["--steps", "1"], "cockpit-log: error: --steps must be at least 2, got 1"),
        (["--quantities", ","], "cockpit-log: error: --quantities is empty"),
    ],
)
def test_demo_bad_options_are_one_line_errors(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--sink", "local", "--out", str(tmp_path), *args]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err
    assert not (tmp_path / "cockpit-view.png").exists()


def test_unavailable_tracker_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = [s for s in ("mlflow", "wandb") if importlib.util.find_spec(f"cockpit_log.backends.{s}_sink") is None]
    if not missing:
        pytest.skip("both tracker sinks are installed")
    assert main(["demo", "--sink", missing[0], "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"cockpit-log: error: the {missing[0]} sink is not installed in this version of cockpit-log "
        f"(pip install 'cockpit-log[{missing[0]}]'); use --sink local"
    )


def test_mlflow_run_from_demo_plots_the_same_panels(demo_run: dict, tmp_path: Path) -> None:
    pytest.importorskip("cockpit_log.backends.mlflow_sink")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = cli("demo", "--sink", "mlflow", "--tracking-uri", uri, "--steps", DEMO_STEPS, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert f"mlflow ui --backend-store-uri {uri}" in result.stdout
    source = re.search(r"cockpit-log show (mlflow:\w+)", result.stdout).group(1)
    from mlflow.tracking import MlflowClient

    from cockpit_log.naming import metric_key

    client = MlflowClient(tracking_uri=uri)
    assert client.get_metric_history(source.removeprefix("mlflow:"), metric_key("GradNorm"))
    plotted = cli("plot", source, "--tracking-uri", uri, "-o", str(tmp_path / "m.png"))
    assert plotted.returncode == 0, plotted.stderr
    local = cli("plot", str(demo_run["run_dir"]), "-o", str(tmp_path / "l.png"))
    panels = [line for line in plotted.stdout.splitlines() if line.startswith("panels:")]
    assert panels == [line for line in local.stdout.splitlines() if line.startswith("panels:")]


def test_wandb_offline_run_from_demo_plots_the_same_panels(demo_run: dict, tmp_path: Path) -> None:
    pytest.importorskip("cockpit_log.backends.wandb_sink")
    result = cli("demo", "--sink", "wandb", "--steps", DEMO_STEPS, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    run_dir = re.search(r"W&B offline run\s+(\S+)", result.stdout).group(1)
    assert f"wandb sync {run_dir}" in result.stdout
    plotted = cli("plot", run_dir, "-o", str(tmp_path / "w.png"))
    assert plotted.returncode == 0, plotted.stderr
    local = cli("plot", str(demo_run["run_dir"]), "-o", str(tmp_path / "l.png"))
    panels = [line for line in plotted.stdout.splitlines() if line.startswith("panels:")]
    assert panels == [line for line in local.stdout.splitlines() if line.startswith("panels:")]


TRACKER_SCRIPT = """
import json, sys
from pathlib import Path
import mlflow
from cockpit_log.demo_trackers import _mlflow_run, _wandb_run
from cockpit_log.reading import _is_wandb_run_dir
out = Path(sys.argv[1])
m = _mlflow_run(out, None)
active = mlflow.active_run().info.run_id
m.finish()
w = _wandb_run(out)
w.finish()
print(json.dumps({"mlflow": [m.source, m.open_commands, dict(m.where), active],
                  "wandb": [w.source, w.open_commands, _is_wandb_run_dir(Path(w.source))]}))
"""


def test_demo_opens_runs_in_mlflows_embedded_store_and_offline_wandb(tmp_path: Path) -> None:
    """The demo's own part of the tracker runs, with the real MLflow (sqlite file, no server) and W&B (offline)."""
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "WANDB_"))}
    result = subprocess.run(
        [sys.executable, "-c", TRACKER_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    source, commands, where, active = info["mlflow"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert source == f"mlflow:{active}"
    assert commands[0] == f"mlflow ui --backend-store-uri {uri}"
    assert where["MLflow tracking URI"] == uri
    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri=uri).get_run(active)
    assert run.info.status == "FINISHED"
    assert run.info.artifact_uri.startswith((tmp_path / "mlartifacts").as_uri())
    wandb_dir, wandb_commands, is_run_dir = info["wandb"]
    assert Path(wandb_dir).parent == tmp_path / "wandb" and is_run_dir
    assert wandb_commands[0] == f"wandb sync {wandb_dir}"


def test_bare_mlflow_run_id_is_read_as_an_mlflow_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    run_id = "0123456789abcdef0123456789abcdef"
    assert main(["show", run_id]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(
        (
            f"cockpit-log: error: cannot read mlflow:{run_id}",
            f"cockpit-log: error: no cockpit records in mlflow:{run_id}",
        )
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_redraws_in_place_on_a_terminal_and_prints_tenths_elsewhere() -> None:
    term, pipe = _Terminal(), io.StringIO()
    bars = [ProgressLine(50, term, min_interval=0.0), ProgressLine(50, pipe)]
    for step in range(50):
        for bar in bars:
            bar.update(step, 1.0 / (step + 1), {"Alpha": -0.25, "GradNorm": 2.0})
    for bar in bars:
        bar.close()
    assert term.getvalue().count("\r") == 50 and term.getvalue().endswith("\n")
    assert "[########################] step 50/50  loss 0.020  alpha -0.25  |g| 2" in term.getvalue()
    lines = pipe.getvalue().splitlines()
    assert len(lines) == 11 and "\r" not in pipe.getvalue()
    assert lines[0].startswith("[........................] step 1/50  loss 1.000")


def test_replay_names_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "missing.jsonl")]) == 1
    assert capsys.readouterr().err.strip() == f"cockpit-log: error: no spool file at {tmp_path / 'missing.jsonl'}"
    other = tmp_path / "records.jsonl"
    other.write_text("")
    assert main(["replay", str(other)]) == 1
    assert "pass --to mlflow or --to wandb" in capsys.readouterr().err
