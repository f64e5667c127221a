"""The online W&B path: the same training function under ``wandb.agent`` for a real W&B sweep.

::

    import wandb, yaml
    from cockpit_log.study import agent_function
    from my_training import train  # train(trial) -> metrics, as for `cockpit-log sweep`

    sweep_id = wandb.sweep(yaml.safe_load(open("sweep.yaml")), project="digits")
    wandb.agent(sweep_id, function=agent_function(train), count=8)

The W&B server chooses the parameters; each call starts a run (``wandb.init()``, whose config the
agent fills), hands ``train`` a :class:`~cockpit_log.study.trial.Trial` whose ``attach`` logs into
that run, writes the returned metrics and the final training loss into the run summary (beside the
sink's ``cockpit_alpha_median``/``cockpit_alpha_median_last10``) and finishes the run. Name the
sweep's ``metric`` after a key the function returns (or logs), so W&B can optimize it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .runner import TrainFunction, execute_trial
from .runs import StudyRun
from .trackers import WANDB_SETTINGS, WandbTracker
from .trial import Trial

__all__ = ["agent_function"]


def agent_function(
    train: TrainFunction,
    *,
    defaults: Mapping[str, Any] | None = None,
    metric_name: str | None = None,
    **init_options: Any,
) -> Callable[[], StudyRun]:
    """A function without arguments for ``wandb.agent(sweep_id, function=...)``.

    Args:
        train: the training function (takes a :class:`Trial`).
        defaults: config values for parameters the sweep does not set (the sweep's win).
        metric_name: the name a plain number returned by ``train`` is logged under.
        init_options: further ``wandb.init`` keyword arguments (``project``, ``dir``, ``mode``...).
    """

    options = dict(init_options)
    given_settings = options.pop("settings", None)

    def run_one_trial() -> StudyRun:
        import wandb

        settings = given_settings if given_settings is not None else wandb.Settings(**WANDB_SETTINGS)
        run = wandb.init(config=dict(defaults or {}), settings=settings, **options)
        params = {k: v for k, v in dict(run.config).items() if not str(k).startswith(("_", "cockpit"))}
        trial = Trial(params, tracker=WandbTracker(run), name=run.name or run.id, metric_name=metric_name)
        return execute_trial(train, trial)

    return run_one_trial
