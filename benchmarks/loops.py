"""Training loops of the overhead benchmark: uninstrumented, cockpit-log, and the reference implementation.

Each builder returns a :class:`Loop`: ``step()`` runs one SGD step (batch size 128 by default) on the
next of a few random mini-batches, ``close()`` ends it. The reference implementation,
``cockpit-for-pytorch``, is a peer we measure; it is imported here only, never by cockpit-log.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
from problems import make_data, make_model
from torch import nn

__all__ = ["IMPLEMENTATIONS", "Loop", "make_loop", "peer_available"]


class NullSink:
    """Discards records (measures the instruments, not a tracker)."""

    def write(self, records: object) -> None:
        """Drop the records."""

    def close(self) -> None:
        """Nothing to close."""


@dataclass
class Loop:
    """One training loop: ``step()`` runs one optimizer step, ``close()`` detaches instruments."""

    step: Callable[[], None]
    close: Callable[[], None]


def _cycle(data: list) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    state = {"i": 0}

    def nxt() -> tuple[torch.Tensor, torch.Tensor]:
        item = data[state["i"] % len(data)]
        state["i"] += 1
        return item

    return nxt


def baseline_loop(problem: str, batch: int) -> Loop:
    """The plain loop: forward, loss, backward, SGD step."""
    model, loss_fn = make_model(problem), nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    nxt = _cycle(make_data(problem, batch))

    def step() -> None:
        x, y = nxt()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return Loop(step, lambda: None)


def ours_loop(problem: str, batch: int, config: str | list[str], interval: int) -> Loop:
    """The plain loop with ``cockpit_log.attach`` (records discarded); ``config``: preset or quantity names."""
    import cockpit_log

    model, loss_fn = make_model(problem), nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    ck = cockpit_log.attach(model, loss_fn, opt, sink=NullSink(), quantities=config, schedule=interval)
    nxt = _cycle(make_data(problem, batch))

    def step() -> None:
        x, y = nxt()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    return Loop(step, ck.close)


def _import_peer() -> types.ModuleType:
    # cockpit-for-pytorch 1.0.2 imports pkg_resources for its version string only; recent
    # setuptools no longer ships it, so a stand-in answers "unknown version".
    if "pkg_resources" not in sys.modules:
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            stub = types.ModuleType("pkg_resources")

            class DistributionNotFound(Exception):
                pass

            def get_distribution(name: str) -> object:
                raise DistributionNotFound(name)

            stub.DistributionNotFound = DistributionNotFound  # type: ignore[attr-defined]
            stub.get_distribution = get_distribution  # type: ignore[attr-defined]
            sys.modules["pkg_resources"] = stub
    import cockpit

    return cockpit


def peer_available() -> bool:
    """Whether the reference implementation ``cockpit-for-pytorch`` can be imported."""
    try:
        _import_peer()
    except Exception:  # noqa: BLE001
        return False
    return True


def peer_loop(problem: str, batch: int, config: str, interval: int) -> Loop:
    """The loop the reference implementation documents: BackPACK-extended model and loss, individual
    losses and the optimizer handed in every step, ``create_graph`` when HessMaxEV is due."""
    cockpit = _import_peer()
    from backpack import extend
    from cockpit.utils import schedules
    from cockpit.utils.configuration import configuration

    model = extend(make_model(problem))
    loss_fn = extend(nn.CrossEntropyLoss())
    individual = nn.CrossEntropyLoss(reduction="none")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    ck = cockpit.Cockpit(model.parameters(), quantities=configuration(config, schedules.linear(interval)))
    nxt = _cycle(make_data(problem, batch))
    state = {"step": 0}

    def step() -> None:
        x, y = nxt()
        t = state["step"]
        opt.zero_grad()
        out = model(x)
        loss = loss_fn(out, y)
        losses = individual(out, y)
        info = {"batch_size": x.shape[0], "individual_losses": losses, "loss": loss, "optimizer": opt}
        with ck(t, info=info):
            loss.backward(create_graph=ck.create_graph(t))
        opt.step()
        state["step"] = t + 1

    def close() -> None:
        # drop what the reference keeps per step (its output log and per-step info)
        from cockpit.context import CockpitCTX

        CockpitCTX.erase()

    return Loop(step, close)


IMPLEMENTATIONS: dict[str, Callable[[str, int, str, int], Loop]] = {"ours": ours_loop, "reference": peer_loop}


def make_loop(impl: str, problem: str, batch: int, config: str | None, interval: int) -> Loop:
    """``impl`` is ``"ours"`` or ``"reference"``; ``config=None`` gives the uninstrumented loop."""
    if config is None:
        return baseline_loop(problem, batch)
    return IMPLEMENTATIONS[impl](problem, batch, config, interval)
