"""W&B sweep configurations, read and expanded into trials locally (no W&B server, no ``sweeps`` package).

The subset of W&B's sweep configuration that a local run needs:

- ``method``: ``grid`` (every combination of the parameters' ``values``) or ``random`` (``count``
  draws, from ``--count`` or the configuration's ``run_cap``, reproducible with ``seed``);
  ``bayes`` needs W&B's server: run it with ``wandb.agent`` (see :func:`cockpit_log.study.agent_function`).
- ``parameters``: per parameter ``value`` (a constant), ``values`` (with ``probabilities`` for
  random search), or ``min``/``max`` with a ``distribution``: ``int_uniform``, ``uniform``,
  ``q_uniform`` (with ``q``), ``log_uniform_values`` (``min``/``max`` are the values),
  ``log_uniform`` (``min``/``max`` are natural logarithms), ``q_log_uniform_values``,
  ``inv_log_uniform_values``; or ``mu``/``sigma`` with ``normal`` or ``log_normal``. Without a
  ``distribution``, ``min``/``max`` mean ``int_uniform`` when both are integers, else
  ``uniform`` (as W&B infers it). Nested ``parameters`` give nested dictionaries.
- ``metric``: ``name`` and ``goal`` (``minimize``, the default, or ``maximize``).
- ``name``, ``project``, ``entity``, ``program``, ``command``, ``early_terminate`` are kept or ignored.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DISTRIBUTIONS", "Metric", "SweepConfig", "load_sweep_config", "parse_sweep_config"]

#: the distributions a local random search can draw from
DISTRIBUTIONS = (
    "constant",
    "categorical",
    "int_uniform",
    "uniform",
    "q_uniform",
    "log_uniform",
    "log_uniform_values",
    "q_log_uniform_values",
    "inv_log_uniform_values",
    "normal",
    "log_normal",
)
METHODS = ("grid", "random")


@dataclass(frozen=True)
class Metric:
    """The metric a sweep optimises: its name and goal (``minimize`` or ``maximize``)."""

    name: str | None = None
    goal: str = "minimize"

    @property
    def maximize(self) -> bool:
        """Whether larger is better."""
        return self.goal == "maximize"


@dataclass(frozen=True)
class SweepConfig:
    """A parsed sweep configuration (see the module docstring).

    Attributes:
        method: ``"grid"`` or ``"random"``.
        parameters: parameter name -> its specification (nested specifications keep their
            ``parameters`` key).
        metric: the metric and goal.
        name: the sweep's name (default ``"sweep"``).
        run_cap: the configuration's cap on the number of runs, if any.
        raw: the configuration as given.
    """

    method: str
    parameters: dict[str, dict[str, Any]]
    metric: Metric = field(default_factory=Metric)
    name: str = "sweep"
    run_cap: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def trials(self, count: int | None = None, seed: int = 0) -> list[dict[str, Any]]:
        """The parameter dictionaries of the trials, in order.

        Grid: every combination (the first parameter varies slowest), at most ``count`` of them.
        Random: ``count`` draws (default: ``run_cap``) from a generator seeded with ``seed``.

        Raises:
            ValueError: a random search without ``count`` or ``run_cap``.
        """
        if self.method == "grid":
            combos = [dict(c) for c in _grid(self.parameters)]
            limit = count if count is not None else self.run_cap
            return combos[:limit] if limit is not None else combos
        n = count if count is not None else self.run_cap
        if n is None:
            raise ValueError("a random search needs a number of trials: pass --count N or set run_cap in the config")
        rng = random.Random(seed)
        return [_draw(self.parameters, rng) for _ in range(n)]


def load_sweep_config(path: str | os.PathLike[str]) -> SweepConfig:
    """Read a sweep configuration from a YAML (``.yaml``/``.yml``, needs PyYAML) or JSON file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a valid sweep configuration (the message says what is wrong).
        ImportError: a YAML file without PyYAML installed.
    """
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        try:
            import yaml
        except ImportError as err:
            raise ImportError(
                "reading a YAML sweep configuration needs PyYAML: pip install 'cockpit-log[study]'"
            ) from err
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{p} is not valid YAML: {str(err).splitlines()[0]}") from err
    if not isinstance(data, Mapping):
        raise ValueError(f"{p}: a sweep configuration is a mapping with 'method' and 'parameters'")
    return parse_sweep_config(data)


def parse_sweep_config(data: Mapping[str, Any]) -> SweepConfig:
    """Validate a sweep configuration given as a mapping (as ``wandb.sweep`` takes it).

    Raises:
        ValueError: a missing or unknown method, no parameters, or a parameter specification
            that cannot be run locally (the message names the parameter).
    """
    method = data.get("method")
    if method == "bayes":
        raise ValueError(
            "method 'bayes' needs W&B's sweep server; run it online with wandb.agent "
            "(cockpit_log.study.agent_function), or use method grid or random here"
        )
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)} (got {method!r})")
    params = data.get("parameters")
    if not isinstance(params, Mapping) or not params:
        raise ValueError("the configuration needs 'parameters': a mapping of parameter names to specifications")
    checked = {str(k): _check(str(k), v, method) for k, v in params.items()}
    metric_data = data.get("metric") or {}
    if not isinstance(metric_data, Mapping):
        raise ValueError("'metric' must be a mapping with 'name' and 'goal'")
    goal = metric_data.get("goal", "minimize")
    if goal not in ("minimize", "maximize"):
        raise ValueError(f"metric goal must be minimize or maximize (got {goal!r})")
    run_cap = data.get("run_cap")
    return SweepConfig(
        method=str(method),
        parameters=checked,
        metric=Metric(metric_data.get("name"), goal),
        name=str(data.get("name") or "sweep"),
        run_cap=int(run_cap) if run_cap is not None else None,
        raw=dict(data),
    )


def _kind(spec: Mapping[str, Any]) -> str:
    """The distribution a parameter specification means (W&B's inference where none is named)."""
    if "distribution" in spec:
        return str(spec["distribution"])
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical"
    if "min" in spec and "max" in spec:
        lo, hi = spec["min"], spec["max"]
        ints = isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool)
        return "int_uniform" if ints else "uniform"
    if "mu" in spec or "sigma" in spec:
        return "normal"
    return "unknown"


