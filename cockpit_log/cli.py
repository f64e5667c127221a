"""The ``cockpit-log`` command: ``demo``, ``plot SOURCE``, ``show SOURCE``, ``sweep`` and ``study``.

SOURCE is what :func:`cockpit_log.read` takes: a local run directory, an MLflow run
(``mlflow:<run_id>``, ``runs:/<run_id>`` or a bare 32-character run id) or an offline W&B run
directory. A user's mistake (a missing source, a corrupt file, an unknown quantity) ends with a
one-line error and exit status 1, never a traceback; ``--debug`` shows the traceback.
``sweep CONFIG.yaml --train module:function`` runs a W&B sweep configuration locally and
``study SOURCE...`` writes the learning-rate study of runs (:mod:`cockpit_log.study`).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from .records import Record

__all__ = ["UserError", "build_parser", "load_records", "main", "run"]

PROG = "cockpit-log"


class UserError(Exception):
    """A mistake in the command line or its input; reported as one line, without a traceback."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def load_records(source: str, tracking_uri: str | None = None) -> list[Record]:
    """All cockpit records of ``source`` (see the module docstring).

    Raises:
        UserError: the source cannot be read or holds no cockpit records.
    """
    from .reading import read

    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    if re.fullmatch(r"[0-9a-f]{32}", source) and not os.path.exists(source):
        source = f"mlflow:{source}"
    try:
        records = read(source)
    except FileNotFoundError as err:
        raise UserError(_first_line(err)) from err
    except ImportError as err:
        raise UserError(f"cannot read {source}: {_first_line(err)} (is the tracker's extra installed?)") from err
    except Exception as err:  # noqa: BLE001 - a tracker's own error on a bad source is a user's mistake
        raise UserError(f"cannot read {source}: {type(err).__name__}: {_first_line(err)}") from err
    if not records:
        raise UserError(f"no cockpit records in {source}")
    return records


