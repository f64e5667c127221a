"""Sinks: where records go. Selectable by name; third parties add theirs by entry point.

Built in: ``"local"`` (the default, :class:`LocalSink`), ``"memory"`` (:class:`MemorySink`),
``"mlflow"`` (:class:`~cockpit_log.backends.mlflow_sink.MLflowSink`, extra ``mlflow``) and
``"wandb"`` (:class:`~cockpit_log.backends.wandb_sink.WandbSink`, extra ``wandb``); the tracker
sinks are imported only when named, so the core runs without either tracker installed.
A package can provide another sink name through the entry-point group ``cockpit_log.sinks``,
whose object is a callable returning a sink (anything with ``write(records)`` and ``close()``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any, Union

from .base import GuardedSink, Sink
from .local import LocalSink
from .memory import MemorySink

__all__ = ["GuardedSink", "LocalSink", "MemorySink", "Sink", "SinkSpec", "available_sinks", "make_sinks"]

SinkSpec = Union[str, Sink, Sequence[str | Sink], None]

ENTRY_POINT_GROUP = "cockpit_log.sinks"

_BUILTIN: dict[str, Callable[..., Sink]] = {"local": LocalSink, "memory": MemorySink}
#: sinks whose module imports a tracker: name -> (module, class, extra that installs the tracker)
_LAZY: dict[str, tuple[str, str, str]] = {
    "mlflow": ("cockpit_log.backends.mlflow_sink", "MLflowSink", "mlflow"),
    "wandb": ("cockpit_log.backends.wandb_sink", "WandbSink", "wandb"),
}


def _entry_point_sinks() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_sinks() -> list[str]:
    """Names accepted by ``sink=``: the built-in ones and those installed by entry point."""
    return sorted({*_BUILTIN, *_LAZY, *_entry_point_sinks()})


def make_sink(name: str, **options: Any) -> Sink:
    """The sink called ``name``, built with ``options``."""
    if name in _BUILTIN:
        return _BUILTIN[name](**options)
    if name in _LAZY:
        module_name, cls_name, extra = _LAZY[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ImportError(f"sink {name!r} needs {err.name or extra!r}: pip install 'cockpit-log[{extra}]'") from err
        return getattr(module, cls_name)(**options)
    eps = _entry_point_sinks()
    if name in eps:
        return eps[name].load()(**options)
    raise ValueError(
        f"unknown sink {name!r}; available: {', '.join(available_sinks())}. "
        "Install the extra that provides it (e.g. pip install 'cockpit-log[wandb]') "
        "or pass a sink object with write(records) and close()."
    )


def make_sinks(spec: SinkSpec, options: dict[str, Any] | None = None) -> list[Sink]:
    """Sinks from a name, a sink object, a list of them, or None (the local default)."""
    if spec is None:
        spec = "local"
    items = [spec] if isinstance(spec, str) or not isinstance(spec, Sequence) else list(spec)
    sinks: list[Sink] = []
    for item in items:
        if isinstance(item, str):
            sinks.append(make_sink(item, **(options or {}).get(item, {})))
        elif hasattr(item, "write") and hasattr(item, "close"):
            sinks.append(item)
        else:
            raise TypeError(f"sink must be a name or an object with write() and close(), got {item!r}")
    return sinks