def _check(name: str, spec: Any, method: str) -> dict[str, Any]:
    if not isinstance(spec, Mapping):
        raise ValueError(f"parameter {name!r}: expected a mapping such as {{values: [...]}}, got {spec!r}")
    spec = dict(spec)
    if "parameters" in spec:
        nested = spec["parameters"]
        if not isinstance(nested, Mapping) or not nested:
            raise ValueError(f"parameter {name!r}: nested 'parameters' must be a non-empty mapping")
        return {"parameters": {str(k): _check(f"{name}.{k}", v, method) for k, v in nested.items()}}
    kind = _kind(spec)
    if kind not in DISTRIBUTIONS:
        raise ValueError(
            f"parameter {name!r}: distribution {kind!r} is not supported locally; use one of {', '.join(DISTRIBUTIONS)}"
        )
    if kind == "constant" and "value" not in spec:
        raise ValueError(f"parameter {name!r}: a constant needs 'value'")
    if kind == "categorical":
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise ValueError(f"parameter {name!r}: 'values' must be a non-empty list")
        probs = spec.get("probabilities")
        if probs is not None and (len(probs) != len(values) or not math.isclose(sum(probs), 1.0, abs_tol=1e-6)):
            raise ValueError(f"parameter {name!r}: 'probabilities' must match 'values' and sum to 1")
    if kind in ("int_uniform", "uniform", "q_uniform", "log_uniform", "log_uniform_values"):
        _bounds(name, spec, positive=False)
    if kind in ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values"):
        _bounds(name, spec, positive=True)
    if kind in ("normal", "log_normal") and ("sigma" in spec and float(spec["sigma"]) < 0):
        raise ValueError(f"parameter {name!r}: sigma must be >= 0")
    if method == "grid" and kind not in ("constant", "categorical"):
        raise ValueError(
            f"parameter {name!r}: grid search needs 'values' (or 'value'); "
            f"the distribution {kind!r} can only be drawn by method random"
        )
    return spec | {"distribution": kind}


def _bounds(name: str, spec: Mapping[str, Any], positive: bool) -> None:
    if "min" not in spec or "max" not in spec:
        raise ValueError(f"parameter {name!r}: distribution {spec.get('distribution')!r} needs 'min' and 'max'")
    lo, hi = float(spec["min"]), float(spec["max"])
    if not lo <= hi:
        raise ValueError(f"parameter {name!r}: min ({lo:g}) must not exceed max ({hi:g})")
    if positive and lo <= 0:
        raise ValueError(f"parameter {name!r}: {spec.get('distribution', 'this distribution')} needs min > 0")


def _grid(params: Mapping[str, dict[str, Any]]) -> list[list[tuple[str, Any]]]:
    """Every combination of values, as lists of ``(name, value)``; nested parameters give dicts."""
    axes: list[list[tuple[str, Any]]] = []
    for name, spec in params.items():
        if "parameters" in spec:
            axes.append([(name, dict(c)) for c in _grid(spec["parameters"])])
        elif spec["distribution"] == "constant":
            axes.append([(name, spec["value"])])
        else:
            axes.append([(name, v) for v in spec["values"]])
    return [list(combo) for combo in itertools.product(*axes)]


def _draw(params: Mapping[str, dict[str, Any]], rng: random.Random) -> dict[str, Any]:
    return {name: _draw_one(spec, rng) for name, spec in params.items()}


def _quantize(x: float, q: float) -> float:
    return round(x / q) * q


def _draw_one(spec: dict[str, Any], rng: random.Random) -> Any:
    if "parameters" in spec:
        return _draw(spec["parameters"], rng)
    kind = spec["distribution"]
    if kind == "constant":
        return spec["value"]
    if kind == "categorical":
        return rng.choices(spec["values"], weights=spec.get("probabilities"))[0]
    lo, hi = float(spec.get("min", 0.0)), float(spec.get("max", 1.0))
    if kind == "int_uniform":
        return rng.randint(int(lo), int(hi))
    if kind == "uniform":
        return rng.uniform(lo, hi)
    if kind == "q_uniform":
        return _quantize(rng.uniform(lo, hi), float(spec.get("q", 1.0)))
    if kind == "log_uniform":
        return math.exp(rng.uniform(lo, hi))
    if kind == "log_uniform_values":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    if kind == "q_log_uniform_values":
        return _quantize(math.exp(rng.uniform(math.log(lo), math.log(hi))), float(spec.get("q", 1.0)))
    if kind == "inv_log_uniform_values":
        return 1.0 / math.exp(rng.uniform(math.log(1.0 / hi), math.log(1.0 / lo)))
    mu, sigma = float(spec.get("mu", 0.0)), float(spec.get("sigma", 1.0))
    if kind == "normal":
        return rng.gauss(mu, sigma)
    return math.exp(rng.gauss(mu, sigma))  # log_normal
