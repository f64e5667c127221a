"""Learning-rate studies with alpha (Section 3.3 of the paper): sweeps, per-run summaries, the study report.

- :func:`run_sweep` (``cockpit-log sweep CONFIG.yaml --train module:function``): a W&B sweep
  configuration (grid or random) run locally, one trial after another, into local run
  directories, W&B runs or MLflow child runs under one parent run.
- :class:`Trial`: what the training function gets (``trial.config``, ``trial.attach(...)``,
  ``trial.log(...)``); :func:`agent_function` runs the same function under ``wandb.agent``.
- :func:`run_study` (``cockpit-log study SOURCE...``): Figure 5's plot (final metric against
  median alpha), the runs sorted by the metric and a plain-language reading
  (:func:`read_study`), as PNG + Markdown, logged to the tracker.
"""

from __future__ import annotations

from .agent import agent_function
from .analysis import NextRange, StudyReading, alpha_zone, next_range, read_study
from .api import StudyOutcome, run_study, study_runs
from .config import Metric, SweepConfig, load_sweep_config, parse_sweep_config
from .report import study_figure, study_markdown, write_study
from .runner import SweepResult, import_function, run_sweep
from .runs import StudyRun, final_train_loss, trial_summary
from .trial import Trial

__all__ = [
    "Metric",
    "NextRange",
    "StudyOutcome",
    "StudyReading",
    "StudyRun",
    "SweepConfig",
    "SweepResult",
    "Trial",
    "agent_function",
    "alpha_zone",
    "final_train_loss",
    "import_function",
    "load_sweep_config",
    "next_range",
    "parse_sweep_config",
    "read_study",
    "run_study",
    "run_sweep",
    "study_figure",
    "study_markdown",
    "study_runs",
    "trial_summary",
    "write_study",
]