def _cmd_plot(args: argparse.Namespace) -> int:
    from .view import write_view

    records = load_records(args.source, args.tracking_uri)
    t0 = time.perf_counter()
    view = write_view(records, args.output, layers_path=args.layers, title=args.title, dpi=args.dpi)
    elapsed = time.perf_counter() - t0
    steps = max(r.step for r in records)
    print(f"{len(records)} records up to step {steps} from {args.source}; rendered in {elapsed:.1f} s")
    print(f"panels: {', '.join(view.panels.values())}")
    for f in view.files:
        print(f"  {f}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from .table import latest_table

    records = load_records(args.source, args.tracking_uri)
    first, last = min(r.step for r in records), max(r.step for r in records)
    print(f"{args.source}: {len(records)} records, steps {first} to {last}")
    print(latest_table(records))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import DemoSettings, run_demo

    settings = DemoSettings(
        steps=args.steps,
        quantities=args.quantities,
        sink=args.sink,
        out_dir=Path(args.out),
        tracking_uri=args.tracking_uri,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        track_points=args.track_points,
        threads=args.threads,
    )
    t0 = time.perf_counter()
    try:
        result = run_demo(settings)
    except ValueError as err:
        raise UserError(_first_line(err)) from err
    except ImportError as err:
        raise UserError(f"{_first_line(err)}; the demo needs: pip install 'cockpit-log[demo]'") from err
    wall = time.perf_counter() - t0
    if result.notice:
        print(f"{PROG}: note: {result.notice}")
    for message in result.warnings:
        warnings.warn(message, stacklevel=1)
    print(
        f"trained {settings.steps} steps ({'+'.join(result.quantities)}, {len(result.records)} records) "
        f"in {result.train_s:.1f} s, view rendered in {result.render_s:.1f} s, {wall:.1f} s in all; "
        f"final loss {result.final_loss:.3f}"
    )
    print("where everything is:")
    print(f"  {'cockpit view':<22} {result.files[0]}  ({len(result.panels)} panels)")
    for f in result.files[1:]:
        print(f"  {'layer-wise histograms':<22} {f}")
    for label, location in result.tracker.where:
        print(f"  {label:<22} {location}")
    print("open it:")
    print(f"  {result.tracker.open_commands[0]}")
    for cmd in result.tracker.open_commands[1:]:
        print(f"  ({cmd})")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .study import run_sweep, study_runs

    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    t0 = time.perf_counter()
    try:
        result = run_sweep(
            args.config,
            args.train,
            sink=args.sink,
            out_dir=args.out,
            count=args.count,
            seed=args.seed,
            project=args.project,
            entity=args.entity,
            wandb_mode=args.wandb_mode,
            tracking_uri=args.tracking_uri,
            experiment=args.experiment,
            stream=sys.stdout,
        )
    except (ValueError, FileNotFoundError, ImportError, RuntimeError) as err:
        raise UserError(_first_line(err)) from err
    failed = sum(r.status != "finished" for r in result.runs)
    print(
        f"{len(result.runs)} trials ({failed} failed) in {time.perf_counter() - t0:.1f} s into "
        f"{result.backend.description}; index: {result.index_file}"
    )
    if args.no_study:
        print(f"study them: {PROG} study {result.out_dir}")
        return 0
    outcome = study_runs(
        result.runs,
        result.out_dir,
        metric=result.config.metric if result.config.metric.name else None,
        lr_key=args.lr_key,
        targets=[result.backend],
        title=f"Learning-rate study: {result.config.name}",
    )
    _print_study(outcome)
    return 0


def _print_study(outcome: Any) -> None:
    reading = outcome.reading
    print(reading.headline())
    for paragraph in reading.paragraphs():
        print(f"  {paragraph}")
    print("study report:")
    for f in outcome.files:
        print(f"  {f}")
    for where in outcome.logged_to:
        print(f"  logged to {where}")
    for err in outcome.log_errors:
        warnings.warn(f"logging the study to {err}", stacklevel=1)


def _cmd_study(args: argparse.Namespace) -> int:
    from .study import run_study

    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    try:
        outcome = run_study(
            args.sources,
            args.out,
            metric=args.metric,
            goal=args.goal,
            lr_key=args.lr_key,
            tracking_uri=args.tracking_uri,
            log=not args.no_log,
        )
    except ImportError as err:
        raise UserError(f"{_first_line(err)} (is the tracker's extra installed?)") from err
    except (ValueError, FileNotFoundError, KeyError) as err:
        raise UserError(_first_line(err)) from err
    _print_study(outcome)
    return 0


def _add_study_commands(sub: Any) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="run a W&B sweep configuration (grid or random) locally, one trial after another, then study it",
        description=(
            "Run the trials of a W&B sweep configuration (YAML or JSON; method grid or random) one after another, "
            "each with the cockpit attached through trial.attach(...) and logged to the chosen tracker; then write "
            "the learning-rate study (plot, table, reading) and log it to the tracker."
        ),
    )
    sweep.add_argument("config", help="sweep configuration file (.yaml, .yml or .json)")
    sweep.add_argument(
        "--train",
        required=True,
        help="the training function, module:function or path/to/file.py:function; it takes a "
        "cockpit_log.study.Trial and returns its metrics (a number, a mapping of numbers, or None)",
    )
    sweep.add_argument(
        "--sink",
        choices=("local", "wandb", "mlflow"),
        default="local",
        help="where each trial goes: local run directories (default), W&B runs (offline unless --wandb-mode "
        "online), or MLflow child runs under one parent run",
    )
    sweep.add_argument("--out", default=None, help="sweep directory (default ./cockpit-sweeps/<name>-<time>)")
    sweep.add_argument("--count", type=int, default=None, help="number of trials (random: required unless run_cap)")
    sweep.add_argument("--seed", type=int, default=0, help="seed of the random search's draws (default 0)")
    sweep.add_argument("--project", default=None, help="W&B project (default: the config's, else cockpit-log-sweeps)")
    sweep.add_argument("--entity", default=None, help="W&B entity")
    sweep.add_argument("--wandb-mode", choices=("offline", "online"), default="offline", help="W&B mode")
    sweep.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: MLflow's own setting)")
    sweep.add_argument("--experiment", default=None, help="MLflow experiment name (default: the sweep's name)")
    sweep.add_argument("--lr-key", default=None, help="the learning-rate parameter (default: lr or learning_rate)")
    sweep.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    sweep.add_argument("--no-study", action="store_true", help="skip the study report")
    sweep.set_defaults(func=_cmd_sweep)

    study = sub.add_parser(
        "study",
        help="the learning-rate study of runs: final metric against median alpha (Figure 5), table, reading",
        description=(
            "Write the learning-rate study of runs (study.png, study.md, study.json) and log it to their tracker. "
            "SOURCE: a sweep directory, local run directories, W&B run directories (or a directory of them), "
            "an MLflow parent run (mlflow:<id>) or experiment (mlflow-experiment:<name or id>)."
        ),
    )
    study.add_argument("sources", nargs="+", metavar="SOURCE", help="where the runs are")
    study.add_argument(
        "--out", default=None, help="report directory (default: the sweep directory, else ./cockpit-study)"
    )
    study.add_argument("--metric", default=None, help="metric to rank by (default: the sweep's, else train_loss_final)")
    study.add_argument("--goal", choices=("minimize", "maximize"), default=None, help="the metric's goal")
    study.add_argument("--lr-key", default=None, help="the learning-rate parameter (default: lr or learning_rate)")
    study.add_argument("--tracking-uri", default=None, help="MLflow tracking URI for an MLflow source")
    study.add_argument("--no-log", action="store_true", help="write the files only; log nothing to the tracker")
    study.set_defaults(func=_cmd_study)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cockpit-log`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "The Cockpit instruments for PyTorch training: a demo, the cockpit view and a summary of a run, "
            "sweeps and learning-rate studies."
        ),
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{demo,plot,show,replay,sweep,study}")

    demo = sub.add_parser(
        "demo",
        help="train a small CNN on scikit-learn's digits with the cockpit and write the cockpit view",
        description=(
            "Train a small CNN on scikit-learn's bundled digits with the cockpit attached (log-spaced "
            "tracking), log to a tracker, write the cockpit view PNG and say where everything is."
        ),
    )
    from .demo import DEMO_QUANTITIES, DEMO_STEPS, DEMO_TRACK_POINTS
    from .demo_trackers import SINKS

    demo.add_argument("--steps", type=int, default=DEMO_STEPS, help=f"optimizer steps (default {DEMO_STEPS})")
    demo.add_argument(
        "--quantities",
        default=None,
        help=f"preset or quantity names, comma-separated, e.g. 'economy,CABS' (default {DEMO_QUANTITIES!r})",
    )
    demo.add_argument(
        "--sink",
        choices=SINKS,
        default=None,
        help="where the records go: mlflow (embedded local store unless --tracking-uri), local, or wandb "
        "(offline); default mlflow when the MLflow sink is installed, else local",
    )
    demo.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: sqlite file in --out)")
    demo.add_argument(
        "--out", default="cockpit-demo", help="directory for the view and the stores (default ./cockpit-demo)"
    )
    demo.add_argument("--batch-size", type=int, default=64, help="mini-batch size (default 64)")
    demo.add_argument("--lr", type=float, default=0.1, help="SGD learning rate, momentum 0.9 (default 0.1)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the model and the batch order (default 0)")
    demo.add_argument(
        "--track-points",
        type=int,
        default=DEMO_TRACK_POINTS,
        help=f"points of the log-spaced schedule (default {DEMO_TRACK_POINTS})",
    )
    demo.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default 1: the model is tiny, one is fastest)"
    )
    demo.set_defaults(func=_cmd_demo)

    source_help = "local run directory, MLflow run (mlflow:<id>, runs:/<id> or the id) or offline W&B run directory"
    plot = sub.add_parser(
        "plot",
        help="write the cockpit view (and the layer-wise histogram grid) of a run to PNG files",
        description="Write the cockpit view of a run, and its layer-wise histogram grid when it has one.",
    )
    plot.add_argument("source", help=source_help)
    plot.add_argument("-o", "--output", default="cockpit-view.png", help="view file (default ./cockpit-view.png)")
    plot.add_argument("--layers", default=None, help="layer-wise grid file (default: <output>-layers.png)")
    plot.add_argument("--title", default=None, help="figure title")
    plot.add_argument("--dpi", type=int, default=100, help="resolution (default 100)")
    plot.add_argument("--tracking-uri", default=None, help="MLflow tracking URI for an MLflow source")
    plot.set_defaults(func=_cmd_plot)

    show = sub.add_parser(
        "show",
        help="print the latest reading of every quantity of a run",
        description="Print a table of the latest reading of every quantity of a run, and its alpha medians.",
    )
    show.add_argument("source", help=source_help)
    show.add_argument("--tracking-uri", default=None, help="MLflow tracking URI for an MLflow source")
    show.set_defaults(func=_cmd_show)

    replay = sub.add_parser(
        "replay",
        help="send a tracker sink's spool file (records it could not deliver) into its run",
        description=(
            "Send the records a tracker sink left in its spool file (named in its warning) into the run. "
            "MLflow spools are mlflow-<run>-<id>.jsonl, W&B spools cockpit-spool.jsonl; safe to repeat."
        ),
    )
    replay.add_argument("spool", help="the spool file")
    replay.add_argument(
        "--to", choices=["auto", "mlflow", "wandb"], default="auto", help="which tracker (default: from the file name)"
    )
    replay.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: the run's)")
    replay.set_defaults(func=_cmd_replay)
    _add_study_commands(sub)
    return parser


def _cmd_replay(args: argparse.Namespace) -> int:
    path = Path(args.spool)
    if not path.is_file():
        raise UserError(f"no spool file at {path}")
    target = args.to
    if target == "auto":
        if path.name.startswith("mlflow-"):
            target = "mlflow"
        elif path.name == "cockpit-spool.jsonl":
            target = "wandb"
        else:
            raise UserError(f"cannot tell which tracker {path.name} belongs to; pass --to mlflow or --to wandb")
    try:
        if target == "mlflow":
            from .backends.mlflow_sink import replay_spool

            run_id = replay_spool(path, tracking_uri=args.tracking_uri)
            print(f"replayed {path} into MLflow run {run_id}")
        else:
            from .backends.wandb_sink import replay_wandb

            count = replay_wandb(path)
            print(f"replayed {count} records from {path} into W&B")
    except ImportError as err:
        raise UserError(f"{_first_line(err)} (is the tracker's extra installed?)") from err
    except (OSError, ValueError) as err:
        raise UserError(_first_line(err)) from err
    return 0


@contextmanager
def _one_line_warnings() -> Iterator[None]:
    """Print warnings as ``cockpit-log: warning: ...`` lines on stderr; libraries' deprecation notices are
    not the user's business in a command's output and are left out."""

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        text = str(message).strip().removeprefix(f"{PROG}: ")
        print(f"{PROG}: warning: {text.splitlines()[0] if text else category.__name__}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("ignore", message=".*deprecated.*")
        yield


def _quiet_tracker_logs() -> None:
    """Keep MLflow's (and its database migrations') INFO chatter out of the command's output.

    MLflow sets its loggers' level from ``MLFLOW_LOGGING_LEVEL`` when it is imported; a level the
    user set is kept.
    """
    import logging
    import os

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``cockpit-log`` with ``argv`` (default: the process's arguments); returns the exit status."""
    args = build_parser().parse_args(argv)
    if not args.debug:
        _quiet_tracker_logs()
    try:
        with _one_line_warnings():
            return int(args.func(args))
    except UserError as err:
        if args.debug:
            raise
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def run() -> None:
    """Entry point of the console script."""
    sys.exit(main())


if __name__ == "__main__":
    run()
