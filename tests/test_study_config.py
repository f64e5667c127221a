"""Sweep configurations in W&B's format: grid and random expansion, distributions, errors that name the parameter."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from cockpit_log.study import load_sweep_config, parse_sweep_config
from cockpit_log.study.runner import import_function, trial_name, varying_keys


def test_grid_is_every_combination_with_the_first_parameter_slowest(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    text = """
name: g
method: grid
metric: {name: val_accuracy, goal: maximize}
parameters:
  lr: {values: [0.01, 0.1, 1.0]}
  batch_size: {values: [16, 32]}
  steps: {value: 100}
"""
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    cfg = load_sweep_config(path)
    assert (cfg.name, cfg.method, cfg.metric.name, cfg.metric.maximize) == ("g", "grid", "val_accuracy", True)
    trials = cfg.trials()
    assert [(t["lr"], t["batch_size"]) for t in trials] == [
        (0.01, 16), (0.01, 32), (0.1, 16), (0.1, 32), (1.0, 16), (1.0, 32)
    ]  # fmt: skip
    assert all(t["steps"] == 100 for t in trials)
    assert len(cfg.trials(count=4)) == 4
    assert varying_keys(trials) == ["lr", "batch_size"]
    assert trial_name(2, trials[2], varying_keys(trials)) == "trial-002-lr0.1-batch_size16"


def test_random_search_draws_from_each_distribution_within_its_bounds() -> None:
    cfg = parse_sweep_config(
        {
            "method": "random",
            "run_cap": 400,
            "parameters": {
                "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1.0},
                "wd": {"distribution": "log_uniform", "min": math.log(1e-6), "max": math.log(1e-2)},
                "layers": {"min": 1, "max": 4},  # inferred: int_uniform
                "dropout": {"min": 0.0, "max": 0.5},  # inferred: uniform
                "width": {"distribution": "q_uniform", "min": 16, "max": 128, "q": 16},
                "act": {"values": ["relu", "tanh"], "probabilities": [0.9, 0.1]},
                "opt": {"parameters": {"momentum": {"values": [0.0, 0.9]}}},
            },
        }
    )
    trials = cfg.trials(seed=3)
    assert len(trials) == 400 and trials == cfg.trials(seed=3) and trials != cfg.trials(seed=4)
    lrs = [t["lr"] for t in trials]
    assert all(1e-4 <= v <= 1.0 for v in lrs)
    # log-uniform: about a quarter of the draws in each of the four decades
    below_1e2 = sum(v < 1e-2 for v in lrs) / len(lrs)
    assert 0.38 < below_1e2 < 0.62
    assert all(1e-6 <= t["wd"] <= 1e-2 for t in trials)
    assert {t["layers"] for t in trials} == {1, 2, 3, 4} and all(isinstance(t["layers"], int) for t in trials)
    assert all(0.0 <= t["dropout"] <= 0.5 for t in trials)
    assert {t["width"] % 16 for t in trials} == {0}
    assert 0.8 < sum(t["act"] == "relu" for t in trials) / len(trials) < 0.97
    assert {t["opt"]["momentum"] for t in trials} == {0.0, 0.9}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"method": "bayes", "parameters": {"lr": {"values": [1]}}}, "wandb.agent"),
        ({"method": "hyperband", "parameters": {"lr": {"values": [1]}}}, "method must be one of"),
        ({"method": "grid"}, "needs 'parameters'"),
        ({"method": "grid", "parameters": {"lr": {"min": 0.1, "max": 1.0}}}, "parameter 'lr': grid search needs"),
        ({"method": "random", "parameters": {"lr": {"distribution": "beta"}}}, "'beta' is not supported"),
        ({"method": "random", "parameters": {"lr": {"distribution": "log_uniform_values", "min": 0, "max": 1}}}, ">"),
        ({"method": "random", "parameters": {"lr": {"min": 2.0, "max": 1.0}}}, "must not exceed"),
        ({"method": "grid", "parameters": {"lr": {"values": []}}}, "non-empty list"),
        ({"method": "grid", "metric": {"name": "a", "goal": "up"}, "parameters": {"lr": {"value": 1}}}, "goal"),
    ],
)
def test_bad_configurations_say_what_is_wrong(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_sweep_config(config)


def test_random_search_needs_a_count() -> None:
    cfg = parse_sweep_config({"method": "random", "parameters": {"lr": {"min": 0.0, "max": 1.0}}})
    with pytest.raises(ValueError, match="--count"):
        cfg.trials()
    assert len(cfg.trials(count=5)) == 5


def test_train_function_by_module_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_train.py").write_text("def train(trial):\n    return 1.5\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_function("my_train:train")(None) == 1.5
    assert import_function(f"{tmp_path / 'my_train.py'}:train")(None) == 1.5
    with pytest.raises(ValueError, match="module:function"):
        import_function("my_train")
    with pytest.raises(ValueError, match="no function 'nope'"):
        import_function("my_train:nope")
